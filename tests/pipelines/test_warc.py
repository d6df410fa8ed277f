"""WARC reading: fastwarc for well-formed files, the tolerant parser for what it rejects, damage reported, not hidden.

pytest tests/pipelines/test_warc.py
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from pipelines.warc import CorruptWarcError, WarcReadReport, dechunk, iter_responses, iter_tolerant

# Files fastwarc reads; the tolerant parser must agree with it on every one of them.
WELL_FORMED = [
    "aeb-articles.warc.gz",
    "cc-whirlwind/whirlwind.warc.gz",
    "dolma/sample-0001.warc.gz",
    "ia-2008-heritrix/web_sample.warc.gz",
    "ia-web-commons/IAH-urls-wget.warc.gz",
    "jwarc/cc.warc.gz",
    "node-warc/parseMe.warc.gz",
    "pywb/dupes.warc.gz",
    "pywb/iana.warc.gz",
    "resiliparse/clueweb-quirk.warc.gz",
    "resiliparse/warcfile.warc.gz",
    "warcio/example-iana.org-chunked.warc",
    "warcio/example-wget-bad-target-uri.warc.gz",
    "warcio/example.warc.gz",
    "warcio/post-test.warc.gz",
]


def _read(fn, path: Path) -> tuple[list, WarcReadReport]:
    report = WarcReadReport(records={})
    return list(fn(str(path), report)), report


@pytest.mark.parametrize("name", WELL_FORMED)
def test_tolerant_parser_agrees_with_fastwarc(shared_data: Path, name: str) -> None:
    path = shared_data / "warc" / name
    fast, fast_report = _read(iter_responses, path)
    slow, slow_report = _read(iter_tolerant, path)
    assert fast_report.parser == "fastwarc" and slow_report.parser == "tolerant"
    assert fast_report.records == slow_report.records
    assert fast_report.truncated_at is None and slow_report.truncated_at is None and slow_report.resyncs == 0
    assert len(fast) == len(slow) > 0
    for a, b in zip(fast, slow, strict=True):
        assert (a.record_id, a.url, a.http_status, a.fetch_time) == (b.record_id, b.url, b.http_status, b.fetch_time)
        assert (a.content_type or "").lower() == (b.content_type or "") and a.body == b.body, a.url


def test_clueweb09_is_recovered_by_the_tolerant_parser(shared_data: Path) -> None:
    """WARC/0.18 with LF-only headers in one gzip stream: fastwarc rejects it at offset 0."""
    responses, report = _read(iter_responses, shared_data / "warc" / "clueweb09-pywarc" / "sample.warc.gz")
    assert report.parser == "tolerant" and report.records == {"warcinfo": 1, "response": 100}
    assert len({r.url for r in responses}) >= 90 and all(r.http_status == 200 for r in responses)
    # the payload, not HTTP headers (ClueWeb09's are LF-only: fastwarc's HTTP parser would run into the body)
    assert all(b"<html" in r.body[:3000].lower() for r in responses[:20])
    assert all(r.content_type == "text/html" for r in responses[:20])
    assert report.truncated_at is None


def test_lf_only_http_heads_keep_the_whole_payload(shared_data: Path) -> None:
    """resiliparse's ClueWeb09 sample: WARC heads in CRLF, HTTP heads in LF; every page keeps its start."""
    responses, _ = _read(iter_responses, shared_data / "warc" / "resiliparse" / "clueweb-quirk.warc.gz")
    assert len(responses) == 29
    assert all(r.content_type == "text/html" and r.charset for r in responses)
    assert sum(r.body.lstrip()[:5].lower() in (b"<html", b"<!doc") for r in responses) >= 25


def test_wrong_content_lengths_resynchronise(shared_data: Path) -> None:
    """cc_net's WET sample: LF line endings and Content-Lengths that over- and undershoot."""
    _, report = _read(iter_responses, shared_data / "warc" / "cc_net" / "sample.warc.txt")
    assert report.records == {"warcinfo": 1, "conversion": 3} and report.resyncs == 3


def test_arc_file_is_read(shared_data: Path) -> None:
    path = shared_data / "warc" / "ia-web-commons" / "IAH-20080430204825-00000-blackbook-truncated.arc"
    responses, report = _read(iter_responses, path)
    assert report.parser == "tolerant" and report.records["response"] == len(responses) == 7
    assert all(r.url.startswith("http") and r.http_status == 200 for r in responses)
    assert responses[0].fetch_time is not None


@pytest.mark.parametrize("reader", [iter_responses, iter_tolerant])
def test_clipped_record_is_yielded_flagged_and_reported(shared_data: Path, reader) -> None:
    responses, report = _read(reader, shared_data / "warc" / "resiliparse" / "clipped.warc.gz")
    assert len(responses) == 1 and responses[0].truncated
    assert report.truncated_at == 0 and "cut off" in report.error


@pytest.mark.parametrize("compress", ["per-record", "plain"])
def test_file_cut_in_the_middle_keeps_the_records_before(shared_data: Path, tmp_path: Path, compress: str) -> None:
    whole, _ = _read(iter_responses, shared_data / "warc" / "aeb-articles.warc.gz")
    src = shared_data / "warc" / "aeb-articles.warc.gz"
    data = src.read_bytes() if compress == "per-record" else gzip.decompress(src.read_bytes())
    cut = tmp_path / ("cut.warc.gz" if compress == "per-record" else "cut.warc")
    cut.write_bytes(data[: len(data) // 2])
    for reader in (iter_responses, iter_tolerant):
        got, report = _read(reader, cut)
        assert 60 < len(got) < 120, reader
        assert report.truncated_at is not None and report.error
        intact = [r for r in got if not r.truncated]
        assert [r.url for r in intact] == [r.url for r in whole[: len(intact)]]
        assert all(a.body == b.body for a, b in zip(intact, whole, strict=False))
        assert len(got) - len(intact) <= 1  # at most the record the cut went through, flagged


def test_garbage_raises_naming_file_and_offset(tmp_path: Path) -> None:
    for name, data in [("text.warc", b"hello world\n" * 100), ("bad.warc.gz", gzip.compress(b"no warc here\n" * 50))]:
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(CorruptWarcError, match=rf"{name}: corrupt WARC at offset \d+"):
            list(iter_responses(str(path)))


def test_dechunk() -> None:
    assert dechunk(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n") == b"hello world"
    assert dechunk(b"<html>not chunked</html>") == b"<html>not chunked</html>"
    assert dechunk(b"5;ext=1\r\nhello\r\n0\r\n\r\n") == b"hello"


def _write_record(f, url: str, payload_parts: list[bytes], content_type: str = "text/html") -> None:
    """Append one gzip member holding a response record; the payload is streamed in parts, never joined."""
    http_head = b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type.encode() + b"\r\n\r\n"
    length = len(http_head) + sum(len(p) for p in payload_parts)
    head = (
        "WARC/1.1\r\nWARC-Type: response\r\n"
        f"WARC-Record-ID: <urn:uuid:{abs(hash(url)):032x}>\r\nWARC-Target-URI: {url}\r\n"
        "WARC-Date: 2024-03-01T00:00:00Z\r\nContent-Type: application/http;msgtype=response\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()
    with gzip.GzipFile(fileobj=f, mode="wb", compresslevel=1) as z:
        z.write(head + http_head)
        for part in payload_parts:
            z.write(part)
        z.write(b"\r\n\r\n")


# Peak RSS from VmHWM: getrusage's ru_maxrss survives exec, so a child of a big pytest process would report its size.
READ_AND_REPORT_RSS = """
import re, sys
from pipelines.warc import iter_responses, iter_tolerant
reader = {"fast": iter_responses, "tolerant": iter_tolerant}[sys.argv[2]]
limit = int(sys.argv[3]) or None
for r in reader(sys.argv[1], max_bytes=limit):
    print(r.url, r.oversize, len(r.body))
status = open("/proc/self/status").read()
print(int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) // 1024)
"""


@pytest.mark.parametrize("reader", ["fast", "tolerant"])
def test_oversize_record_is_skipped_without_loading_it(tmp_path: Path, reader: str) -> None:
    """A 200 MB page between two small ones: flagged oversize and never held in memory; the next page is read."""
    import subprocess
    import sys

    path = tmp_path / "big.warc.gz"
    with path.open("wb") as f:
        _write_record(f, "https://a.example/", [b"<html><p>first</p></html>"])
        _write_record(f, "https://big.example/", [b"<p>"] + [b"x" * (1 << 20)] * 200 + [b"</p>"])
        _write_record(f, "https://c.example/", [b"<html><p>last</p></html>"])

    def run(limit: int) -> tuple[list[list[str]], int]:
        out = subprocess.run(
            [sys.executable, "-c", READ_AND_REPORT_RSS, str(path), reader, str(limit)],
            capture_output=True, text=True, check=True, timeout=300,
        ).stdout.split("\n")  # fmt: skip
        return [line.split() for line in out[:-2]], int(out[-2])

    limited, limited_mb = run(2_000_000)
    assert [row[:2] for row in limited] == [
        ["https://a.example/", "False"],
        ["https://big.example/", "True"],
        ["https://c.example/", "False"],
    ]
    assert int(limited[1][2]) <= 64 * 1024
    unlimited, unlimited_mb = run(0)
    assert int(unlimited[1][2]) > 200_000_000  # without a limit the page is read whole…
    assert unlimited_mb > 200 and limited_mb < unlimited_mb - 150, (limited_mb, unlimited_mb)  # …and costs its size


def test_extract_counts_the_cut_record(shared_data: Path, tmp_path: Path) -> None:
    from pipelines.config import ExtractConfig
    from pipelines.extract import run_extract

    stats = run_extract(
        [str(shared_data / "warc" / "resiliparse" / "clipped.warc.gz")], str(tmp_path / "o.parquet"), ExtractConfig()
    )
    assert stats.docs_in == 1 and stats.dropped == {"truncated_record": 1} and stats.docs_kept == 0
    assert stats.extra["truncated_at"] == 0


def test_decode_content_bounds_the_decoded_size() -> None:
    import zlib

    import brotli

    from pipelines.warc import ContentEncodingError, decode_content

    page = b"<html><body><p>" + b"words and more words " * 50 + b"</p></body></html>"
    raw_deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    for body, encoding in [
        (gzip.compress(page), "gzip"),
        (gzip.compress(page), "x-gzip"),
        (zlib.compress(page), "deflate"),
        (raw_deflate.compress(page) + raw_deflate.flush(), "deflate"),
        (brotli.compress(page), "br"),
        (gzip.compress(zlib.compress(page)), "deflate, gzip"),  # applied in order, undone in reverse
        (page, "gzip"),  # the header kept, the body stored decoded
        (page, None),
        (page, "identity"),
    ]:
        assert decode_content(body, encoding, 100_000) == page, encoding
    bomb = gzip.compress(b"\0" * 50_000_000, compresslevel=9)  # 50 MB in ~50 kB
    with pytest.raises(ContentEncodingError) as e:
        decode_content(bomb, "gzip", 2_000_000)
    assert e.value.reason == "page_too_large"
    for body, encoding in [(b"\x1f\x8b\x08\x00garbage", "gzip"), (gzip.compress(page)[:-30], "gzip"), (page, "zstd")]:
        with pytest.raises(ContentEncodingError) as e:
            decode_content(body, encoding, 100_000)
        assert e.value.reason == "bad_content_encoding", encoding


def _lying_record(url: str, length_delta: int | str) -> bytes:
    block = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html><p>" + url.encode() + b"</p></html>"
    length = len(block) + length_delta if isinstance(length_delta, int) else length_delta
    head = f"WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: {url}\r\nContent-Length: {length}\r\n\r\n"
    return head.encode() + block + b"\r\n\r\n"


@pytest.mark.parametrize(("delta", "compress"), [(-30, False), (400, False), ("many", True), (-5, True)])
def test_a_lying_content_length_loses_no_record_after_it(tmp_path: Path, delta: int | str, compress: bool) -> None:
    """fastwarc stops (or swallows the next records) at a wrong Content-Length; the tolerant parser takes over."""
    urls = [f"https://e.org/{i}" for i in range(4)]
    records = [_lying_record(u, delta if i == 1 else 0) for i, u in enumerate(urls)]
    path = tmp_path / ("lying.warc.gz" if compress else "lying.warc")
    path.write_bytes(b"".join(gzip.compress(r) for r in records) if compress else b"".join(records))
    got, report = _read(iter_responses, path)
    assert [r.url for r in got] == urls and report.records == {"response": 4}
    assert report.truncated_at is None and report.resyncs >= 1
    assert all(u.encode() in r.body for u, r in zip(urls, got, strict=True) if r is not got[1])
