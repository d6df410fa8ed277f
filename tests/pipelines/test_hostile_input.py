"""Hostile and broken input (issue 18): generated cases plus every real file in ../shared/data/warc, each through the
real stage (extract for WARC files, filter / pii for Parquet shards) in one child process with a wall-time and an
RSS limit.

    pytest tests/pipelines/test_hostile_input.py

Each case declares its outcome: ``Ok`` (the stage finishes, its ``_stats`` file reconciles, in = kept + Σ dropped,
and the reasons the case is about are counted) or ``Fails`` (an lmpipe error, the kind the CLI turns into a
non-zero exit with one line, naming the file and, for WARC framing, the offset). Anything else (a traceback of
another type, a hang, memory past the limit, a counted total that does not add up) fails the case.

One child (``DRIVER``) runs every case in turn and reports a JSON line per case (its time, its peak RSS from
``VmHWM``, reset before each case through ``/proc/self/clear_refs``); this process watches the child and its
extraction worker from /proc, and kills them when a case runs past CASE_SECONDS or a process past RSS_LIMIT_MB.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import SHARED_DATA
from tests.pipelines.test_extract import _spinning_page, _write_warc
from tests.pipelines.test_warc import _write_record

pytestmark = pytest.mark.slow

CASE_SECONDS = 90.0  # wall time of one case (the extract stage's own per-page limit is CPU time, 6x as wall)
WARM_UP_SECONDS = 300.0  # a Parquet stage's first case (the filter loads fastText and spaCy, pii presidio), a big WARC
RSS_LIMIT_MB = 1500  # any one process (the driver, its extraction worker); the baseline with all stages is ~450
POLL_SECONDS = 0.02


def _page(seed: str) -> bytes:
    """A small page trafilatura keeps: five paragraphs, distinct per ``seed`` (its in-shard duplicate test would
    drop the third copy of one page)."""
    paragraphs = "".join(f"<p>{SENTENCE * 3} Paragraph {i} of {seed}.</p>" for i in range(5))
    title = f"<title>Library news {seed}</title>"
    return f"<html><head>{title}</head><body><article><h1>News</h1>{paragraphs}</article></body></html>".encode()


SENTENCE = "The committee met on Tuesday to discuss the new library budget and the opening hours for the summer. "
PAGE = _page("the front page")
HTML_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"


# --- what a case expects -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ok:
    """The stage finishes; counts reconcile; ``reasons`` (reason -> count, None: at least one) are dropped;
    ``kept``: exact count, or a (low, high) range; ``extra``: keys that must be in stats.extra."""

    kept: int | tuple[int, int] | None = None
    reasons: dict[str, int | None] = field(default_factory=dict)
    docs_in: int | None = None
    extra: tuple[str, ...] = ()
    text_has: str | None = None  # a kept document's text contains this
    text_lacks: str | None = None  # no kept document's text contains this


@dataclass(frozen=True)
class Fails:
    """An lmpipe error (InputError / ConfigError / FileNotFoundError) whose message names the file (and offset)."""

    offset: bool = False
    match: str = ""


@dataclass(frozen=True)
class Case:
    name: str
    stage: str  # extract | filter | pii
    build: Callable[[Path], bytes | None]  # the input file's bytes (None: build wrote the file itself)
    expect: Ok | Fails
    cfg: dict = field(default_factory=dict)
    suffix: str = ".warc.gz"
    seconds: float = CASE_SECONDS  # more for a stage's first run, which loads its models


# --- WARC generators ---------------------------------------------------------------------------------------------


def _record(
    url: str = "https://example.org/page",
    payload: bytes | None = None,
    http: bytes | None = HTML_HEAD,
    *,
    version: str = "WARC/1.0",
    eol: bytes = b"\r\n",
    length: int | str | None = None,
    wtype: str = "response",
) -> bytes:
    """One WARC record, uncompressed: ``http`` (the HTTP head without its blank line, None: no head) + payload;
    ``length`` overrides the Content-Length (a lying one); ``eol`` b"\\n" gives LF-only (ClueWeb09-style) heads."""
    payload = _page(url) if payload is None else payload
    block = (http.replace(b"\r\n", eol) + eol if http is not None else b"") + payload
    rid = f"<urn:uuid:{random.Random(url + str(len(block))).getrandbits(128):032x}>"
    head = [
        version,
        f"WARC-Type: {wtype}",
        f"WARC-Target-URI: {url}",
        "WARC-Date: 2024-03-01T00:00:00Z",
        f"WARC-Record-ID: {rid}",
        "Content-Type: application/http; msgtype=response",
        f"Content-Length: {len(block) if length is None else length}",
    ]
    return eol.join(h.encode("latin-1", "replace") for h in head) + eol + eol + block + b"\r\n\r\n"


def _gz_records(*records: bytes) -> bytes:
    """One gzip member per record, as Common Crawl writes them."""
    return b"".join(gzip.compress(r, compresslevel=1) for r in records)


def _pages(n: int = 3) -> list[bytes]:
    return [_record(f"https://example.org/p{i}") for i in range(n)]


def _random(n: int, seed: int = 18) -> bytes:
    return random.Random(seed).randbytes(n)


def _encoded(payload: bytes, encoding: str, ctype: str = "text/html; charset=utf-8") -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Encoding: {encoding}\r\n".encode()
    return _record("https://example.org/encoded", payload, head)


def _gzip_bomb(decoded_bytes: int) -> bytes:
    """A gzip stream of ``decoded_bytes`` (an HTML page followed by spaces), ~1/1000 of that compressed."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [z.compress(b"<html><body><p>" + SENTENCE.encode())]
    chunk = b" " * (1 << 20)
    parts += [z.compress(chunk) for _ in range(decoded_bytes >> 20)]
    return b"".join(parts) + z.flush()


def _fifty_mb_line(path: Path) -> None:
    with path.open("wb") as f:
        _write_record(f, "https://a.example/", [_page("a")])
        _write_record(f, "https://line.example/", [b"<html><body><p>"] + [b"word " * (1 << 18)] * 40 + [b"</p>"])
        _write_record(f, "https://c.example/", [_page("c")])


def _spinning(path: Path) -> None:
    """A page whose extraction takes far longer than the per-page limit, between two ordinary ones."""
    pages = [
        ("https://a.example/", _page("a")),
        ("https://spin.example/", _spinning_page()),
        ("https://c.example/", _page("c")),
    ]
    _write_warc(path, pages)


def _truncated_member(at: float) -> Callable[[Path], bytes]:
    def build(tmp: Path) -> bytes:
        data = _gz_records(*_pages(3))
        second = len(gzip.compress(_pages(1)[0], compresslevel=1))
        return data[: int(second + (len(data) - second) * at)]

    return build


def _deep_html(depth: int) -> bytes:
    return b"<html><body>" + b"<div>" * depth + SENTENCE.encode() + b"</div>" * depth + b"</body></html>"


BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE html [\n<!ENTITY lol "lol">\n'
    + b"".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n'.encode() for i in range(1, 10)
    )
    + b']>\n<html xmlns="http://www.w3.org/1999/xhtml"><head><title>&lol9;</title></head><body><article>'
    + b"".join(b"<p>" + SENTENCE.encode() * 3 + b" &lol9;</p>" for _ in range(5))
    + b"</article></body></html>"
)


def _warc_cases() -> list[Case]:
    ok3 = Ok(kept=3, docs_in=3)
    return [
        Case("empty_file", "extract", lambda t: b"", Fails(offset=True), suffix=".warc"),
        Case("zero_byte_gzip", "extract", lambda t: gzip.compress(b""), Fails(offset=True)),
        Case("random_bytes", "extract", lambda t: _random(1 << 16), Fails(offset=True), suffix=".warc"),
        Case("random_after_gzip_magic", "extract", lambda t: b"\x1f\x8b\x08\x00" + _random(1 << 16), Fails(True)),
        Case("gzip_of_random_bytes", "extract", lambda t: gzip.compress(_random(1 << 16)), Fails(offset=True)),
        Case("html_file_not_warc", "extract", lambda t: PAGE * 10, Fails(offset=True), suffix=".warc"),
        Case("truncated_gzip_member", "extract", _truncated_member(0.3), Ok(reasons={}, extra=("truncated_at",))),
        Case("gzip_cut_in_first_member", "extract", lambda t: _gz_records(*_pages(2))[:40], Fails(offset=True)),
        Case(
            "garbage_after_records",
            "extract",
            lambda t: _gz_records(*_pages(2)) + _random(5000),
            Ok(kept=2, extra=("truncated_at",)),
        ),
        Case(
            "warc_0_18_lf_only",
            "extract",
            lambda t: b"".join(_record(f"http://ex.org/{i}", version="WARC/0.18", eol=b"\n") for i in range(3)),
            ok3,
            suffix=".warc",
        ),
        Case(
            "warc_0_17_gzip_stream",
            "extract",
            lambda t: gzip.compress(b"".join(_record(f"http://ex.org/{i}", version="WARC/0.17") for i in range(3))),
            ok3,
        ),
        Case(
            "content_length_undershoots",
            "extract",
            lambda t: b"".join(_pages(1)) + _record("https://example.org/short", length=200) + _pages(1)[0],
            Ok(kept=(2, 3), docs_in=3),
            suffix=".warc",
        ),
        Case(
            "content_length_overshoots",
            "extract",
            lambda t: _record("https://example.org/long", length=len(PAGE) + 5000) + b"".join(_pages(2)),
            Ok(kept=(2, 3), docs_in=(3)),
            suffix=".warc",
        ),
        Case(
            "content_length_past_eof",
            "extract",
            lambda t: _gz_records(
                *_pages(2), _record("https://example.org/last", length=len(HTML_HEAD) + len(_page("x")) + 3000)
            ),
            Ok(kept=2, reasons={"truncated_record": 1}),
        ),
        Case(
            "content_length_not_a_number",
            "extract",
            lambda t: _gz_records(_pages(1)[0], _record("https://example.org/nan", length="lots"), _pages(1)[0]),
            Ok(kept=(1, 2)),
        ),
        Case(
            "content_length_negative",
            "extract",
            lambda t: _gz_records(_pages(1)[0], _record("https://example.org/neg", length=-50), _pages(1)[0]),
            Ok(kept=(1, 2)),
        ),
        Case(
            "content_length_1e15",
            "extract",
            lambda t: _gz_records(_pages(1)[0], _record("https://example.org/huge", length=10**15)),
            Ok(kept=1, reasons={"page_too_large": 1}),  # longer than max_page_bytes: never read, so never cut off
        ),
        Case(
            "gzip_bomb_content_encoding",
            "extract",
            lambda t: _gz_records(_encoded(_gzip_bomb(1 << 30), "gzip"), _pages(1)[0]),
            Ok(kept=1, docs_in=2, reasons={"page_too_large": 1}),
        ),
        Case(
            "content_encoding_gzip_page",
            "extract",
            lambda t: _gz_records(_encoded(gzip.compress(PAGE), "gzip"), _encoded(zlib.compress(PAGE), "deflate")),
            Ok(kept=2, text_has="library budget"),
        ),
        Case(
            "content_encoding_corrupt",
            "extract",
            lambda t: _gz_records(_encoded(b"\x1f\x8b\x08\x00" + _random(3000), "gzip"), _pages(1)[0]),
            Ok(kept=1, reasons={"bad_content_encoding": 1}),
        ),
        Case(
            "content_encoding_unknown",
            "extract",
            lambda t: _gz_records(_encoded(_random(3000), "x-snappy-framed"), _pages(1)[0]),
            Ok(kept=1, reasons={"bad_content_encoding": 1}),
        ),
        Case("page_50mb_single_line", "extract", _fifty_mb_line, Ok(kept=2, reasons={"page_too_large": 1})),
        Case(
            "page_50mb_single_line_allowed",
            "extract",
            _fifty_mb_line,
            Ok(kept=(2, 3), docs_in=3),
            cfg={"max_page_bytes": 60_000_000, "timeout_seconds": 5},
        ),
        Case(
            "pathological_page_times_out",
            "extract",
            _spinning,
            Ok(kept=2, docs_in=3, reasons={"timeout": 1}),
            cfg={"timeout_seconds": 1.0, "max_page_bytes": 50_000_000},
        ),
        Case(
            "html_nested_100k_deep",
            "extract",
            lambda t: _gz_records(_pages(1)[0], _record("https://deep.example/", _deep_html(100_000)), _pages(1)[0]),
            Ok(kept=(2, 3), docs_in=3),
            cfg={"timeout_seconds": 5},
        ),
        Case(
            "xhtml_billion_laughs",
            "extract",
            lambda t: _gz_records(
                _record(
                    "https://lol.example/",
                    BILLION_LAUGHS,
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/xhtml+xml\r\n",
                )
            ),
            Ok(docs_in=1, text_lacks="lollollollollollollollollollol"),
            cfg={"timeout_seconds": 5},
        ),
        Case(
            "wrong_declared_charset",
            "extract",
            lambda t: _gz_records(
                _record(payload=PAGE.replace(b"Tuesday", "Tuesday at the Café Müller".encode("cp1252")))
            ),
            Ok(kept=1, text_has="Café Müller"),
        ),
        Case(
            "unknown_declared_charset",
            "extract",
            lambda t: _gz_records(
                _record(payload=PAGE, http=b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=x-no-such\r\n")
            ),
            Ok(kept=1, text_has="library budget"),
        ),
        Case(
            "binary_content_types",
            "extract",
            lambda t: _gz_records(
                _record("https://example.org/a.png", _random(5000), b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n"),
                _record(
                    "https://example.org/a.pdf",
                    b"%PDF-1.4" + _random(5000),
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/pdf\r\n",
                ),
                _record("https://example.org/none", _random(5000), b"HTTP/1.1 200 OK\r\n"),
                _pages(1)[0],
            ),
            Ok(kept=1, docs_in=4, reasons={"not_html": 3}),
        ),
        Case(
            "binary_body_labelled_html",
            "extract",
            lambda t: _gz_records(_record("https://example.org/bin", _random(20_000)), _pages(1)[0]),
            Ok(kept=(1, 2), docs_in=2),
        ),
        Case(
            "urls_that_are_not_urls",
            "extract",
            lambda t: _gz_records(
                _record("not a url at all"),
                _record(""),
                _record("http://[::1"),
                _record("javascript:alert(1)"),
                _pages(1)[0],
            ),
            Ok(kept=1, docs_in=5, reasons={"bad_url": 4}),
        ),
        Case(
            "http_heads_broken",
            "extract",
            lambda t: _gz_records(
                _record("https://example.org/nohead", PAGE, None),
                _record(
                    "https://example.org/badstatus", PAGE, b"HTTP/1.1 two-hundred OK\r\nContent-Type: text/html\r\n"
                ),
                _record("https://example.org/404", PAGE, b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\n"),
                _pages(1)[0],
            ),
            Ok(kept=1, docs_in=4, reasons={"bad_http": 2, "http_status": 1}),
        ),
        Case(
            "header_block_never_ends",
            "extract",
            lambda t: _pages(1)[0] + b"WARC/1.0\r\n" + b"X-Junk: y\r\n" * 100_000,
            Ok(kept=1, extra=("truncated_at",)),
            suffix=".warc",
        ),
        Case(
            "chunked_with_lying_sizes",
            "extract",
            lambda t: _gz_records(
                _record(
                    "https://example.org/chunked",
                    b"ffffff\r\n" + PAGE + b"\r\n0\r\n\r\n",
                    HTML_HEAD + b"Transfer-Encoding: chunked\r\n",
                )
            ),
            Ok(kept=1, docs_in=1),
        ),
        Case(
            "nul_bytes_in_html",
            "extract",
            lambda t: _gz_records(_record(payload=PAGE.replace(b"budget", b"bud\x00get\x00\x01\x02"))),
            Ok(docs_in=1, kept=1),
        ),
    ]


# --- Parquet generators ------------------------------------------------------------------------------------------

GOOD_TEXT = (
    "The committee met on Tuesday to discuss the new library budget. Members agreed that the opening hours should "
    "be extended during the summer, and that the children's reading programme will continue next year as well. "
) * 4


def _parquet(table: pa.Table) -> Callable[[Path], bytes]:
    def build(tmp: Path) -> bytes:
        import io

        buf = io.BytesIO()
        pq.write_table(table, buf)
        return buf.getvalue()

    return build


def _invalid_utf8_texts() -> pa.Table:
    """A string column whose second value is cp1252 bytes, as a careless writer stores them (Arrow does not check
    UTF-8 on write or read)."""
    values = [GOOD_TEXT.encode(), ("Caf\xe9 M\xfcller " + GOOD_TEXT).encode("cp1252"), GOOD_TEXT.encode()]
    offsets = np.cumsum([0, *map(len, values)]).astype(np.int32)
    text = pa.Array.from_buffers(
        pa.string(), 3, [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(b"".join(values))]
    )
    return pa.table({"id": ["a", "b", "c"], "url": ["https://example.org/"] * 3, "text": text})


def _dolma_shard(tmp: Path) -> bytes:
    """The 20 real Common Crawl documents (JSON lines) of ../shared/data/text/dolma-cc as a shard."""
    docs = []
    for f in sorted((SHARED_DATA / "text" / "dolma-cc").glob("*.jsonl.gz")):
        docs += [json.loads(line) for line in gzip.open(f, "rt")]
    rows = {"id": [d["id"] for d in docs], "url": [f"https://cc.example/{i}" for i in range(len(docs))]}
    return _parquet(pa.table({**rows, "text": [d["text"] for d in docs]}))(tmp)


def _parquet_cases() -> list[Case]:
    docs = pa.table(
        {"id": ["a", "b"], "url": ["https://example.org/a", "https://example.org/b"], "text": [GOOD_TEXT] * 2}
    )
    return [
        # valid shards first: each stage's first run loads its models (the controls of the cases below)
        Case(
            "parquet_valid_filter",
            "filter",
            _dolma_shard,
            Ok(docs_in=20, kept=(3, 20)),
            suffix=".parquet",
            seconds=WARM_UP_SECONDS,
        ),
        Case(
            "parquet_valid_pii",
            "pii",
            _dolma_shard,
            Ok(docs_in=20, kept=20, extra=("docs_with_pii",)),
            suffix=".parquet",
            seconds=WARM_UP_SECONDS,
        ),
        Case(
            "parquet_without_text",
            "filter",
            _parquet(docs.drop_columns(["text"])),
            Fails(match="'text'"),
            suffix=".parquet",
        ),
        Case(
            "parquet_text_is_binary",
            "filter",
            _parquet(docs.set_column(2, "text", pa.array([GOOD_TEXT.encode()] * 2, pa.binary()))),
            Fails(match="'text'"),
            suffix=".parquet",
        ),
        Case("parquet_not_parquet", "filter", lambda t: PAGE, Fails(match="Parquet"), suffix=".parquet"),
        Case("parquet_truncated", "filter", lambda t: _parquet(docs)(t)[:-40], Fails(), suffix=".parquet"),
        Case(
            "parquet_invalid_utf8_filter",
            "filter",
            _parquet(_invalid_utf8_texts()),
            Ok(docs_in=3, reasons={"invalid_utf8": 1}),
            suffix=".parquet",
        ),
        Case(
            "parquet_invalid_utf8_pii",
            "pii",
            _parquet(_invalid_utf8_texts()),
            Ok(docs_in=3, kept=3, extra=("invalid_utf8",)),
            suffix=".parquet",
        ),
        Case(
            "parquet_null_and_empty_text",
            "filter",
            _parquet(docs.set_column(2, "text", pa.array([None, ""], pa.string()))),
            Ok(docs_in=2, kept=0),
            suffix=".parquet",
        ),
        Case(
            "parquet_control_characters",
            "filter",
            _parquet(
                docs.set_column(
                    2, "text", pa.array([GOOD_TEXT.replace(" ", "\x00 \x1b"), "\ufffe\ud7ff" * 50], pa.string())
                )
            ),
            Ok(docs_in=2),
            suffix=".parquet",
        ),
    ]


# --- the real WARC files -----------------------------------------------------------------------------------------

# What each real file must give (default: the stage finishes and reconciles); see ../shared/data/README.md.
REAL_EXPECTED: dict[str, Ok | Fails] = {
    "resiliparse/clipped.warc.gz": Ok(kept=0, reasons={"truncated_record": 1}),
    "ia-2008-heritrix/web_sample.warc.gz": Ok(kept=(60, 299)),
    "resiliparse/warcfile.warc.gz": Ok(kept=(10, 16)),
    "ia-web-commons/IAH-20080430204825-00000-blackbook-truncated.arc": Ok(kept=2),
    "clueweb09-pywarc/sample.warc.gz": Ok(kept=(60, 100), docs_in=100),
    "warcio/example.warc.gz": Ok(kept=1, text_has="illustrative examples"),  # its page is Content-Encoding: gzip
    "aeb-articles.warc.gz": Ok(kept=(175, 181), docs_in=181),
    "cc_net/sample.warc.txt": Ok(docs_in=0, extra=("records_conversion",)),
}


def _real_files() -> list[str]:
    root = SHARED_DATA / "warc"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


def _real_case(rel: str) -> Case:
    return Case(
        f"real:{rel}", "extract", lambda t: None, REAL_EXPECTED.get(rel, Ok()), suffix="", seconds=WARM_UP_SECONDS
    )


CASES = [*_warc_cases(), *(_real_case(rel) for rel in _real_files()), *_parquet_cases()]


# --- the child process that runs the cases -----------------------------------------------------------------------

DRIVER = r"""
import json, re, sys, time, traceback
from pipelines.errors import LmpipeError
from pipelines.registry import get
from pipelines.extract import warm_up_trafilatura

def hwm_mb():
    status = open("/proc/self/status").read()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024

warm_up_trafilatura()
import pipelines.filters, pipelines.pii  # noqa: F401  (imported once, outside the cases' peaks)
print(json.dumps({"baseline_mb": hwm_mb()}), flush=True)
for case in json.load(open(sys.argv[1])):
    print(json.dumps({"start": case["name"]}), flush=True)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := current RSS (Linux >= 4.0)
    spec = get(case["stage"])
    t0 = time.monotonic()
    out = {"name": case["name"]}
    try:
        stats = spec.run(case["inputs"], case["output"], spec.config.model_validate(case["cfg"]))
        out.update(outcome="ok", stats=stats.model_dump())
    except (LmpipeError, FileNotFoundError) as e:
        out.update(outcome="error", type=type(e).__name__, message=str(e))
    except BaseException as e:
        out.update(outcome="crash", type=type(e).__name__, message=str(e), traceback=traceback.format_exc()[-3000:])
    out.update(seconds=time.monotonic() - t0, peak_mb=hwm_mb())
    print(json.dumps(out), flush=True)
"""


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                kids = [int(k) for k in Path(f"/proc/{p}/task/{t}/children").read_text().split()]
            except OSError:
                kids = []
            out += kids
            todo += kids
    return out


def _run_driver(cases: list[dict], spec: Path) -> tuple[dict[str, dict], float]:
    """Run DRIVER over ``cases``; per case its JSON result plus ``worker_mb`` (peak RSS of any child process seen)."""
    spec.write_text(json.dumps(cases))
    limits = {c["name"]: c["seconds"] for c in cases}
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(spec)], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    lines: list[dict] = []
    stderr: list[bytes] = []
    threading.Thread(target=lambda: lines.extend(json.loads(ln) for ln in proc.stdout), daemon=True).start()
    threading.Thread(target=lambda: stderr.extend(proc.stderr), daemon=True).start()
    results: dict[str, dict] = {}
    current, started, worker_mb, seen = None, time.monotonic(), 0.0, 0
    try:
        while proc.poll() is None or seen < len(lines):
            for line in lines[seen:]:
                seen += 1
                if "start" in line:
                    current, started, worker_mb = line["start"], time.monotonic(), 0.0
                elif "name" in line:
                    results[line["name"]] = {**line, "worker_mb": worker_mb}
                    current = None
            kids = _descendants(proc.pid)
            worker_mb = max([worker_mb, *map(_rss_mb, kids)])
            biggest = max([_rss_mb(proc.pid), worker_mb])
            if current and time.monotonic() - started > limits[current]:
                raise AssertionError(f"case {current} ran past {limits[current]} s (a hang)")
            if current and biggest > RSS_LIMIT_MB:
                raise AssertionError(f"case {current}: a process reached {biggest:.0f} MB RSS (limit {RSS_LIMIT_MB})")
            time.sleep(POLL_SECONDS)
    finally:
        for pid in _descendants(proc.pid):
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        proc.kill()
        proc.wait()
    baseline = next((ln["baseline_mb"] for ln in lines if "baseline_mb" in ln), 0.0)
    missing = [c["name"] for c in cases if c["name"] not in results]
    assert not missing, f"driver ended without running {missing}: {b''.join(stderr).decode()[-3000:]}"
    return results, baseline


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real evaluation data not found at {SHARED_DATA}")
    tmp = tmp_path_factory.mktemp("hostile")
    cases = []
    for i, case in enumerate(CASES):
        if case.name.startswith("real:"):
            path = SHARED_DATA / "warc" / case.name.removeprefix("real:")
        else:
            path = tmp / f"in{i}" / f"{case.name}{case.suffix}"
            path.parent.mkdir()
            data = case.build(path)
            if data is not None:
                path.write_bytes(data)
        out = tmp / f"out{i}" / "shard.parquet"
        cases.append(
            {"name": case.name, "stage": case.stage, "inputs": [str(path)], "output": str(out), "cfg": case.cfg}
            | {"seconds": case.seconds}
        )
    t0 = time.monotonic()
    # Two children side by side (2 cores): the WARC cases and the Parquet cases, whose stages load big models.
    groups = [[c for c in cases if c["stage"] == "extract"], [c for c in cases if c["stage"] != "extract"]]
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(_run_driver, groups, [tmp / "warc.json", tmp / "parquet.json"]))
    results = {name: r for part, _ in runs for name, r in part.items()}
    baseline = runs[0][1]
    slowest = max(results.values(), key=lambda r: r["seconds"])
    biggest = max(results.values(), key=lambda r: max(r["peak_mb"], r["worker_mb"]))
    sys.stderr.write(
        f"\n{len(cases)} hostile-input cases in {time.monotonic() - t0:.1f} s; baseline {baseline:.0f} MB; slowest "
        f"{slowest['name']} {slowest['seconds']:.1f} s; peak RSS {biggest['name']} "
        f"{max(biggest['peak_mb'], biggest['worker_mb']):.0f} MB\n"
    )
    for case in cases:
        results[case["name"]]["case"] = case
    (tmp / "results.json").write_text(json.dumps(results, indent=1))  # for a look at a failing case
    return results


def _check_ok(expect: Ok, result: dict) -> None:
    stats = result["stats"]
    saved = Path(result["case"]["output"]).parent / "_stats" / "shard.json"
    assert json.loads(saved.read_text()) == stats, "the _stats file is the stats returned"
    assert stats["docs_in"] == stats["docs_kept"] + sum(stats["dropped"].values()), stats
    table = pq.read_table(result["case"]["output"])
    assert table.num_rows == stats["docs_kept"]
    if expect.docs_in is not None:
        assert stats["docs_in"] == expect.docs_in, stats
    if isinstance(expect.kept, int):
        assert stats["docs_kept"] == expect.kept, stats
    elif expect.kept is not None:
        assert expect.kept[0] <= stats["docs_kept"] <= expect.kept[1], stats
    for reason, n in expect.reasons.items():
        assert reason in stats["dropped"], stats
        assert n is None or stats["dropped"][reason] == n, stats
    for key in expect.extra:
        assert key in stats["extra"], stats
    texts = table.column("text").to_pylist()
    if expect.text_has is not None:
        assert any(expect.text_has in t for t in texts), texts
    if expect.text_lacks is not None:
        assert not any(expect.text_lacks in t for t in texts)
        assert sum(map(len, texts)) < 1_000_000


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input(outcomes: dict[str, dict], case: Case) -> None:
    result = outcomes[case.name]
    assert result["seconds"] < case.seconds and max(result["peak_mb"], result["worker_mb"]) < RSS_LIMIT_MB
    assert result["outcome"] != "crash", f"{result['type']}: {result['message']}\n{result.get('traceback')}"
    if isinstance(case.expect, Fails):
        assert result["outcome"] == "error", f"expected an error, got {result.get('stats')}"
        path = result["case"]["inputs"][0]
        assert path in result["message"], result["message"]
        assert case.expect.match in result["message"], result["message"]
        if case.expect.offset:
            assert "offset" in result["message"], result["message"]
    else:
        assert result["outcome"] == "ok", f"{result['type']}: {result['message']}"
        _check_ok(case.expect, result)


def test_the_table_is_big_enough() -> None:
    generated = [c for c in CASES if not c.name.startswith("real:")]
    assert len(generated) >= 25 and len({c.name for c in CASES}) == len(CASES)
    if SHARED_DATA.is_dir():
        assert len(CASES) - len(generated) >= 20
