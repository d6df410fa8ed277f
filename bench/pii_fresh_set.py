"""A fresh PII evaluation set made with Faker, in code and seeded: a dev split to tune on and a held-back split.

    .venv/bin/python bench/pii_fresh_set.py --split dev --n 5        # print a few generated sentences

Nothing here is stored: ``generate(split, n)`` builds the same sentences for the same arguments every time. Each
positive sentence holds one Faker value of one type (CREDIT_CARD, PHONE_NUMBER, IP_ADDRESS, IBAN_CODE,
EMAIL_ADDRESS) with its character span; negatives hold none, and half of them hold PII-like numbers that are not
PII (order numbers that fail Luhn, dates, prices, ISBNs, version strings, UUIDs, tracking numbers).

The two splits share nothing but the generators: another seed, other sentence templates, other Faker locales (the
held-back locales are not the ones anything was tuned on). What each type covers:
- cards: every Faker card type (Visa 13/16/19, Mastercard 51-55 and 2221-2720, Amex, Discover, Diners, JCB 15/16,
  Maestro), written contiguous, in groups of 4 (Amex and Diners 4-6-5 / 4-6-4) with spaces or dashes;
- phones: the locale's ``phone_number()`` as Faker writes it, and the same number in phonenumbers' international
  format where it parses; pt_BR's ``msisdn()`` (the only locale whose MSISDN has a country code) with a '+';
- IPs: ``ipv4_public()``, and global-unicast IPv6 (2000::/3) fully written, zero-padded, or compressed (with a run
  of zero groups) - public addresses only, as lmpipe's policy (FineWeb's) scrubs only those;
- IBANs: the locale's ``iban()`` (kept only where it passes mod-97 for a real IBAN country), compact, in groups
  of 4, or lower-cased;
- e-mails: ``email()``, ``free_email()``, ``company_email()``.
Each sentence carries the locale's language, as lmpipe's language filter would label a page of that locale.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass

ENTITIES = ("CREDIT_CARD", "PHONE_NUMBER", "IP_ADDRESS", "IBAN_CODE", "EMAIL_ADDRESS")

# Locales per split. IBANs come only from locales whose Faker bank provider writes their own country's IBAN.
DEV_LOCALES = (
    "en_US",
    "en_GB",
    "de_DE",
    "fr_FR",
    "es_ES",
    "it_IT",
    "nl_NL",
    "pl_PL",
    "pt_BR",
    "ja_JP",
    "en_IN",
    "en_AU",
)
HELD_LOCALES = (
    "en_CA", "en_IE", "de_AT", "de_CH", "fr_CH", "nl_BE", "pt_PT", "sv_SE", "da_DK", "fi_FI", "cs_CZ", "no_NO",
    "en_NZ", "el_GR", "sk_SK", "ro_RO", "it_CH", "tr_TR",
)  # fmt: skip

# {kind} is a word for the value's type, {v} the value. Some put punctuation right after it, some parentheses, some
# end a line with it.
DEV_TEMPLATES = (
    "My {kind} is {v}.",
    "Please update the {kind} on file to {v}, thanks!",
    "({kind}: {v})",
    "{kind}:\n{v}\n",
    "Send it to {v}; the {kind} was confirmed yesterday.",
    'Customer wrote: "my {kind} {v} stopped working"',
    "Can you check {v}? It is the {kind} she gave us.",
    "The {kind} ({v}) appears twice in the log.",
    "{v} is the {kind} to use from now on.",
    "Details follow - {kind} {v} - and nothing else.",
    "I noted down {v} as the {kind}",
    "Use this {kind}: {v}!",
    "Old {kind} was {v}, new one to follow.",
    "Hi team,\nthe {kind} is {v}\nBest, Ana",
    "For refunds we need the {kind} [{v}] by Monday.",
    "He typed {v} into the {kind} field twice.",
    "{kind} = {v}",
    "Record 17 lists {v} under {kind}.",
    "We could not verify the {kind} '{v}'.",
    "According to the form, the {kind} is {v} (unverified).",
    "Reminder: {v}... that {kind} again.",
    "- {kind}: {v}\n- status: open",
    "Her {kind}, {v}, was on the back of the envelope.",
    "Is {v} really your {kind}?",
    "The {kind} {v} belongs to the claimant.",
    "Changes: {kind} set to {v}; address unchanged.",
    "Signed up with {kind} {v} on the website.",
    "<td>{kind}</td><td>{v}</td>",
    "Please do not share your {kind} ({v}) with anyone.",
    "Ticket #4471 - {kind}: {v}",
    "As requested, here is the {kind}:{v}",
    "They listed {v} as {kind} in the complaint.",
)
HELD_TEMPLATES = (
    "Contact details — {kind}: {v}.",
    "The applicant's {kind} was given as {v}, which we checked.",
    "{v}",
    "[{kind}] {v}",
    "Write the {kind} {v} on the cover sheet, then sign.",
    "Our records show {v} (the {kind}).",
    "Why does the {kind} {v} fail?",
    "Note to self: {kind} -> {v}",
    "Thanks! Your {kind} {v} has been saved.",
    'Forwarding this: "{kind} {v}".',
    "{kind}\t{v}",
    "Last seen {kind}: {v}; please double-check.",
    "If {v} is not your {kind}, let us know.",
    "Dear Sir, I enclose my {kind} {v}. Regards",
    "A {kind} like {v} should be masked in exports.",
    "*{kind}* {v}",
    "The complaint cites {v}, the customer's {kind}.",
    "Quick question about {kind} {v}:",
    "Entry {v} - {kind} - verified.",
    "They moved, so the {kind} changed to {v}!",
    "Keep {v} handy; it is the {kind}.",
    "{kind}: {v} (primary)",
    "We received {kind} {v} from the broker.",
    "Updated {kind} on 3 May: {v}",
    "<li>{kind}: <b>{v}</b></li>",
    "Please confirm {kind}={v}.",
    "He read out {v} as his {kind} over the line.",
    "Fraud team flagged the {kind} {v} yesterday",
    "Your {kind} ending in {v} is on file.",
    "Re: {kind} {v}",
    "Invoice sent; {kind} used: {v}.",
    "({v})",
)
KINDS = {
    "CREDIT_CARD": ("card number", "credit card", "card", "Visa", "payment card"),
    "PHONE_NUMBER": ("phone number", "mobile", "phone", "telephone", "contact number"),
    "IP_ADDRESS": ("IP address", "IP", "server address", "client IP", "source address"),
    "IBAN_CODE": ("IBAN", "bank account", "account", "IBAN code", "payout account"),
    "EMAIL_ADDRESS": ("e-mail", "email address", "address", "contact", "login"),
}
DEV_NEGATIVES = (
    "Order {order} shipped on {date} for {price}.",
    "See ISBN {isbn} for the second edition.",
    "Upgraded to version {version} after the outage.",
    "Request id {uuid} failed at {date}.",
    "Your parcel {tracking} is out for delivery.",
    "The meeting moved to {date}; budget stays at {price}.",
    "Reference {order}, total {price}.",
    "{sentence}",
)
HELD_NEGATIVES = (
    "Invoice {order} dated {date}: {price} due.",
    "ISBN: {isbn}",
    "Release {version} fixes the login bug.",
    "Trace {uuid}",
    "Tracking: {tracking} (carrier notified)",
    "Paid {price} on {date}.",
    "Case {order} closed; see {version} notes.",
    "{sentence}",
)


@dataclass(frozen=True)
class Example:
    """One sentence: ``gold`` holds (entity, start, end) of each PII value; ``language`` is the locale's."""

    text: str
    language: str
    locale: str
    gold: tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class Split:
    """What one split draws from."""

    seed: int
    locales: tuple[str, ...]
    templates: tuple[str, ...]
    negatives: tuple[str, ...]


SPLITS = {
    "dev": Split(seed=20_261_201, locales=DEV_LOCALES, templates=DEV_TEMPLATES, negatives=DEV_NEGATIVES),
    "heldout": Split(seed=77_003_519, locales=HELD_LOCALES, templates=HELD_TEMPLATES, negatives=HELD_NEGATIVES),
}
CARD_TYPES = ("maestro", "mastercard", "visa16", "visa13", "visa19", "amex", "discover", "diners", "jcb15", "jcb16")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _grouped(digits: str, sizes: tuple[int, ...], sep: str) -> str:
    parts, pos = [], 0
    for size in sizes:
        parts.append(digits[pos : pos + size])
        pos += size
    if pos < len(digits):
        parts.append(digits[pos:])
    return sep.join(p for p in parts if p)


def card_value(fake, rng: random.Random) -> str:
    """A Luhn-valid number of a random Faker card type, contiguous or grouped as printed on the card (``fake`` is
    Faker's base card provider: some locales' providers know fewer card types)."""
    number = fake.credit_card_number(card_type=rng.choice(CARD_TYPES))
    style = rng.random()
    if style < 0.45:
        return number
    sep = " " if style < 0.8 else "-"
    sizes = (4, 6, 5) if len(number) in (14, 15) else (4, 4, 4, 4)
    return _grouped(number, sizes, sep)


def phone_value(fake, rng: random.Random, locale: str) -> str:
    """The locale's phone number as Faker writes it, or in international format, or pt_BR's MSISDN with '+'."""
    import phonenumbers

    if locale == "pt_BR" and rng.random() < 0.25:
        return "+" + fake.msisdn()
    number = fake.phone_number()
    if rng.random() < 0.35:
        try:
            parsed = phonenumbers.parse(number, locale.split("_")[1])
        except phonenumbers.NumberParseException:
            return number
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    return number


def ip_value(fake, rng: random.Random) -> str:
    """A public IPv4, or a global-unicast IPv6 written fully, zero-padded or compressed."""
    if rng.random() < 0.4:
        return fake.ipv4_public()
    groups = [rng.randrange(0x2000, 0x4000)] + [rng.randrange(0x10000) for _ in range(7)]
    style = rng.random()
    if style < 0.5:  # a run of zero groups, as real allocations have, then written compressed
        start = rng.randrange(2, 7)
        for i in range(start, min(8, start + rng.randrange(1, 4))):
            groups[i] = 0
    ip = ipaddress.IPv6Address(":".join(f"{g:x}" for g in groups))
    if style < 0.5:
        return ip.compressed if rng.random() < 0.7 else ip.compressed.upper()
    return ip.exploded if style < 0.75 else ":".join(f"{g:x}" for g in groups)


def _iban_ok(iban: str) -> bool:
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def iban_value(fake, rng: random.Random) -> str | None:
    """The locale's IBAN (None where Faker writes another country's or a failing one), compact, grouped, or lower."""
    iban = fake.iban()
    if iban[:2] != fake.current_country_code() or not _iban_ok(iban):
        return None
    style = rng.random()
    if style < 0.35:
        return iban
    grouped = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    if style < 0.7:
        return grouped
    return (grouped if rng.random() < 0.5 else iban).lower()


def email_value(fake, rng: random.Random) -> str:
    """One of the locale's e-mail address kinds."""
    return rng.choice((fake.email, fake.free_email, fake.company_email))()


def _value(entity: str, fake, cards, rng: random.Random, locale: str) -> str | None:
    makers: dict[str, Callable[[], str | None]] = {
        "CREDIT_CARD": lambda: card_value(cards, rng),
        "PHONE_NUMBER": lambda: phone_value(fake, rng, locale),
        "IP_ADDRESS": lambda: ip_value(fake, rng),
        "IBAN_CODE": lambda: iban_value(fake, rng),
        "EMAIL_ADDRESS": lambda: email_value(fake, rng),
    }
    return makers[entity]()


def _order_number(rng: random.Random) -> str:
    """An order number: 6-10 digits, or 12-16 digits that fail Luhn (a passing one would be a card number)."""
    if rng.random() < 0.5:
        return "#" * rng.randrange(2) + str(rng.randrange(10**5, 10**10))
    digits = str(rng.randrange(10**11, 10**16))
    while _luhn_ok(digits):
        digits = digits[:-1] + str((int(digits[-1]) + 1) % 10)
    return digits


def _tracking_number(rng: random.Random) -> str:
    """UPS (1Z...), USPS (22 digits), FedEx (12 digits, Luhn-failing) or DHL (10 digits, grouped) tracking."""
    kind = rng.randrange(4)
    if kind == 0:
        return "1Z" + "".join(rng.choice("0123456789ABCDEFGHJKLMNPRSTVWXYZ") for _ in range(16))
    if kind == 1:
        digits = "94" + "".join(rng.choice("0123456789") for _ in range(20))
        return _grouped(digits, (4, 4, 4, 4, 4), " ") if rng.random() < 0.5 else digits
    if kind == 2:
        digits = str(rng.randrange(10**11, 10**12))
        while _luhn_ok(digits):
            digits = digits[:-1] + str((int(digits[-1]) + 1) % 10)
        return digits
    return "JD" + str(rng.randrange(10**17, 10**18))


def _date(fake, rng: random.Random) -> str:
    d = fake.date_object()
    return rng.choice(
        (d.isoformat(), d.strftime("%d.%m.%Y"), d.strftime("%m/%d/%Y"), d.strftime("%d %B %Y"), d.strftime("%Y/%m/%d"))
    )


def _price(rng: random.Random) -> str:
    amount = rng.randrange(100, 10**8) / 100
    return rng.choice(
        (
            f"${amount:,.2f}",
            f"€{amount:,.2f}",
            f"{amount:,.2f} EUR".replace(",", " "),
            f"£{amount:.2f}",
            f"{amount:.0f} kr",
        )
    )


def _version(rng: random.Random) -> str:
    a, b, c = rng.randrange(30), rng.randrange(100), rng.randrange(1000)
    build = rng.randrange(10**4, 10**5)
    shapes = (
        f"{a}.{b}.{c}",
        f"v{a}.{b}.{c}-rc{b % 9}",
        f"{a}.{b}.{c}.{build}",
        f"{a}:{b}:{c}",
        f"{2000 + a}.{b % 12 + 1:02d}",
    )
    return rng.choice(shapes)


def negative(fake, rng: random.Random, template: str) -> str:
    """A sentence with no PII: ``template`` filled with PII-like numbers that are not PII."""
    fields = {
        "order": lambda: _order_number(rng),
        "date": lambda: _date(fake, rng),
        "price": lambda: _price(rng),
        "isbn": lambda: rng.choice((fake.isbn13, fake.isbn10))(),
        "version": lambda: _version(rng),
        "uuid": lambda: fake.uuid4(),
        "tracking": lambda: _tracking_number(rng),
        "sentence": lambda: fake.sentence(nb_words=12),
    }
    return template.format(**{k: f() for k, f in fields.items() if "{" + k + "}" in template})


def generate(split: str, n: int) -> list[Example]:
    """``n`` positives per entity type and ``n`` negatives of ``split`` ('dev' or 'heldout'), deterministic."""
    from faker import Faker

    spec = SPLITS[split]
    rng = random.Random(spec.seed)
    cards = Faker()
    cards.seed_instance(rng.randrange(2**32))
    fakers = {}
    for locale in spec.locales:
        fakers[locale] = Faker(locale)
        fakers[locale].seed_instance(rng.randrange(2**32))
    examples: list[Example] = []
    for entity in ENTITIES:
        made = 0
        while made < n:
            locale = rng.choice(spec.locales)
            value = _value(entity, fakers[locale], cards, rng, locale)
            if value is None:
                continue
            template = rng.choice(spec.templates)
            kind = rng.choice(KINDS[entity])
            head, _, tail = template.partition("{v}")
            head = head.format(kind=kind)
            text = head + value + tail.format(kind=kind)
            examples.append(Example(text, locale.split("_")[0], locale, ((entity, len(head), len(head) + len(value)),)))
            made += 1
    for _ in range(n):
        locale = rng.choice(spec.locales)
        text = negative(fakers[locale], rng, rng.choice(spec.negatives))
        examples.append(Example(text, locale.split("_")[0], locale, ()))
    return examples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=sorted(SPLITS), default="dev")
    parser.add_argument("--n", type=int, default=5, help="positives per entity type, and negatives")
    args = parser.parse_args(argv)
    for ex in generate(args.split, args.n):
        sys.stdout.write(f"{ex.locale}\t{[(e, ex.text[a:b]) for e, a, b in ex.gold]}\t{ex.text!r}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
