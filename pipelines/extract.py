"""HTML → main text with trafilatura, one WARC file → one Parquet shard (the data contract in DESIGN.md).

    lmpipe task extract --input X.warc.gz --output OUT.parquet

FineWeb's settings: trafilatura ``extract`` with favor_precision, no comments, in-document dedup. Each page runs in
datatrove's ExtractorSandbox, a worker process that is killed when a page exceeds ``timeout_seconds``, so a
pathological page costs one counted ``timeout``, never a hung shard.
"""

from __future__ import annotations

import logging
import re
import signal
import time
from functools import partial

import charset_normalizer
import pyarrow as pa
from datatrove.pipeline.extractors.base import ExtractorSandbox

from pipelines.config import ExtractConfig
from pipelines.shards import DOC_SCHEMA, shard_id, write_shard
from pipelines.stats import StageStats
from pipelines.warc import WarcReadReport, WarcResponse, iter_responses

log = logging.getLogger(__name__)

HTML_TYPES = ("text/html", "application/xhtml+xml")
# The HTML spec's encoding prescan looks for a charset declaration in the first 1024 bytes.
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_:.\-]+)""", re.I)


def decode_html(body: bytes, http_charset: str | None) -> tuple[str, str]:
    """Bytes → str: charset from the HTTP header, then a <meta> declaration, then detection."""
    candidates = [http_charset]
    m = _META_CHARSET.search(body[:4096])
    if m:
        candidates.append(m.group(1).decode("ascii", "ignore"))
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


def extract_main_text(
    html: str, favor_precision: bool, include_comments: bool, include_tables: bool, deduplicate: bool
) -> tuple[str | None, str | None]:
    """(title, main text) of one page. Runs inside the sandbox process."""
    # The sandbox is forked from a process whose SIGTERM handler (Prefect's) raises; the worker just exits.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    import trafilatura
    from trafilatura.utils import load_html

    tree = load_html(html)
    if tree is None:
        return None, None
    title = tree.findtext(".//title")
    text = trafilatura.extract(
        tree,
        favor_precision=favor_precision,
        include_comments=include_comments,
        include_tables=include_tables,
        deduplicate=deduplicate,
    )
    return (title.strip() if title else None), text


def _skip_reason(resp: WarcResponse, cfg: ExtractConfig) -> str | None:
    if resp.http_status is None:
        return "bad_http"
    if resp.http_status != 200:
        return "http_status"
    ctype = (resp.content_type or "").lower()
    if not ctype.startswith(HTML_TYPES):
        return "not_html"
    if len(resp.body) > cfg.max_page_bytes:
        return "page_too_large"
    return None


def run_extract(inputs: list[str], output: str, cfg: ExtractConfig, *, limit: int | None = None) -> StageStats:
    """Extract every HTML response of the WARC file(s) in ``inputs`` into one Parquet shard at ``output``.

    docs_in counts HTTP response records; each is kept or dropped under a reason (bad_http, http_status, not_html,
    page_too_large, timeout, extractor_crashed, extract_error, empty_text). Other record types are counted in
    ``extra['records_<type>']``; a damaged file tail is reported in ``extra['truncated_at']``.
    """
    t0 = time.monotonic()
    stats = StageStats(stage="extract", shard=shard_id(output))
    rows: dict[str, list] = {name: [] for name in DOC_SCHEMA.names}
    extract_fn = partial(
        extract_main_text,
        favor_precision=cfg.favor_precision,
        include_comments=cfg.include_comments,
        include_tables=cfg.include_tables,
        deduplicate=cfg.deduplicate,
    )
    with ExtractorSandbox(timeout=cfg.timeout_seconds, warmup_text="<html><body><p>warm up</p></body></html>") as box:
        for path in inputs:
            report = WarcReadReport(records={})
            for resp in iter_responses(path, report):
                if limit is not None and stats.docs_in >= limit:
                    break
                stats.docs_in += 1
                stats.bytes_in += len(resp.body)
                reason = _skip_reason(resp, cfg)
                if reason:
                    stats.drop(reason)
                    continue
                html, charset = decode_html(resp.body, resp.charset)
                try:
                    title, text = box.process_document(html, extract_fn)
                except TimeoutError:
                    log.warning(
                        "%s@%d: extraction timed out (%s s): %s", path, resp.offset, cfg.timeout_seconds, resp.url
                    )
                    stats.drop("timeout")
                    continue
                except EOFError:
                    stats.drop("extractor_crashed")
                    continue
                except Exception as e:  # trafilatura/lxml raise many types on hostile HTML
                    log.debug("%s@%d: extraction error %s", path, resp.offset, e)
                    stats.drop("extract_error")
                    continue
                if not text or len(text.strip()) < cfg.min_text_chars:
                    stats.drop("empty_text")
                    continue
                stats.docs_kept += 1
                for name, value in (
                    ("id", resp.record_id),
                    ("url", resp.url),
                    ("crawl_id", cfg.crawl_id),
                    ("warc_path", path),
                    ("warc_offset", resp.offset),
                    ("fetch_time", resp.fetch_time),
                    ("title", title),
                    ("charset", charset),
                    ("content_length", len(resp.body)),
                    ("text", text),
                ):
                    rows[name].append(value)
            for kind, n in report.records.items():
                if kind != "response":
                    stats.extra[f"records_{kind}"] = stats.extra.get(f"records_{kind}", 0) + n
            if report.truncated_at is not None:
                stats.extra["truncated_at"] = report.truncated_at
                stats.extra["truncated_error"] = f"{path}: {report.error}"
    table = pa.Table.from_pydict(rows, schema=DOC_SCHEMA)
    stats.seconds = time.monotonic() - t0
    return write_shard(table, output, stats, cfg, inputs)
