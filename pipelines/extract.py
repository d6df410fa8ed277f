"""HTML → main text with trafilatura, one WARC file → one Parquet shard (the data contract in DESIGN.md).

    lmpipe task extract --input X.warc.gz --output OUT.parquet

FineWeb's settings: trafilatura ``extract`` with favor_precision, no comments, in-document dedup. Each page runs in
datatrove's ExtractorSandbox, a worker process that is killed when a page uses more than ``timeout_seconds`` of CPU
time (``ForkedSandbox``: CPU, not wall time, so a busy machine extracts the same pages), so a pathological page
costs one counted ``timeout``, never a hung shard.

Where the time goes (bench/RESULTS.md): >90 % is trafilatura itself; reading (fastwarc), decoding and the sandbox's
per-page round trip (~0.25 ms) are small. Two things cut it without giving up quality: ``strategy='fast_first'``
runs trafilatura's fast mode and re-runs the full cascade only on pages where fast mode finds (almost) nothing or
less than half the text of the page's paragraphs, and the parent imports and warms trafilatura once, so a worker
forked after a timeout starts warm.
"""

from __future__ import annotations

import copy
import ctypes
import functools
import logging
import multiprocessing
import re
import signal
import time
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import charset_normalizer
import pyarrow as pa
from datatrove.pipeline.extractors.base import ExtractorSandbox

from pipelines.config import ExtractConfig
from pipelines.shards import DOC_SCHEMA, ShardWriter, shard_id
from pipelines.stats import StageStats
from pipelines.warc import (
    HEAD_BYTES,
    ContentEncodingError,
    WarcReadReport,
    WarcResponse,
    decode_content,
    iter_responses,
)

log = logging.getLogger(__name__)

HTML_TYPES = ("text/html", "application/xhtml+xml")
# The HTML spec's encoding prescan looks for a charset declaration in the first 1024 bytes.
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_:.\-]+)""", re.I)
_BATCH_ROWS = 1024
_TRIM_EVERY = 64  # records between heap trims (see _release_free_heap)
_WARMUP_HTML = "<html><head><title>w</title></head><body><article><p>warm up</p></article><div>x</div></body></html>"


def decode_html(body: bytes, http_charset: str | None) -> tuple[str, str]:
    """Bytes → str: charset from the HTTP header, then a <meta> declaration, then UTF-8, then detection."""
    candidates = [http_charset]
    m = _META_CHARSET.search(body[:4096])
    if m:
        candidates.append(m.group(1).decode("ascii", "ignore"))
    # Most undeclared pages are UTF-8 (or ASCII): a strict decode settles them without running the detector.
    candidates.append("utf-8")
    for cs in candidates:
        if not cs:
            continue
        try:
            return body.decode(cs), cs.lower()
        except (LookupError, UnicodeDecodeError):
            continue
    best = charset_normalizer.from_bytes(body[:65536]).best()
    cs = best.encoding if best is not None else "utf-8"
    return body.decode(cs, errors="replace"), cs


def paragraph_chars(tree) -> int:  # noqa: ANN001 (lxml tree)
    """Characters of text (whitespace runs as one) in the page's ``<p>`` elements: a cheap measure of how much
    article text the page holds, which fast_first compares fast mode's text with (~0.3 ms a page on AEB)."""
    return sum(len(" ".join(p.text_content().split())) for p in tree.iter("p"))


class TrafilaturaExtractor:
    """HTML string → (title, main text, how) — the callable the sandbox worker runs once per page.

    ``how`` says which path produced the text: ``fast``, ``full`` (trafilatura's whole cascade, FineWeb's setting),
    ``fallback`` (cfg.fallback on a page trafilatura returned nothing for) or ``none``. trafilatura's duplicate cache
    lives in the worker; it is snapshotted before a fast-mode attempt, so a page re-extracted in full leaves it as
    if only the full pass had run.
    """

    def __init__(self, cfg: ExtractConfig):
        self.cfg = cfg
        self._dedup = None  # created in the worker process on first use

    def _extract(self, tree, fast: bool) -> str | None:  # noqa: ANN001 (lxml tree)
        import trafilatura

        return trafilatura.extract(
            tree,
            fast=fast,
            favor_precision=self.cfg.favor_precision,
            include_comments=self.cfg.include_comments,
            include_tables=self.cfg.include_tables,
            deduplicate=self._dedup if self.cfg.deduplicate else False,
        )

    def _fallback(self, html: str) -> str | None:
        import trafilatura
        from trafilatura.deduplication import duplicate_test
        from trafilatura.external import try_justext, try_readability
        from trafilatura.settings import Extractor
        from trafilatura.utils import load_html

        tree = load_html(html)
        if tree is None:
            return None
        if self.cfg.fallback == "baseline":
            body, text, _ = trafilatura.baseline(tree)
        elif self.cfg.fallback == "readability":
            body = try_readability(tree)
            text = trafilatura.html2txt(body, clean=False)
        else:
            body = try_justext(tree, None, None)
            text = "\n".join(p.text for p in body.iter("p") if p.text)
        # The same document-level duplicate test trafilatura applies to its own output.
        if text and self.cfg.deduplicate and duplicate_test(body, Extractor(dedup=self._dedup)):
            return None
        return text

    def __call__(self, html: str) -> tuple[str | None, str | None, str]:
        from trafilatura.deduplication import LRUCache
        from trafilatura.settings import LRU_SIZE
        from trafilatura.utils import load_html

        if self._dedup is None:
            # The sandbox is forked from a process whose SIGTERM handler (Prefect's) raises; the worker just exits.
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            self._dedup = LRUCache(maxsize=LRU_SIZE)
        tree = load_html(html)
        if tree is None:
            return None, None, "none"
        title = tree.findtext(".//title")
        title = title.strip() if title else None
        if self.cfg.strategy == "fast_first":
            # measured before fast mode runs: trafilatura prunes the tree it is given
            p_chars = paragraph_chars(tree) if self.cfg.full_retry_p_share else 0
            before = copy.copy(self._dedup)  # LRUCache copies its dict when copied
            text = self._extract(tree, fast=True)
            if text and len(text) >= max(self.cfg.full_retry_chars, self.cfg.full_retry_p_share * p_chars):
                return title, text, "fast"
            self._dedup = before
            text = self._extract(load_html(html), fast=False)  # trafilatura prunes its input tree: parse again
        else:
            text = self._extract(tree, fast=False)
        if text:
            return title, text, "full"
        if self.cfg.fallback != "none" and (text := self._fallback(html)):
            return title, text, "fallback"
        return title, None, "none"


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a live process has used so far: its POSIX CPU-time clock
    (``MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)`` of linux/posix-timers.h), read without touching the process."""
    return time.clock_gettime((~pid << 3) | 2)


class ForkedSandbox(ExtractorSandbox):
    """datatrove's ExtractorSandbox with its worker always forked from this (warm) process, and a per-page limit in
    the worker's CPU time instead of wall time.

    datatrove starts the worker with the default start method, which is forkserver inside datatrove's own
    executors and in any process a forkserver pool started (and everywhere from Python 3.14): each worker start
    then re-imports trafilatura, ~0.6 s per shard and per timeout. Forking keeps the parent's warm imports.

    datatrove's limit is wall time, so on a busy machine (other shards' workers, a training run beside it) a page
    near the limit times out in one run and not in the next, and the same WARC gives different documents. Here the
    page is killed once the worker has *used* ``timeout`` CPU seconds on it: the outcome depends on the page, not
    on the load. A wall-clock backstop (``wall_factor`` x timeout) still bounds a worker that stops using CPU
    without answering.
    """

    POLL_SECONDS = 0.05  # how often the parent looks at the worker's CPU clock while a page is being extracted
    READY_SECONDS = 60.0  # a new worker answers its small warm-up page well within this, even on a busy machine
    START_ATTEMPTS = 3

    def __init__(self, timeout: float, warmup_text: str = "", *, wall_factor: float = 6.0) -> None:
        super().__init__(timeout, warmup_text)
        self.wall_limit = timeout * wall_factor

    def _worker(self, conn, extract_fn) -> None:  # noqa: ANN001 (datatrove's signature)
        """The forked worker, which first closes its copy of the parent's end of the pipe: otherwise a parent
        killed with -9 never reaches the worker's ``recv`` as end-of-file and the worker waits forever."""
        self.parent_conn.close()
        super()._worker(conn, extract_fn)

    def _ensure_process(self, extract_fn) -> None:  # noqa: ANN001 (datatrove's signature)
        if self.process is not None and self.process.is_alive():
            return
        if self.process is not None:
            self._cleanup_process()
        ctx = multiprocessing.get_context("fork")
        ready = min(self.wall_limit, self.READY_SECONDS)
        for attempt in range(1, self.START_ATTEMPTS + 1):
            self.parent_conn, self.child_conn = ctx.Pipe()
            self.process = ctx.Process(target=self._worker, args=(self.child_conn, extract_fn), daemon=True)
            self.process.start()
            self.all_processes.append(self.process)
            if self.parent_conn.poll(ready):
                self.parent_conn.recv()  # the worker's "ready" after its warm-up page
                return
            # A child forked while another thread held a lock (libxml2's, an lxml XPath's) waits on it forever,
            # using no CPU: it never answers its warm-up page. Such a start is killed and forked again.
            self._cleanup_process()
            log.warning("extraction worker not ready within %.0f s (attempt %d), forking a new one", ready, attempt)
        raise TimeoutError(f"extraction worker not ready within {ready} s, {self.START_ATTEMPTS} times (warm-up page)")

    def process_document(self, text, extract_fn):  # noqa: ANN001, ANN201 (datatrove's signature)
        self._ensure_process(extract_fn)
        pid = self.process.pid
        try:
            cpu_start, wall_deadline = process_cpu_seconds(pid), time.monotonic() + self.wall_limit
            self.parent_conn.send(text)
            while not self.parent_conn.poll(self.POLL_SECONDS):
                if not self.process.is_alive():
                    raise EOFError("extraction worker died (probably OOM-killed)")
                if process_cpu_seconds(pid) - cpu_start >= self.timeout:
                    raise TimeoutError(f"page used {self.timeout} s of CPU time")
                if time.monotonic() >= wall_deadline:
                    raise TimeoutError(f"page took {self.wall_limit} s of wall time")
            result = self.parent_conn.recv()
        except (TimeoutError, EOFError):
            self._cleanup_process()
            raise
        except OSError as e:  # the worker's clock is gone: it exited between two looks
            self._cleanup_process()
            raise EOFError(f"extraction worker died ({e})") from e
        if isinstance(result, Exception):
            raise result
        return result


@functools.cache
def warm_up_trafilatura() -> None:
    """Import trafilatura and fill its lazy state (justext stoplists, compiled XPaths) in this process.

    Sandbox workers are forked from it, so a worker started after a timeout kill is warm at once (~0.35 s saved
    per start) instead of importing and initialising trafilatura again. Once per process.
    """
    import trafilatura
    from trafilatura.external import jt_stoplist_init

    jt_stoplist_init()
    trafilatura.extract(_WARMUP_HTML, favor_precision=True, deduplicate=False)


def is_web_url(url: str) -> bool:
    """An absolute http(s) URL with a host, the only kind a document's ``url`` may hold (downstream stages parse
    it: the URL filter, dedup's earlier-crawl index)."""
    if not url or any(ch.isspace() or ord(ch) < 32 for ch in url):
        return False
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # an unclosed IPv6 bracket, a bad port
        return False
    return parts.scheme.lower() in ("http", "https") and bool(host)


def _skip_reason(resp: WarcResponse, cfg: ExtractConfig) -> str | None:
    if resp.truncated:  # the file is damaged inside this record: its page is incomplete
        return "truncated_record"
    if resp.http_status is None:
        return "bad_http"
    if resp.http_status != 200:
        return "http_status"
    ctype = (resp.content_type or "").lower()
    if not ctype.startswith(HTML_TYPES):
        return "not_html"
    if not is_web_url(resp.url):
        return "bad_url"
    if resp.oversize or len(resp.body) > cfg.max_page_bytes:
        return "page_too_large"
    return None


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): nothing to trim
        return None


def _release_free_heap() -> None:
    """Give freed heap pages back to the OS (glibc keeps them otherwise).

    Pages of up to 2 MB of HTML pass through zlib, charset detection and Arrow batches; Python frees them, but Arrow's
    memory pool and glibc's arenas keep the pages, and the process's RSS climbs with the number of pages seen rather
    than with the largest one. Trimming every _TRIM_EVERY records keeps it flat (bench/RESULTS.md, memory against WARC
    size).
    """
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


_M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)


def _pin_mmap_threshold(nbytes: int = 128 * 1024) -> None:
    """Serve every allocation of ``nbytes`` or more with its own mmap, returned to the OS when freed.

    glibc starts at 128 KiB but raises the threshold to the size of each large block freed (up to 32 MiB), so after a
    few 2 MB pages, page-sized buffers come from the heap, where the small objects allocated between them pin the
    freed space: the parent's heap crept from 37 to 53 MB along a 16x file. Setting the threshold turns that
    adjustment off (mallopt(3)); the forked sandbox worker inherits it. Process-wide, like the trims: measured
    neutral for the extract and tokenize stages' throughput (bench/RESULTS.md, extract memory notes).
    """
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(_M_MMAP_THRESHOLD, nbytes)


class _Page(NamedTuple):
    title: str | None
    text: str
    charset: str
    how: str  # fast | full | fallback


def _extract_page(
    resp: WarcResponse,
    path: str,
    cfg: ExtractConfig,
    box: ForkedSandbox,
    extractor: TrafilaturaExtractor,
    stats: StageStats,
) -> _Page | None:
    """One response's main text, or None with the drop reason counted in ``stats``."""
    reason = _skip_reason(resp, cfg)
    if reason:
        stats.drop(reason)
        return None
    try:
        body = decode_content(resp.body, resp.content_encoding, cfg.max_page_bytes)
    except ContentEncodingError as e:
        log.info("%s@%d: %s (%s): %s", path, resp.offset, e.reason, e, resp.url)
        stats.drop(e.reason)
        return None
    html, charset = decode_html(body, resp.charset)
    try:
        title, text, how = box.process_document(html, extractor)
    except TimeoutError:
        log.warning("%s@%d: extraction timed out (%s s): %s", path, resp.offset, cfg.timeout_seconds, resp.url)
        stats.drop("timeout")
        return None
    except EOFError:
        stats.drop("extractor_crashed")
        return None
    except Exception as e:  # trafilatura/lxml raise many types on hostile HTML
        log.debug("%s@%d: extraction error %s", path, resp.offset, e)
        stats.drop("extract_error")
        return None
    if not text or len(text.strip()) < cfg.min_text_chars:
        stats.drop("empty_text")
        return None
    return _Page(title, text, charset, how)


def _doc_row(resp: WarcResponse, path: str, cfg: ExtractConfig, page: _Page) -> dict[str, Any]:
    """The output row (DOC_SCHEMA's columns, in order) of a kept page."""
    return {
        "id": resp.record_id,
        "url": resp.url,
        "crawl_id": cfg.crawl_id,
        "warc_path": path,
        "warc_offset": resp.offset,
        "fetch_time": resp.fetch_time,
        "title": page.title,
        "charset": page.charset,
        "content_length": len(resp.body),
        "text": page.text,
    }


def _count_records(report: WarcReadReport, path: str, stats: StageStats) -> None:
    """The file's non-response records by type, and where its tail was damaged, into ``stats.extra``."""
    for kind, n in report.records.items():
        if kind != "response":
            stats.extra[f"records_{kind}"] = stats.extra.get(f"records_{kind}", 0) + n
    if report.truncated_at is not None:
        stats.extra["truncated_at"] = report.truncated_at
        stats.extra["truncated_error"] = f"{path}: {report.error}"


def run_extract(inputs: list[str], output: str, cfg: ExtractConfig, *, limit: int | None = None) -> StageStats:
    """Extract every HTML response of the WARC file(s) in ``inputs`` into one Parquet shard at ``output``.

    docs_in counts HTTP response records; each is kept or dropped under a reason (truncated_record, bad_http,
    http_status, bad_url, not_html, page_too_large (also a Content-Encoding that decodes past max_page_bytes),
    bad_content_encoding, timeout, extractor_crashed, extract_error, empty_text — which includes pages
    trafilatura's in-shard duplicate test rejected). Other record types are counted in
    ``extra['records_<type>']``; a damaged file tail is reported in ``extra['truncated_at']``; kept documents by
    the path that produced them in ``extra['extracted_fast' | 'extracted_full' | 'extracted_fallback']``.
    """
    t0 = time.monotonic()
    stats = StageStats(stage="extract", shard=shard_id(output))
    rows: dict[str, list] = {name: [] for name in DOC_SCHEMA.names}
    warm_up_trafilatura()
    # Arrow's default allocator (mimalloc) holds on to the pages of every batch it ever built: with the system
    # allocator (and the trims) the stage's memory stays flat in the WARC size. Process-wide, and harmless elsewhere.
    pa.set_memory_pool(pa.system_memory_pool())
    _pin_mmap_threshold()  # before the sandbox worker forks, so that it inherits the setting
    # batches stream to the Parquet file as they fill: memory does not grow with the WARC
    with ShardWriter(output, DOC_SCHEMA) as writer, ForkedSandbox(cfg.timeout_seconds, _WARMUP_HTML) as box:
        extractor = TrafilaturaExtractor(cfg)
        for path in inputs:
            report = WarcReadReport(records={})
            # Records that cannot fit even with a generous HTTP head are skipped by the reader without being loaded.
            for resp in iter_responses(path, report, max_bytes=cfg.max_page_bytes + HEAD_BYTES):
                if limit is not None and stats.docs_in >= limit:
                    break
                stats.docs_in += 1
                stats.bytes_in += len(resp.body)
                if stats.docs_in % _TRIM_EVERY == 0:
                    _release_free_heap()
                page = _extract_page(resp, path, cfg, box, extractor, stats)
                if page is None:
                    continue
                stats.docs_kept += 1
                stats.extra[f"extracted_{page.how}"] = stats.extra.get(f"extracted_{page.how}", 0) + 1
                for name, value in _doc_row(resp, path, cfg, page).items():
                    rows[name].append(value)
                if len(rows["id"]) == _BATCH_ROWS:
                    writer.write(pa.RecordBatch.from_pydict(rows, schema=DOC_SCHEMA))
                    rows = {name: [] for name in DOC_SCHEMA.names}
            _count_records(report, path, stats)
        writer.write(pa.RecordBatch.from_pydict(rows, schema=DOC_SCHEMA))
        stats.seconds = time.monotonic() - t0
        return writer.commit(stats, cfg, inputs)
