"""PII scrubbing of one shard with presidio-analyzer's recognizers, at crawl speed: spans, counts, replacement.

    lmpipe task pii --input IN.parquet --output OUT.parquet [--annotate-only]
    lmpipe task pii --input IN.parquet --output OUT.parquet --set replacement.EMAIL_ADDRESS=fake

Each entity in ``PIIConfig.entities`` maps to one presidio recognizer, called directly
(``recognizer.analyze(text, entities=[...], nlp_artifacts=None)``): no AnalyzerEngine, no context enhancement, so
every score is the recognizer's own (validated checksum = 1.0, phone = 0.4, IP = 0.6, ...). Pattern and checksum
recognizers need no NLP model. PERSON and LOCATION come from spaCy NER through presidio's SpacyNlpEngine and
SpacyRecognizer, only when they are in ``entities``; the model named by ``spacy_model`` must be installed (it is
never downloaded: ``SpacyModelNotFoundError`` names it).

Speed (bench/pii_throughput.py): presidio's regexes and phonenumbers' matcher are built for one document, and
phonenumbers tries every region on every number in the text. ``PIIScrubber`` keeps presidio's recognizers and only
decides where to call them:
- a cheap candidate regex per entity (``Detector.candidate``) that every reportable span must contain: a document
  without one never reaches the recognizer;
- the recognizer runs on windows around the candidates instead of the whole text: the whitespace-free token for
  e-mail / IP / MAC / crypto (their matches never contain whitespace, and their anchors look one character out,
  which whitespace and the window edge answer alike), and the run of digits and phone punctuation (plus a little
  context) for phone numbers; results are mapped back to document offsets;
- window results are cached per process, so boilerplate repeated across a shard (a site's phone number in every
  footer) is analysed once; NER runs as spaCy ``nlp.pipe`` batches.
``find_pii(text, cfg, prefilter=False)`` runs every recognizer on the whole text instead; tests check both give the
same spans on real text.

Policy on top of presidio, against false positives on web text: spans need ``score >= min_score``; with
``public_ips_only`` (FineWeb's policy) an IP that is not globally routable (private, loopback, link-local, multicast,
reserved, unspecified, documentation) is not PII; a Luhn-valid "card" outside the card networks' issuer ranges and
lengths (a run of years, an order number) is not a card (``is_card_number``); a phone number has at least
``MIN_PHONE_DIGITS`` digits joined by phone punctuation, is neither an IP literal nor a date or a year range
(``is_phone_number``), nor an ISBN, version, price, fragment of a longer identifier, or bare digit run without a
phone word near it (``is_phone_in_context``). pipelines/pii_recognizers.py says how presidio's card, IBAN, IP and
phone recognizers are configured (all card brands and lengths, lower-case IBANs, phone numbers read in the regions
of the text's ``language`` column and, with '+', in any country). E-mail uses FineWeb's address regex
(datatrove's PIIFormatter) as its pattern, so lmpipe scrubs exactly the addresses FineWeb scrubs. Overlapping spans
keep the higher score, then the longer span.

Output: ``text`` with every span replaced as ``replacement`` says (typed placeholder ``<EMAIL_ADDRESS>`` by default,
a fixed fake value, or kept) unless ``annotate_only``; ``pii_spans`` (list<struct<entity, start, end>> on the
ORIGINAL text) and ``pii_counts`` (list<struct<entity, count>>); stats ``pii_<ENTITY>`` per type and shard.
PII never drops a document. ``run_pii`` streams the shard through pipelines/documents.py in batches of ``BATCH_ROWS``.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import tldextract

from pipelines.config import PIIConfig
from pipelines.documents import BatchResult, DocumentReader, run_documents
from pipelines.errors import ConfigError
from pipelines.pii_recognizers import (
    CARD_CANDIDATE,
    PhonePasses,
    card_recognizer,
    iban_recognizer,
    ip_recognizer,
    is_card_brand,
)
from pipelines.stats import StageStats

logger = logging.getLogger(__name__)

BATCH_ROWS = 2048
NER_ENTITIES = ("PERSON", "LOCATION")
WINDOW_CACHE_SIZE = 65_536  # windows (per detector) whose recognizer results a scrubber keeps; then it starts over

# phonenumbers' _VALID_PUNCTUATION (what may separate the digit groups of a number) and the characters a number may
# start with (plus signs, opening brackets); tests/pipelines/test_pii.py checks them against phonenumbers.
PHONE_PUNCTUATION = (
    "-x\u2010-\u2015\u2212\u30fc\uff0d-\uff0f \u00a0\u00ad\u200b\u2060\u3000()\uff08\uff09\uff3b\uff3d.\\[\\]/~\u2053"
    "\u223c\uff5e"
)
PHONE_LEAD = "+\uff0b(\\[\uff08\uff3b"
# A full national number in the default regions has at least 7 digits. Of the "phone numbers" presidio finds in the
# pages extracted from ../shared/data/warc, all 14 with fewer digits are dates ('04-12-78'), ranges, counts or ids.
MIN_PHONE_DIGITS = 7
PHONE_DIGITS = re.compile(rf"\d(?:[{PHONE_PUNCTUATION}]{{0,4}}\d){{{MIN_PHONE_DIGITS - 1}}}")
# The characters of a number's run besides digits (str.isdecimal, as re's \d): PHONE_PUNCTUATION and PHONE_LEAD.
_PHONE_RUN_CHARS = frozenset(
    "-x\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u30fc\uff0d\uff0e\uff0f \u00a0\u00ad\u200b\u2060\u3000()"
    "\uff08\uff09\uff3b\uff3d.[]/~\u2053\u223c\uff5e+\uff0b"
)
_PHONE_RUN_END = re.compile(rf"[{PHONE_PUNCTUATION}\d{PHONE_LEAD}]*")
_PHONE_EDGE = "".join(sorted(_PHONE_RUN_CHARS))
PHONE_CONTEXT_AFTER = 24  # chars after a number's run the matcher may need: an extension ("ext. 1234"), ":ss" checks
# Dates and year ranges that phonenumbers can read as a number in some region ('01.01.2019', '1968--1971').
_YEAR = r"(?:1[5-9]|20)\d\d"
DATE = re.compile(
    rf"{_YEAR}[-./ ](?:0?[1-9]|1[0-2])[-./ ](?:0?[1-9]|[12]\d|3[01])"
    rf"|(?:0?[1-9]|[12]\d|3[01])[-./](?:0?[1-9]|[12]\d|3[01])[-./]{_YEAR}"
    rf"|{_YEAR} ?[-\u2010-\u2015\u2212]{{1,2}} ?{_YEAR}"
)
# FineWeb's e-mail regex (datatrove's PIIFormatter): the e-mail recognizer's pattern, so lmpipe scrubs exactly the
# addresses FineWeb scrubs (presidio's own, looser pattern takes 'a..b@x.com' and non-ASCII local parts whole, which
# FineWeb does not; on presidio's and datatrove's labelled cases FineWeb's pattern alone scores P = R = 1.0).
FINEWEB_EMAIL = (
    r"\b[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:(?:[A-Za-z0-9](?:["
    r"A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?|\[(?:(?:25[0-5]|2[0-4][0-9]|["
    r"01]?[0-9][0-9]?)\.){3}(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?|[A-Za-z0-9-]*[A-Za-z0-9]:)])"
)
_FINEWEB_EMAIL = re.compile(FINEWEB_EMAIL)
ISBN_LABEL = re.compile(r"\bISBN(?:-1[03])?:?\s*$", re.IGNORECASE)
VERSION_LABEL = re.compile(r"\b(?:v|version|release|build|rev|revision)\.?:?\s*$", re.IGNORECASE)
CURRENCY_BEFORE = re.compile(r"[$€£¥₹]\s?$")
CURRENCY_AFTER = re.compile(r"\s?(?:[$€£¥₹]|(?:EUR|USD|GBP|CHF|JPY|PLN|SEK|NOK|DKK|CZK|kr|zł|Kč|Ft)\b)")
# Words that make a bare run of digits a phone number (presidio's PhoneRecognizer context, less 'number', which
# order and account numbers share, and the same words in the languages lmpipe keeps most).
PHONE_CONTEXT = re.compile(
    r"\b(?:t[eé]l|phone|mobile?|cell|call|fax|whatsapp|sms|contact|ring|dial|hotline|handy|m[oó]vil|celular"
    r"|portable|cellulare|kom[oó]rk|電話|携帯)",
    re.IGNORECASE,
)
PHONE_CONTEXT_CHARS = 40  # how far before or after a bare digit run its context word may be
# an ISBN-10 or -13 written with hyphens: 4 or 5 groups, the last one the check digit
ISBN_SHAPE = re.compile(r"(?:97[89]-)?\d{1,5}-\d{1,7}-\d{1,7}-[\dXx]")

SPAN_TYPE = pa.list_(pa.struct([("entity", pa.string()), ("start", pa.int32()), ("end", pa.int32())]))
COUNTS_TYPE = pa.list_(pa.struct([("entity", pa.string()), ("count", pa.int32())]))


class SpacyModelNotFoundError(ConfigError, FileNotFoundError):
    """An NER entity type was asked for, but its spaCy pipeline is not installed (and is never downloaded)."""

    def __init__(self, model: str, entities: Sequence[str]) -> None:
        self.model = model
        super().__init__(
            f"PII entities {', '.join(entities)} need the spaCy model {model!r}, which is not installed "
            f"(lmpipe never downloads models): install it (python -m spacy download {model}) or set "
            "pii.spacy_model to an installed spaCy pipeline or its directory"
        )


@dataclass(frozen=True, order=True)
class Span:
    """One PII finding: ``text[start:end]`` is an ``entity`` with presidio ``score``."""

    start: int
    end: int
    entity: str
    score: float


def placeholder(entity: str) -> str:
    """The typed placeholder a span of ``entity`` becomes: ``<EMAIL_ADDRESS>``."""
    return f"<{entity}>"


def replacement_text(entity: str, cfg: PIIConfig) -> str | None:
    """What a span of ``entity`` becomes under ``cfg.replacement``: its placeholder, its fake value, or None (kept)."""
    how = cfg.replacement.get(entity, "placeholder")
    if how == "keep":
        return None
    if how == "fake":
        return cfg.fake_values[entity]
    return placeholder(entity)


# ---------------------------------------------------------------------------------------------------------------
# Recognizers


@lru_cache(maxsize=1)
def _offline_tld_extractor() -> tldextract.TLDExtract:
    # suffix_list_urls=() + cache_dir=None: tldextract uses the public-suffix snapshot bundled in its wheel and
    # never fetches (its default fetches publicsuffix.org on first use, which fails or hangs offline).
    return tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)


def _email_recognizer() -> Any:
    from presidio_analyzer import Pattern
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    class OfflineEmailRecognizer(EmailRecognizer):
        """presidio's EmailRecognizer with FineWeb's address regex as its pattern; a match is valid as it is
        (FineWeb scrubs it), so validation never reaches tldextract's suffix list."""

        def validate_result(self, pattern_text: str) -> bool:
            if _FINEWEB_EMAIL.fullmatch(pattern_text):
                return True
            return _offline_tld_extractor()(pattern_text).fqdn != ""

    return OfflineEmailRecognizer(patterns=[Pattern("Email (FineWeb)", FINEWEB_EMAIL, 0.5)])


def _pattern_factories(phone_regions: tuple[str, ...]) -> dict[str, Callable[[], Any]]:
    # presidio imports spaCy at package import: keep that out of `import pipelines.pii`.
    from presidio_analyzer.predefined_recognizers import (
        CryptoRecognizer,
        MacAddressRecognizer,
        UkNinoRecognizer,
        UrlRecognizer,
        UsSsnRecognizer,
    )

    return {
        "EMAIL_ADDRESS": _email_recognizer,
        "PHONE_NUMBER": lambda: PhonePasses(phone_regions),
        "IP_ADDRESS": ip_recognizer,
        "CREDIT_CARD": card_recognizer,
        "IBAN_CODE": iban_recognizer,
        "US_SSN": UsSsnRecognizer,
        "CRYPTO": CryptoRecognizer,
        "MAC_ADDRESS": MacAddressRecognizer,
        "UK_NINO": UkNinoRecognizer,
        "URL": UrlRecognizer,
    }


@dataclass(frozen=True)
class Detector:
    """One entity's presidio recognizer and where to call it.

    ``candidate`` finds something every span the recognizer can report (under the policy) contains, read off the
    recognizer's regex (or phonenumbers'); ``window`` says what is analysed around a candidate: ``token`` (the
    whitespace-free token), ``phone`` (the run of digits and phone punctuation) or ``text`` (the whole document).
    """

    entity: str
    recognizer: Any
    candidate: re.Pattern[str]
    window: str


# Each pattern starts with a literal or a small character set where it can: re then skips ahead fast.
CANDIDATES: dict[str, tuple[re.Pattern[str], str]] = {
    "EMAIL_ADDRESS": (re.compile("@"), "token"),
    "PHONE_NUMBER": (PHONE_DIGITS, "phone"),
    "CREDIT_CARD": (CARD_CANDIDATE, "text"),
    # presidio: 3 digits, optional separator, 2 digits ... (every SSN pattern starts that way)
    "US_SSN": (re.compile(r"\d{3}[- .]?\d{2}"), "text"),
    # country code + check digits, in either case (pipelines/pii_recognizers.py matches lower-case IBANs too).
    "IBAN_CODE": (re.compile(r"[A-Z]{2}[0-9]{2}", re.IGNORECASE), "text"),
    # the last three octets of a dotted IPv4 (also inside mapped/embedded IPv6), the '::' of every compressed IPv6,
    # or 6 groups between colons of a full 8-group IPv6.
    "IP_ADDRESS": (re.compile(r"\.\d{1,3}\.\d{1,3}\.\d|::|:(?:[0-9a-fA-F]{1,4}:){6}"), "token"),
    # '1' + 25 alphanumerics: in every address form ('1...', '3...', 'bc1...'); case-insensitive in presidio.
    "CRYPTO": (re.compile(r"[13][^\W_]{25}"), "token"),
    # 4 of the 5 separators of hh:hh:hh:hh:hh:hh (or '-'), or the middle group of Cisco's hhhh.hhhh.hhhh
    "MAC_ADDRESS": (re.compile(r"[:-](?:[0-9a-fA-F]{2}[:-]){3}[0-9a-fA-F]{2}[:-]|\.[0-9a-fA-F]{4}\."), "token"),
    # presidio (case-insensitive): 2 letters, then three 2-digit groups and a letter A-D, each after an optional space.
    "UK_NINO": (re.compile(r"[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[a-dA-D]"), "text"),
    "URL": (re.compile(r"\.[a-z]{2}", re.IGNORECASE), "text"),
}


@lru_cache(maxsize=8)
def _detectors(entities: tuple[str, ...], phone_regions: tuple[str, ...]) -> tuple[Detector, ...]:
    """The pattern detectors for ``entities`` (NER types excluded), built once per process and configuration."""
    factories = _pattern_factories(phone_regions)
    return tuple(
        Detector(entity, factories[entity](), *CANDIDATES[entity]) for entity in entities if entity not in NER_ENTITIES
    )


def recognizers(cfg: PIIConfig) -> list[tuple[str, Any]]:
    """The (entity, presidio recognizer) pairs of ``cfg``'s pattern entities, in ``cfg.entities`` order."""
    return [(d.entity, d.recognizer) for d in _detectors(tuple(cfg.entities), tuple(cfg.phone_regions))]


def spacy_model_available(model: str) -> bool:
    """True when ``model`` is an installed spaCy pipeline package or a pipeline directory."""
    import spacy

    return bool(spacy.util.is_package(model)) or Path(model).is_dir()


@lru_cache(maxsize=2)
def _ner_engine(model: str, entities: tuple[str, ...]) -> tuple[Any, Any]:
    """(presidio SpacyNlpEngine, SpacyRecognizer) for ``model``; SpacyModelNotFoundError when it is not installed."""
    if not spacy_model_available(model):
        raise SpacyModelNotFoundError(model, entities)
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import SpacyRecognizer

    engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": model}])
    engine.load()  # presidio downloads only models that are neither installed nor a path: checked above
    return engine, SpacyRecognizer(supported_entities=list(entities))


# ---------------------------------------------------------------------------------------------------------------
# Policy


def is_public_ip(value: str) -> bool:
    """True for a globally routable unicast address; IPv4-mapped IPv6 is judged as its IPv4.

    ``is_global`` alone lets multicast through (224.0.0.0/4 is not in IANA's special-purpose registry).
    """
    try:
        ip = ipaddress.ip_interface(value).ip
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_loopback or ip.is_link_local)


def is_card_number(value: str) -> bool:
    """True when the (Luhn-checked) digits of ``value`` are in a card network's issuer range with one of its lengths
    (``is_card_brand``): one in ten of any digit run passes Luhn, e.g. runs of years such as ``1996 1997 1998 1999``
    or order and tracking numbers; outside the networks' ranges they are not cards."""
    return is_card_brand(re.sub(r"\D", "", value))


def is_phone_number(value: str) -> bool:
    """True for a span with MIN_PHONE_DIGITS digits joined by phone punctuation (an extension's digits do not count)
    that is neither an IP address literal (phonenumbers' lenient matcher reads ``192.168.3.143`` as a phone number,
    which would scrub private addresses that the public-IP policy keeps) nor a date or a year range."""
    if not PHONE_DIGITS.search(value) or DATE.fullmatch(value.strip(_PHONE_EDGE)):
        return False
    try:
        ipaddress.ip_address(value.strip())
    except ValueError:
        return True
    return False


def is_isbn(text: str, start: int, end: int) -> bool:
    """True when ``text[start:end]`` is an ISBN: labelled so just before, or hyphenated as one with a valid check
    digit (phonenumbers reads ``0-7619-9852-7`` as a phone number in several regions)."""
    if ISBN_LABEL.search(text, max(0, start - 12), start):
        return True
    value = text[start:end]
    if not ISBN_SHAPE.fullmatch(value):
        return False
    digits = value.replace("-", "")
    if len(digits) == 10:
        total = sum((10 - i) * (10 if c in "Xx" else int(c)) for i, c in enumerate(digits))
        return total % 11 == 0
    return len(digits) == 13 and sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(digits)) % 10 == 0


def is_phone_in_context(text: str, start: int, end: int) -> bool:
    """False for a phone-shaped span that its surroundings say is something else: an ISBN (``is_isbn``), a version
    (``v``, ``release`` just before), a price (a currency next to it), a fragment of a longer run (a digit and a
    space, or a word character and a dash, on either side: a tracking number's tail, a UUID's groups), or a bare
    run of digits (no '+', separator or trunk '0') with no phone word within PHONE_CONTEXT_CHARS (an order number,
    which phonenumbers finds valid in some region as often as a real number)."""
    value = text[start:end]
    before, after = text[max(0, start - 12) : start], text[end : end + 6]
    if is_isbn(text, start, end) or VERSION_LABEL.search(before):
        return False
    if CURRENCY_BEFORE.search(before) or CURRENCY_AFTER.match(after):
        return False
    if re.search(r"(?:\d |\w-)$", before) or re.match(r"(?: \d|-\w)", after):
        return False
    if value.isdecimal() and not value.startswith("0"):
        around = text[max(0, start - PHONE_CONTEXT_CHARS) : end + PHONE_CONTEXT_CHARS]
        return bool(PHONE_CONTEXT.search(around))
    return True


def _accept(entity: str, text: str, start: int, end: int, score: float, cfg: PIIConfig) -> bool:
    value = text[start:end]
    if score < cfg.min_score:
        return False
    if entity == "IP_ADDRESS":
        return not cfg.public_ips_only or is_public_ip(value)
    if entity == "CREDIT_CARD":
        return is_card_number(value)
    if entity == "PHONE_NUMBER":
        return is_phone_number(value) and is_phone_in_context(text, start, end)
    return True


def resolve_overlaps(spans: list[Span]) -> list[Span]:
    """Keep non-overlapping spans, preferring the higher score, then the longer span; sorted by start."""
    kept: list[Span] = []
    for span in sorted(spans, key=lambda s: (-s.score, -(s.end - s.start), s.start)):
        if all(span.end <= k.start or span.start >= k.end for k in kept):
            kept.append(span)
    return sorted(kept)


# ---------------------------------------------------------------------------------------------------------------
# Windows: where in a text a recognizer needs to look


def _token_windows(text: str, candidate: re.Pattern[str]) -> list[tuple[int, int]]:
    """Whitespace-free tokens holding a candidate, in order, without repeats."""
    windows: list[tuple[int, int]] = []
    for m in candidate.finditer(text):
        if windows and m.start() < windows[-1][1]:
            continue
        start = m.start()
        while start > 0 and not text[start - 1].isspace():
            start -= 1
        end = m.end()
        while end < len(text) and not text[end].isspace():
            end += 1
        windows.append((start, end))
    return windows


def _phone_windows(text: str) -> list[tuple[int, int, list[tuple[int, int]]]]:
    """(window start, window end, runs) for the runs of digits and phone punctuation that could hold a reportable
    number (PHONE_DIGITS, not a date): the run plus one character before (phonenumbers checks it for a letter) and
    PHONE_CONTEXT_AFTER after, within the line (phonenumbers never matches across a newline); overlapping windows
    merge. Only results starting inside a run count: the context is there for the matcher's checks."""
    windows: list[tuple[int, int, list[tuple[int, int]]]] = []
    pos = 0
    for m in PHONE_DIGITS.finditer(text):
        if m.start() < pos:
            continue
        start = m.start()
        while start > 0 and (text[start - 1] in _PHONE_RUN_CHARS or text[start - 1].isdecimal()):
            start -= 1
        end = _PHONE_RUN_END.match(text, m.end()).end()
        pos = end
        if DATE.fullmatch(text[start:end].strip(_PHONE_EDGE)):
            continue
        line_start = text.rfind("\n", 0, start) + 1
        line_end = text.find("\n", end)
        a = max(line_start, start - 1)
        b = min(len(text) if line_end < 0 else line_end, end + PHONE_CONTEXT_AFTER)
        if windows and a < windows[-1][1]:
            prev_a, _, runs = windows[-1]
            windows[-1] = (prev_a, max(b, windows[-1][1]), [*runs, (start, end)])
        else:
            windows.append((a, b, [(start, end)]))
    return windows


def _call(detector: Detector, text: str, language: str | None) -> list[Any]:
    """The detector's presidio results on ``text``; the phone recognizer also takes the text's language."""
    if language is not None and detector.entity == "PHONE_NUMBER":
        return detector.recognizer.analyze(text, entities=[detector.entity], nlp_artifacts=None, language=language)
    return detector.recognizer.analyze(text, entities=[detector.entity], nlp_artifacts=None)


class PIIScrubber:
    """Finds and replaces PII for one configuration; ``find_batch`` is the batch entry ``run_pii`` uses."""

    def __init__(self, cfg: PIIConfig) -> None:
        self.cfg = cfg
        self.detectors = _detectors(tuple(cfg.entities), tuple(cfg.phone_regions))
        self.ner_entities = tuple(e for e in cfg.entities if e in NER_ENTITIES)
        self.ner = _ner_engine(cfg.spacy_model, self.ner_entities) if self.ner_entities else None
        self._cache: dict[str, dict[str, tuple[tuple[int, int, float], ...]]] = {d.entity: {} for d in self.detectors}

    def _analyze(
        self, detector: Detector, window: str, language: str | None = None
    ) -> tuple[tuple[int, int, float], ...]:
        cache = self._cache[detector.entity]
        key = window if language is None else f"{language}\x00{window}"
        found = cache.get(key)
        if found is None:
            results = _call(detector, window, language)
            found = tuple((r.start, r.end, float(r.score)) for r in results)
            if len(cache) >= WINDOW_CACHE_SIZE:
                cache.clear()
            cache[key] = found
        return found

    def _raw(
        self, detector: Detector, text: str, prefilter: bool, language: str | None = None
    ) -> Iterable[tuple[int, int, float]]:
        if not prefilter:  # presidio's recognizer on the whole text, no cache
            for r in _call(detector, text, language):
                yield r.start, r.end, float(r.score)
        elif detector.window == "text":  # whole documents are not cached: they rarely repeat, and are large
            if detector.candidate.search(text):
                for r in _call(detector, text, language):
                    yield r.start, r.end, float(r.score)
        elif detector.window == "token":
            for a, b in _token_windows(text, detector.candidate):
                for start, end, score in self._analyze(detector, text[a:b]):
                    yield a + start, a + end, score
        else:  # phone
            for a, b, runs in _phone_windows(text):
                for start, end, score in self._analyze(detector, text[a:b], language):
                    if any(s <= a + start < e for s, e in runs):
                        yield a + start, a + end, score

    def find_batch(
        self, texts: Sequence[str | None], *, prefilter: bool = True, languages: Sequence[str | None] | None = None
    ) -> list[list[Span]]:
        """PII spans of each text (None and '' have none), policy applied and overlaps resolved, sorted by start.

        ``languages`` (one per text, e.g. the ``language`` column of the language filter) adds the regions where
        each text's language is spoken to the phone regions phonenumbers reads its national numbers in.
        """
        found: list[list[Span]] = [[] for _ in texts]
        langs = list(languages) if languages is not None else [None] * len(texts)
        for detector in self.detectors:
            for i, text in enumerate(texts):
                if not text:
                    continue
                for start, end, score in self._raw(detector, text, prefilter, langs[i]):
                    if _accept(detector.entity, text, start, end, score, self.cfg):
                        found[i].append(Span(start, end, detector.entity, score))
        if self.ner is not None:
            self._find_ner(texts, found)
        return [resolve_overlaps(spans) if spans else spans for spans in found]

    def _find_ner(self, texts: Sequence[str | None], found: list[list[Span]]) -> None:
        engine, recognizer = self.ner
        todo = [i for i, t in enumerate(texts) if t]
        nlp = engine.nlp["en"]
        nlp.max_length = max([nlp.max_length, *(len(texts[i] or "") + 1 for i in todo)])
        artifacts = engine.process_batch([texts[i] for i in todo], "en", batch_size=self.cfg.ner_batch_size)
        for i, (text, nlp_artifacts) in zip(todo, artifacts, strict=True):
            for r in recognizer.analyze(text, entities=list(self.ner_entities), nlp_artifacts=nlp_artifacts):
                if _accept(r.entity_type, text, r.start, r.end, r.score, self.cfg):
                    found[i].append(Span(r.start, r.end, r.entity_type, float(r.score)))

    def scrub(self, text: str, spans: list[Span]) -> str:
        """``text`` with each span replaced as ``cfg.replacement`` says."""
        return scrub(text, spans, self.cfg)


@lru_cache(maxsize=4)
def _scrubber(cfg_json: str) -> PIIScrubber:
    return PIIScrubber(PIIConfig.model_validate_json(cfg_json))


def scrubber(cfg: PIIConfig) -> PIIScrubber:
    """The process's PIIScrubber for ``cfg`` (its recognizers and window cache are reused across shards)."""
    return _scrubber(cfg.model_dump_json())


def find_pii(text: str, cfg: PIIConfig, *, prefilter: bool = True, language: str | None = None) -> list[Span]:
    """All PII spans of ``text`` under ``cfg`` (min_score, policy, overlaps resolved), sorted by start.

    ``prefilter=False`` runs every recognizer on the whole text (the result is the same, only slower); ``language``
    is the text's language (phone numbers are also read in the regions where it is spoken).
    """
    return scrubber(cfg).find_batch([text], prefilter=prefilter, languages=[language])[0]


def scrub(text: str, spans: list[Span], cfg: PIIConfig | None = None) -> str:
    """``text`` with each (non-overlapping) span replaced: its typed placeholder, or as ``cfg.replacement`` says."""
    parts: list[str] = []
    pos = 0
    for span in sorted(spans):
        if span.start < pos:
            raise ValueError(f"overlapping PII spans at {span.start}: resolve them first (resolve_overlaps)")
        new = placeholder(span.entity) if cfg is None else replacement_text(span.entity, cfg)
        parts.append(text[pos : span.start])
        parts.append(text[span.start : span.end] if new is None else new)
        pos = span.end
    parts.append(text[pos:])
    return "".join(parts)


class PIIBatches:
    """run_pii's transform: find and replace PII in each batch, counting spans per entity and documents with PII."""

    columns = pa.schema([("text", pa.string()), ("pii_spans", SPAN_TYPE), ("pii_counts", COUNTS_TYPE)])

    def __init__(self, cfg: PIIConfig) -> None:
        self.cfg = cfg
        self.finder = scrubber(cfg)  # fails fast (e.g. SpacyModelNotFoundError) before reading anything
        self.totals: Counter[str] = Counter()
        self.docs_with_pii = 0

    def __call__(self, batch: pa.RecordBatch) -> BatchResult:
        texts = batch.column("text").to_pylist()
        # the language filter's label, where the shard has one: phone numbers are read in that language's regions
        languages = batch.column("language").to_pylist() if "language" in batch.schema.names else None
        out_text: list[str | None] = []
        out_spans: list[list[dict[str, Any]]] = []
        out_counts: list[list[dict[str, Any]]] = []
        for text, spans in zip(texts, self.finder.find_batch(texts, languages=languages), strict=True):
            counts = Counter(s.entity for s in spans)
            self.totals.update(counts)
            self.docs_with_pii += bool(spans)
            out_text.append(text if self.cfg.annotate_only or not spans else self.finder.scrub(text, spans))
            out_spans.append([{"entity": s.entity, "start": s.start, "end": s.end} for s in spans])
            out_counts.append([{"entity": e, "count": n} for e, n in sorted(counts.items())])
        arrays = [pa.array(out_text, pa.string()), pa.array(out_spans, SPAN_TYPE), pa.array(out_counts, COUNTS_TYPE)]
        return BatchResult(dict(zip(self.columns.names, arrays, strict=True)))

    def finish(self, stats: StageStats) -> None:
        stats.extra["docs_with_pii"] = self.docs_with_pii
        for entity in self.cfg.entities:
            stats.extra[f"pii_{entity}"] = self.totals.get(entity, 0)


def run_pii(inputs: list[str], output: str, cfg: PIIConfig, *, limit: int | None = None) -> StageStats:
    """Find and replace PII in the input shard(s); write ``output`` with pii_spans and pii_counts. Drops nothing."""
    DocumentReader(list(inputs))  # a bad input (not Parquet, no text column) fails before the ~20 s analyzer build
    batches = PIIBatches(cfg)
    return run_documents(
        list(inputs),
        output,
        cfg,
        "pii",
        batches,
        columns=batches.columns,
        annotate_only=cfg.annotate_only,
        limit=limit,
        batch_rows=BATCH_ROWS,
        finish=batches.finish,
    )
