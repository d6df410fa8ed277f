"""PII scrubbing of one shard with presidio-analyzer's pattern recognizers: typed placeholders, spans and counts.

    lmpipe task pii --input IN.parquet --output OUT.parquet [--annotate-only]

Each entity in ``PIIConfig.entities`` maps to one presidio recognizer, called directly
(``recognizer.analyze(text, entities=[...], nlp_artifacts=None)``): no AnalyzerEngine, no spaCy model, no context
enhancement, so every score is the recognizer's own (validated checksum = 1.0, phone = 0.4, IP = 0.6, ...).
A document is handed to a recognizer only when a cheap regex finds a candidate for it (``CANDIDATES``).
Spans with ``score >= min_score`` count; with ``public_ips_only`` (FineWeb's policy) an IP that is not globally
routable (private, loopback, link-local, multicast, reserved, unspecified, documentation) is not PII. Two more
rules against false positives on web text: a 16-digit "card" starting with 1 is a run of years (``is_card_number``)
and a phone number has at least ``MIN_PHONE_DIGITS`` digits and is not an IP address literal
(``is_phone_number``). Overlapping spans keep the higher score, then the longer span.

Output: ``text`` with every span replaced by ``<ENTITY>`` (unless ``annotate_only``), ``pii_spans``
(list<struct<entity, start, end>> on the ORIGINAL text) and ``pii_counts`` (list<struct<entity, count>>).
PII never drops a document.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pyarrow as pa
import tldextract

from pipelines.config import PIIConfig
from pipelines.shards import read_tables, shard_id, write_shard
from pipelines.stats import StageStats

logger = logging.getLogger(__name__)

BATCH_ROWS = 2048

# A necessary condition for each recognizer to report a span (read off its regex, or phonenumbers' for phones), so
# that documents without a candidate skip presidio. tests/pipelines/test_pii.py checks find_pii's result is unchanged.
CANDIDATES: dict[str, re.Pattern[str]] = {
    "EMAIL_ADDRESS": re.compile("@"),
    # MIN_PHONE_DIGITS digits in one cluster; separators like ") ", " - ", "/" between digits.
    "PHONE_NUMBER": re.compile(r"\d(?:\D{0,3}\d){4}"),
    # presidio: 4 digits, optional '-' or ' ', then 3-4 digits ...
    "CREDIT_CARD": re.compile(r"\d{4}[- ]?\d{3}"),
    # presidio: 3 digits, optional separator, 2 digits ... (every SSN pattern starts that way)
    "US_SSN": re.compile(r"\d{3}[- .]?\d{2}"),
    # presidio's IBAN regex is case-sensitive: country code + check digits.
    "IBAN_CODE": re.compile(r"[A-Z]{2}[0-9]{2}"),
    # dotted IPv4 (also inside mapped/embedded IPv6), any compressed IPv6 ('::') or a full 8-group IPv6.
    "IP_ADDRESS": re.compile(r"\d\.\d{1,3}\.\d{1,3}\.\d|::|(?:[0-9a-f]{1,4}:){7}", re.IGNORECASE),
    "CRYPTO": re.compile(r"(?:bc1|[13])[a-z0-9]{25}", re.IGNORECASE),
    "URL": re.compile(r"\.[a-z]{2}", re.IGNORECASE),
    "MAC_ADDRESS": re.compile(r"[0-9a-f]{2}[:-][0-9a-f]{2}[:-]|[0-9a-f]{4}\.[0-9a-f]{4}\.", re.IGNORECASE),
}

# phonenumbers' German metadata accepts 4-digit numbers, so without this any "1694" would be a phone number.
MIN_PHONE_DIGITS = 5

SPAN_TYPE = pa.list_(pa.struct([("entity", pa.string()), ("start", pa.int32()), ("end", pa.int32())]))
COUNTS_TYPE = pa.list_(pa.struct([("entity", pa.string()), ("count", pa.int32())]))


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


@lru_cache(maxsize=1)
def _offline_tld_extractor() -> tldextract.TLDExtract:
    # suffix_list_urls=() + cache_dir=None: tldextract uses the public-suffix snapshot bundled in its wheel and
    # never fetches (its default fetches publicsuffix.org on first use, which fails or hangs offline).
    return tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)


def _email_recognizer() -> Any:
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    class OfflineEmailRecognizer(EmailRecognizer):
        """presidio's EmailRecognizer, validating the domain against the bundled suffix list (never fetches)."""

        def validate_result(self, pattern_text: str) -> bool:
            return _offline_tld_extractor()(pattern_text).fqdn != ""

    return OfflineEmailRecognizer()


def recognizers(cfg: PIIConfig) -> list[tuple[str, Any]]:
    """The (entity, presidio recognizer) pairs ``find_pii`` runs for ``cfg``, in ``cfg.entities`` order."""
    return list(_recognizers(tuple(cfg.entities), tuple(cfg.phone_regions)))


@lru_cache(maxsize=8)
def _recognizers(entities: tuple[str, ...], phone_regions: tuple[str, ...]) -> tuple[tuple[str, Any], ...]:
    """(entity, presidio recognizer) pairs, built once per process and configuration."""
    # presidio imports spaCy and torch at package import: keep that out of `import pipelines.pii`.
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        CryptoRecognizer,
        IbanRecognizer,
        IpRecognizer,
        MacAddressRecognizer,
        PhoneRecognizer,
        UrlRecognizer,
        UsSsnRecognizer,
    )

    factories = {
        "EMAIL_ADDRESS": _email_recognizer,
        "PHONE_NUMBER": lambda: PhoneRecognizer(supported_regions=list(phone_regions)),
        "IP_ADDRESS": IpRecognizer,
        "CREDIT_CARD": CreditCardRecognizer,
        "IBAN_CODE": IbanRecognizer,
        "US_SSN": UsSsnRecognizer,
        "CRYPTO": CryptoRecognizer,
        "URL": UrlRecognizer,
        "MAC_ADDRESS": MacAddressRecognizer,
    }
    return tuple((entity, factories[entity]()) for entity in entities)


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
    """False for a 16-digit number starting with 1, which presidio's card pattern admits for UATP (whose cards have
    15 digits): on the web these are runs of years such as ``1996 1997 1998 1999``, one in ten of which passes Luhn."""
    digits = re.sub(r"\D", "", value)
    return not (len(digits) == 16 and digits.startswith("1"))


def is_phone_number(value: str) -> bool:
    """False for a span with fewer than MIN_PHONE_DIGITS digits, or one that is an IP address literal: presidio's
    phone recognizer (phonenumbers' lenient matcher) reads ``192.168.3.143`` as a phone number, which would scrub
    private addresses that the public-IP policy keeps."""
    if sum(c.isdigit() for c in value) < MIN_PHONE_DIGITS:
        return False
    try:
        ipaddress.ip_address(value.strip())
    except ValueError:
        return True
    return False


def resolve_overlaps(spans: list[Span]) -> list[Span]:
    """Keep non-overlapping spans, preferring the higher score, then the longer span; sorted by start."""
    kept: list[Span] = []
    for span in sorted(spans, key=lambda s: (-s.score, -(s.end - s.start), s.start)):
        if all(span.end <= k.start or span.start >= k.end for k in kept):
            kept.append(span)
    return sorted(kept)


def find_pii(text: str, cfg: PIIConfig, *, prefilter: bool = True) -> list[Span]:
    """All PII spans of ``text`` under ``cfg`` (min_score, public-IP policy, overlaps resolved), sorted by start.

    ``prefilter=False`` runs every recognizer on every text (the result is the same, only slower).
    """
    spans: list[Span] = []
    for entity, recognizer in recognizers(cfg):
        if prefilter and not CANDIDATES[entity].search(text):
            continue
        for r in recognizer.analyze(text, entities=[entity], nlp_artifacts=None):
            if r.score < cfg.min_score:
                continue
            if entity == "IP_ADDRESS" and cfg.public_ips_only and not is_public_ip(text[r.start : r.end]):
                continue
            if entity == "CREDIT_CARD" and not is_card_number(text[r.start : r.end]):
                continue
            if entity == "PHONE_NUMBER" and not is_phone_number(text[r.start : r.end]):
                continue
            spans.append(Span(start=r.start, end=r.end, entity=entity, score=float(r.score)))
    return resolve_overlaps(spans)


def scrub(text: str, spans: list[Span]) -> str:
    """``text`` with each (non-overlapping) span replaced by its typed placeholder."""
    parts: list[str] = []
    pos = 0
    for span in sorted(spans):
        if span.start < pos:
            raise ValueError(f"overlapping PII spans at {span.start}: resolve them first (resolve_overlaps)")
        parts.append(text[pos : span.start])
        parts.append(placeholder(span.entity))
        pos = span.end
    parts.append(text[pos:])
    return "".join(parts)


def run_pii(inputs: list[str], output: str, cfg: PIIConfig, *, limit: int | None = None) -> StageStats:
    """Find and replace PII in the input shard(s); write ``output`` with pii_spans and pii_counts. Drops nothing."""
    started = time.perf_counter()
    table = read_tables(list(inputs))
    if limit is not None:
        table = table.slice(0, limit)
    stats = StageStats(stage="pii", shard=shard_id(output), docs_in=table.num_rows)

    out_text: list[str | None] = []
    out_spans: list[list[dict[str, Any]]] = []
    out_counts: list[list[dict[str, Any]]] = []
    totals: Counter[str] = Counter()
    docs_with_pii = 0
    for batch in table.select(["text"]).to_batches(max_chunksize=BATCH_ROWS):
        for text in batch.column(0).to_pylist():
            stats.bytes_in += len(text.encode("utf-8")) if text else 0
            spans = find_pii(text, cfg) if text else []
            counts = Counter(s.entity for s in spans)
            totals.update(counts)
            docs_with_pii += bool(spans)
            out_text.append(text if cfg.annotate_only or not spans else scrub(text, spans))
            out_spans.append([{"entity": s.entity, "start": s.start, "end": s.end} for s in spans])
            out_counts.append([{"entity": e, "count": n} for e, n in sorted(counts.items())])
        logger.info("pii %s: %d/%d docs, %d with PII", stats.shard, len(out_text), table.num_rows, docs_with_pii)

    table = table.drop_columns([c for c in ("pii_spans", "pii_counts") if c in table.column_names])
    table = table.set_column(table.column_names.index("text"), "text", pa.array(out_text, pa.string()))
    table = table.append_column("pii_spans", pa.array(out_spans, SPAN_TYPE))
    table = table.append_column("pii_counts", pa.array(out_counts, COUNTS_TYPE))

    stats.docs_kept = table.num_rows
    stats.extra["docs_with_pii"] = docs_with_pii
    for entity in cfg.entities:
        stats.extra[f"pii_{entity}"] = totals.get(entity, 0)
    stats.seconds = time.perf_counter() - started
    return write_shard(table, output, stats, cfg, list(inputs))
