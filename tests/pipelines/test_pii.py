"""PII scrubbing on real labelled cases (presidio's and datatrove's own tests) and on a real Parquet shard."""

from __future__ import annotations

import gzip
import json
import socket
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import pii
from pipelines.config import PIIConfig
from pipelines.pii import Span, find_pii, is_public_ip, resolve_overlaps, run_pii, scrub
from pipelines.stats import StageStats

DATA = Path(__file__).parents[2].parent / "shared" / "data"
PRESIDIO_CASES = DATA / "pii" / "presidio-analyzer-cases" / "presidio_recognizer_cases.jsonl"
DATATROVE_CASES = DATA / "pii" / "datatrove" / "pii_removal_input_output.json"
DOLMA = DATA / "text" / "dolma-cc"
AEB_GROUND_TRUTH = DATA / "extraction" / "aeb" / "ground-truth.json"  # 181 real article texts

ALL_ENTITIES = [
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "IP_ADDRESS",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "CRYPTO",
    "URL",
    "MAC_ADDRESS",
]
PRESIDIO_DEFAULT_LENIENCY = 1  # PhoneRecognizer's default, which find_pii uses


@pytest.fixture(scope="module")
def data() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"{DATA} absent: the real PII cases live in ../shared/data")
    return DATA


def _cases() -> list[dict]:
    return [json.loads(line) for line in PRESIDIO_CASES.read_text().splitlines() if line.strip()]


def _dolma_texts() -> list[str]:
    return [json.loads(line)["text"] for f in sorted(DOLMA.glob("*.gz")) for line in gzip.open(f, "rt")]


def precision_recall(entity: str, cfg: PIIConfig) -> tuple[float, float, dict[str, int]]:
    """Span-level P/R of ``find_pii`` on presidio's cases for ``entity`` (only spans of that entity count).

    Treatment of the case encoding:
    - a TP is an exact (start, end) match with ``expected_positions`` / ``expected_res``; cases that give
      ``expected_len`` but no positions are matched by count;
    - positives whose ``expected_score_ranges`` upper bound is below ``cfg.min_score`` (presidio's 0.1-score
      IPv6 "::") are optional: a precision-oriented scrubber need not redact them, and finding one is not an FP;
    - phone cases with a ``leniency`` other than presidio's default describe another recognizer setting: skipped.
    """
    n = Counter()
    for case in _cases():
        if case["entity"] != entity:
            continue
        if case.get("leniency", PRESIDIO_DEFAULT_LENIENCY) != PRESIDIO_DEFAULT_LENIENCY:
            n["skipped"] += 1
            continue
        text = case.get("text", case.get("iban"))
        expected = [tuple(p) for p in case.get("expected_positions", case.get("expected_res", []))]
        ranges = case.get("expected_score_ranges") or []
        optional = {p for p, (_, high) in zip(expected, ranges, strict=False) if high < cfg.min_score}
        found = [(s.start, s.end) for s in find_pii(text, cfg) if s.entity == entity]
        if expected:
            required = [p for p in expected if p not in optional]
            tp = sum(p in found for p in required)
            n["tp"] += tp
            n["fn"] += len(required) - tp
            n["fp"] += sum(f not in expected for f in found)
            n["optional"] += len(optional)
        else:
            tp = min(len(found), case["expected_len"])
            n["tp"] += tp
            n["fn"] += case["expected_len"] - tp
            n["fp"] += len(found) - tp
    precision = n["tp"] / (n["tp"] + n["fp"]) if n["tp"] + n["fp"] else 1.0
    recall = n["tp"] / (n["tp"] + n["fn"]) if n["tp"] + n["fn"] else 1.0
    return precision, recall, dict(n)


@pytest.mark.parametrize(
    "entity, min_precision, min_recall",
    [
        ("EMAIL_ADDRESS", 0.95, 0.99),
        ("IP_ADDRESS", 0.95, 0.99),
        ("CREDIT_CARD", 0.95, 0.99),
        ("IBAN_CODE", 0.95, 0.99),
        # the one miss is a Chinese mobile number: CN is not in the default phone_regions
        ("PHONE_NUMBER", 0.95, 0.95),
    ],
)
def test_presidio_cases_precision_recall(data, entity, min_precision, min_recall):
    # All default entities at once, as the pipeline runs (overlap resolution included). The cases label detection
    # of every IP, private ones too: the public-IP policy is off here and tested on its own below.
    cfg = PIIConfig(entities=sorted({*PIIConfig().entities, entity}), public_ips_only=False)
    precision, recall, counts = precision_recall(entity, cfg)
    assert counts["tp"] >= 5, counts
    assert precision >= min_precision and recall >= min_recall, f"{entity}: P={precision:.3f} R={recall:.3f} {counts}"


def test_datatrove_cases_email_and_ip(data):
    """datatrove's PIIFormatter test, with its placeholders ('EMAIL', 'IP') in place of ours (<EMAIL_ADDRESS>, ...)."""
    constants = json.loads(DATATROVE_CASES.read_text())["constants"]
    cfg = PIIConfig(entities=["EMAIL_ADDRESS", "IP_ADDRESS"])

    def ours(text: str) -> list[str]:
        out = scrub(text, find_pii(text, cfg))
        return out.replace("<EMAIL_ADDRESS>", "EMAIL").replace("<IP_ADDRESS>", "IP").split("\n")

    # IPs: identical, line for line: invalid and private IPs untouched, public ones replaced.
    assert ours(constants["IP_TEST_INPUT"]) == constants["IP_TEST_OUTPUT"].split("\n")

    lines_in = constants["EMAIL_TEST_INPUT"].split("\n")
    got, want = ours(constants["EMAIL_TEST_INPUT"]), constants["EMAIL_TEST_OUTPUT"].split("\n")
    assert len(got) == len(want)
    differing = {line for line, g, w in zip(lines_in, got, want, strict=True) if g != w}
    # Where presidio and datatrove's regex disagree (see the report): IP-literal domains (we redact the public IP
    # inside), '..' in the local part (we take the whole address), non-ASCII local parts (we redact), and
    # domains without a real public suffix (we keep: 'email@example.web', 'email@111.222.333.44444').
    assert differing <= {
        "email@123.123.123.123",
        "email@[123.123.123.123]",
        "email..email@example.com",
        "Abc..123@example.com",
        "あいうえお@example.com",
        "email@example.web",
        "email@111.222.333.44444",
    }, differing
    assert sum(g == w for g, w in zip(got, want, strict=True)) >= 52


@pytest.mark.parametrize(
    "address, public",
    [
        ("10.0.0.1", False),  # private
        ("172.16.4.1", False),
        ("192.168.1.2", False),
        ("127.0.0.2", False),  # loopback
        ("169.254.1.1", False),  # link-local
        ("224.0.0.1", False),  # multicast
        ("ff02::1", False),
        ("240.0.0.1", False),  # reserved
        ("0.0.0.0", False),  # unspecified
        ("192.0.2.1", False),  # documentation (TEST-NET-1)
        ("2001:db8::1", False),  # documentation
        ("fe80::1%eth0", False),
        ("::ffff:10.0.0.1", False),  # IPv4-mapped private
        ("8.8.8.8", True),
        ("163.36.107.25", True),
        ("2a00:1450:4001:81b::200e", True),
        ("::ffff:8.8.8.8", True),  # IPv4-mapped public: judged as its IPv4
        ("not an ip", False),
    ],
)
def test_public_ip_policy(address, public):
    assert is_public_ip(address) is public


def test_private_ip_is_neither_phone_nor_ip_pii():
    """phonenumbers' lenient matcher reads a dotted quad as a phone number; the private address must survive."""
    text = "The router's admin page lives at 192.168.3.143, so call Thomas on (415) 555-0134 from home."
    spans = find_pii(text, PIIConfig())
    assert [(text[s.start : s.end], s.entity) for s in spans] == [("(415) 555-0134", "PHONE_NUMBER")]
    public = find_pii("Our server is 163.36.107.25 today.", PIIConfig())
    assert [s.entity for s in public] == ["IP_ADDRESS"]


def test_overlaps_keep_higher_score_then_longer_span():
    spans = [
        Span(0, 10, "PHONE_NUMBER", 0.4),
        Span(2, 12, "CREDIT_CARD", 1.0),
        Span(20, 25, "URL", 0.5),
        Span(18, 30, "URL", 0.5),
        Span(40, 45, "US_SSN", 0.5),
    ]
    assert resolve_overlaps(spans) == [
        Span(2, 12, "CREDIT_CARD", 1.0),
        Span(18, 30, "URL", 0.5),
        Span(40, 45, "US_SSN", 0.5),
    ]
    # real recognizers: the Luhn-valid card wins over the phone matcher's 0.4 on the same digits
    text = "Pay with 4111 1111 1111 1111 today."
    found = find_pii(text, PIIConfig(entities=["PHONE_NUMBER", "CREDIT_CARD"]))
    assert [(s.entity, text[s.start : s.end]) for s in found] == [("CREDIT_CARD", "4111 1111 1111 1111")]
    # a Luhn-valid run of years is not a card
    assert find_pii("Archives: 1996 1997 1998 1999", PIIConfig(entities=["CREDIT_CARD"])) == []


def test_candidate_prefilter_never_changes_the_result(data):
    """Skipping recognizers on texts without a candidate gives the same spans as running them all."""
    constants = json.loads(DATATROVE_CASES.read_text())["constants"]
    articles = [a["articleBody"] for a in json.loads(AEB_GROUND_TRUTH.read_text()).values()]
    texts = [c.get("text", c.get("iban")) for c in _cases()] + list(constants.values()) + _dolma_texts() + articles
    cfg = PIIConfig(entities=ALL_ENTITIES)
    found = 0
    for text in texts:
        spans = find_pii(text, cfg)
        assert spans == find_pii(text, cfg, prefilter=False), text[:200]
        found += len(spans)
    assert found > 400


def _pii_docs() -> list[dict]:
    real = _dolma_texts()
    planted = (
        "Contact Jane at jane.doe@example.org or call +1 415 555 0132 before Friday. "
        "The public server is 163.36.107.25 and the router is 192.168.1.10 on the LAN. "
        "Card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00."
    )
    return [
        {"id": "planted", "text": planted, "url": "https://example.org/a", "n": 1},
        {"id": "clean", "text": "Nothing personal in this sentence at all.", "url": None, "n": 2},
        {"id": "null", "text": None, "url": None, "n": 3},
    ] + [{"id": f"dolma-{i}", "text": t, "url": None, "n": 10 + i} for i, t in enumerate(real)]


@pytest.mark.parametrize("annotate_only", [False, True])
def test_run_pii_on_parquet(data, tmp_path, annotate_only):
    docs = _pii_docs()
    src = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(docs), src)
    out = tmp_path / "pii" / "shard-0.parquet"
    cfg = PIIConfig(annotate_only=annotate_only)
    stats = run_pii([str(src)], str(out), cfg)

    table = pq.read_table(out)
    assert table.column("id").to_pylist() == [d["id"] for d in docs]
    assert table.column("url").to_pylist() == [d["url"] for d in docs]  # other columns pass through
    assert table.column("n").to_pylist() == [d["n"] for d in docs]
    assert table.schema.field("pii_spans").type == pii.SPAN_TYPE
    rows = {r["id"]: r for r in table.to_pylist()}
    original = {d["id"]: d["text"] for d in docs}

    planted = rows["planted"]
    values = {(s["entity"], original["planted"][s["start"] : s["end"]]) for s in planted["pii_spans"]}
    assert values == {
        ("EMAIL_ADDRESS", "jane.doe@example.org"),
        ("PHONE_NUMBER", "+1 415 555 0132"),
        ("IP_ADDRESS", "163.36.107.25"),
        ("CREDIT_CARD", "4111 1111 1111 1111"),
        ("IBAN_CODE", "DE89 3704 0044 0532 0130 00"),
    }
    assert {c["entity"]: c["count"] for c in planted["pii_counts"]} == {e: 1 for e, _ in values}
    if annotate_only:
        assert planted["text"] == original["planted"]
    else:
        for _, value in values:
            assert value not in planted["text"]
        for entity, _ in values:
            assert f"<{entity}>" in planted["text"]
        assert "192.168.1.10" in planted["text"]  # private IP is not PII
        assert planted["text"] == scrub(original["planted"], find_pii(original["planted"], cfg))
    assert rows["clean"]["pii_spans"] == [] and rows["clean"]["text"] == original["clean"]
    assert rows["null"]["text"] is None and rows["null"]["pii_counts"] == []

    # every span indexes the ORIGINAL text; counts agree with spans; stats agree with the rows
    totals: Counter[str] = Counter()
    for r in rows.values():
        counts = Counter(s["entity"] for s in r["pii_spans"])
        assert {c["entity"]: c["count"] for c in r["pii_counts"]} == dict(counts)
        totals.update(counts)
        for s in r["pii_spans"]:
            assert 0 <= s["start"] < s["end"] <= len(original[r["id"]])
    assert stats.docs_in == stats.docs_kept == len(docs) and stats.dropped == {}
    assert stats.extra["docs_with_pii"] == sum(bool(r["pii_spans"]) for r in rows.values())
    for entity in cfg.entities:
        assert stats.extra[f"pii_{entity}"] == totals.get(entity, 0)
    assert StageStats.load(out.parent / "_stats" / "shard-0.json").extra == stats.extra


def test_no_network_attempted(data, tmp_path, monkeypatch):
    """Recognizers are built and run (tldextract included) with every way out of the process blocked."""

    attempts: list[tuple] = []

    def refuse(*args, **kwargs):
        attempts.append(args)  # recorded too: tldextract swallows the error and falls back to its snapshot
        raise OSError(f"network access attempted: {args[1:] or kwargs}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setenv("TLDEXTRACT_CACHE", str(tmp_path / "tld-cache"))  # no cached suffix list to fall back on
    with pytest.raises(OSError, match="network access attempted"):  # the guard is live
        socket.create_connection(("publicsuffix.org", 443))
    attempts.clear()
    pii._recognizers.cache_clear()
    pii._offline_tld_extractor.cache_clear()

    text = "Mail info@presidio.site, user@xn--80ak6aa92e.com or see presidio.site; call (415) 555-0132."
    found = find_pii(text, PIIConfig(entities=ALL_ENTITIES))
    assert {(s.entity, text[s.start : s.end]) for s in found} >= {
        ("EMAIL_ADDRESS", "info@presidio.site"),
        ("EMAIL_ADDRESS", "user@xn--80ak6aa92e.com"),
        ("PHONE_NUMBER", "(415) 555-0132"),
    }
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": ["a"], "text": [text]}), src)
    stats = run_pii([str(src)], str(tmp_path / "pii" / "a.parquet"), PIIConfig())
    assert stats.extra["pii_EMAIL_ADDRESS"] == 2
    assert attempts == []
