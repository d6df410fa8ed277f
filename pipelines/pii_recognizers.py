"""presidio's card, IBAN, IP and phone recognizers, configured for the shapes web text has (pipelines/pii.py runs them).

    .venv/bin/python bench/pii_quality.py     # how they score, on ../shared/data/pii and on the fresh Faker set

Each one is presidio's own class with its own validation (Luhn, mod-97, ``ipaddress``, phonenumbers); only what it
is given to match changes, for what presidio's defaults miss on data nobody tuned on (bench/pii_fresh_set.py):
- cards: presidio's pattern takes 13-17 digits after 4/5[0-5]/6/1/3. Here any 12-19 digit number, contiguous or in
  groups, that is not part of a longer run or a '+' number (``CARD_PATTERNS``); after Luhn, ``is_card_brand`` keeps the
  issuer ranges and lengths of the networks (Mastercard 2221-2720, 19-digit Visa, 12-19-digit Maestro, JCB 15 ...);
- IBANs: presidio's pattern and check, and the same in lower case (an IBAN typed in lower case is still one);
- IPs: presidio's patterns, plus an IPv6 right after a label and a colon ('IP:2001:db8::1'), which presidio's
  lookbehind refuses;
- phones: presidio's PhoneRecognizer (phonenumbers, strict VALID leniency) three ways - the configured regions,
  the regions where the text's language is spoken (``LANGUAGE_REGIONS``), and a lenient pass (POSSIBLE) for
  numbers written internationally with '+', whose country code phonenumbers reads without any region.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

# A 12-19 digit number written contiguous, in dash-separated or in space-separated groups, that neither a word
# character, a '+' (a country code), a decimal part nor another group with the same separator continues (a card
# inside a tracking number, or a phone number's digits, is not a card); cards listed one after another still are.
# presidio's recognizers run the `regex` module, which takes the variable-width lookbehinds.
CARD_PATTERNS = (
    ("Card, contiguous", r"(?<![\w+.,/-])\d{12,19}(?![\w]|[.,/-]\d)"),
    ("Card, dash groups", r"(?<![\w+.,/]|\w-)\d{4}(?:-\d{1,7}){1,4}(?![\w]|[.,/]\d|-\w)"),
    ("Card, space groups", r"(?<![\w+.,/-])(?<!(?<![\d-])\d+ )\d{4}(?: \d{1,7}){1,4}(?![\w]|[.,/]\d| \d)"),
)
CARD_CANDIDATE = re.compile(r"\d(?:[ -]?\d){11}")  # the first 12 digits of every CARD_PATTERNS match

# (first digits, lowest, highest, lengths): the issuer ranges of the card networks (ISO/IEC 7812 IINs as the
# networks publish them). A Luhn-valid number outside them is an account, order or tracking number.
CARD_BRANDS: tuple[tuple[int, int, int, frozenset[int]], ...] = (
    (1, 4, 4, frozenset({13, 16, 19})),  # Visa
    (2, 51, 55, frozenset({16})),  # Mastercard
    (4, 2221, 2720, frozenset({16})),  # Mastercard 2-series
    (2, 34, 34, frozenset({15})),  # American Express
    (2, 37, 37, frozenset({15})),
    (4, 6011, 6011, frozenset(range(16, 20))),  # Discover
    (3, 644, 649, frozenset(range(16, 20))),
    (2, 65, 65, frozenset(range(16, 20))),
    (2, 62, 62, frozenset(range(16, 20))),  # UnionPay
    (3, 300, 305, frozenset(range(14, 20))),  # Diners Club
    (4, 3095, 3095, frozenset(range(14, 20))),
    (2, 36, 36, frozenset(range(14, 20))),
    (2, 38, 39, frozenset(range(14, 20))),
    # JCB issues 3528-3589; the whole 35 block is taken (Faker draws JCB numbers from all of it, no one else uses it)
    (2, 35, 35, frozenset(range(16, 20))),  # JCB
    (4, 2131, 2131, frozenset({15})),  # JCB (15 digits)
    (4, 1800, 1800, frozenset({15})),
    (2, 50, 50, frozenset(range(12, 20))),  # Maestro
    (2, 56, 69, frozenset(range(12, 20))),
    (4, 2200, 2204, frozenset(range(16, 20))),  # Mir
    (1, 1, 1, frozenset({15})),  # UATP
)


def is_card_brand(digits: str) -> bool:
    """True when ``digits`` (digits only) start with a card network's issuer range and have one of its lengths."""
    return any(
        len(digits) in lengths and low <= int(digits[:width]) <= high for width, low, high, lengths in CARD_BRANDS
    )


# Where each language (fastText's lid.176 labels, as lmpipe's language filter writes them) is spoken: the regions
# phonenumbers reads national numbers of that language's texts in, beside PIIConfig.phone_regions.
LANGUAGE_REGIONS: dict[str, tuple[str, ...]] = {
    "en": ("US", "GB", "CA", "AU", "IN", "IE", "NZ", "ZA", "SG", "PH", "NG"),
    "de": ("DE", "AT", "CH", "LI", "LU"),
    "fr": ("FR", "BE", "CH", "CA", "LU", "MA", "SN", "CI"),
    "es": ("ES", "MX", "AR", "CO", "CL", "PE", "VE", "EC", "UY"),
    "it": ("IT", "CH", "SM"),
    "nl": ("NL", "BE", "SR"),
    "pt": ("BR", "PT", "AO", "MZ"),
    "pl": ("PL",),
    "sv": ("SE", "FI"),
    "da": ("DK",),
    "no": ("NO",),
    "nb": ("NO",),
    "nn": ("NO",),
    "fi": ("FI",),
    "cs": ("CZ",),
    "sk": ("SK",),
    "hu": ("HU",),
    "ro": ("RO", "MD"),
    "bg": ("BG",),
    "el": ("GR", "CY"),
    "tr": ("TR", "CY"),
    "ru": ("RU", "BY", "KZ", "UA"),
    "uk": ("UA",),
    "hr": ("HR", "BA"),
    "sr": ("RS", "BA", "ME"),
    "sl": ("SI",),
    "lt": ("LT",),
    "lv": ("LV",),
    "et": ("EE",),
    "ja": ("JP",),
    "ko": ("KR",),
    "zh": ("CN", "TW", "HK", "SG"),
    "vi": ("VN",),
    "th": ("TH",),
    "id": ("ID",),
    "ms": ("MY", "SG"),
    "hi": ("IN",),
    "ar": ("SA", "EG", "AE", "MA", "DZ", "JO"),
    "he": ("IL",),
    "fa": ("IR",),
}


def card_recognizer() -> Any:
    """presidio's CreditCardRecognizer (Luhn check) on CARD_PATTERNS."""
    from presidio_analyzer import Pattern
    from presidio_analyzer.predefined_recognizers import CreditCardRecognizer

    return CreditCardRecognizer(patterns=[Pattern(name, regex, 0.3) for name, regex in CARD_PATTERNS])


# presidio's IBAN pattern in lower case. Its groups of 4 after the first (the bank code's) must hold a digit: with
# letters allowed, a lower-case word after the IBAN ('es76 ... 4940 into') would be taken as one more group, and
# presidio's fallback only ever drops the last two groups.
IBAN_LOWER = (
    r"(?<![a-zA-Z0-9])([a-z]{2}[0-9]{2}(?:[ -]?[a-z0-9]{4})(?:[ -]?(?![a-z]{4})[a-z0-9]{4}){1,5})"
    r"((?:[ -]?(?![a-z]{4})[a-z0-9]{4})?)((?:[ -]?[a-z0-9]{1,3})?)(?![a-zA-Z0-9])"
)


def iban_recognizer() -> Any:
    """presidio's IbanRecognizer (country format + mod-97) on its own pattern and on IBAN_LOWER."""
    from presidio_analyzer import Pattern
    from presidio_analyzer.predefined_recognizers import IbanRecognizer

    class AnyCaseIbanRecognizer(IbanRecognizer):
        """presidio's check runs on the upper-cased match (its country formats are upper case)."""

        def validate_result(self, pattern_text: str) -> bool:
            return super().validate_result(pattern_text.upper())

    return AnyCaseIbanRecognizer(patterns=[*IbanRecognizer.PATTERNS, Pattern("IBAN lower case", IBAN_LOWER, 0.5)])


def ip_recognizer() -> Any:
    """presidio's IpRecognizer (``ipaddress`` validation), plus its IPv6 pattern right after 'label:'."""
    from presidio_analyzer import Pattern
    from presidio_analyzer.predefined_recognizers import IpRecognizer

    ipv6 = next(p for p in IpRecognizer.PATTERNS if p.name == "IPv6")
    # a non-hex letter before the colon: 'IP:2001:db8::1' (a hex letter could be the address's own first group)
    after_label = Pattern("IPv6 after label", r"(?<=[g-zG-Z]:)" + ipv6.regex.removeprefix(r"(?<![\w:])"), ipv6.score)
    return IpRecognizer(patterns=[*IpRecognizer.PATTERNS, after_label])


class PhonePasses:
    """presidio PhoneRecognizers, one per pass: ``analyze(text, entities, nlp_artifacts, language=None)`` returns
    the union of the configured regions' (VALID), the language's regions' (VALID) and the international (POSSIBLE,
    '+' numbers only) results, one result per span."""

    def __init__(self, regions: Sequence[str]) -> None:
        from presidio_analyzer.predefined_recognizers import PhoneRecognizer

        self.regions = tuple(regions)
        self.configured = PhoneRecognizer(supported_regions=list(self.regions))
        # phonenumbers reads a '+' number's country from its own digits: region 'ZZ' (unknown) parses nothing else
        self.international = PhoneRecognizer(supported_regions=["ZZ"], leniency=0)

    @lru_cache(maxsize=64)  # noqa: B019 - one PhonePasses per configuration, kept for the process anyway
    def _language_pass(self, language: str) -> Any:
        from presidio_analyzer.predefined_recognizers import PhoneRecognizer

        extra = [r for r in LANGUAGE_REGIONS.get(language, ()) if r not in self.regions]
        return PhoneRecognizer(supported_regions=extra) if extra else None

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None, language: str | None = None) -> list:
        passes = [self.configured, self.international]
        if language and (extra := self._language_pass(language)) is not None:
            passes.append(extra)
        seen: dict[tuple[int, int], Any] = {}
        for recognizer in passes:
            for r in recognizer.analyze(text, entities=entities, nlp_artifacts=nlp_artifacts):
                seen.setdefault((r.start, r.end), r)
        return sorted(seen.values(), key=lambda r: (r.start, r.end))
