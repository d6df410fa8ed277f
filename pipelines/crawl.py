"""Common Crawl listings: which WARC files of a crawl a run processes.

Each crawl publishes ``crawl-data/{crawl_id}/warc.paths.gz``, one WARC path per line (~90,000 files of ~1 GB).
A run takes a deterministic slice of it: every ``stride``-th path from ``offset`` on, the first ``max_warcs`` of
those; so a monthly refresh that raises ``max_warcs`` reuses every shard it already processed.

    lmpipe refresh --crawl CC-MAIN-2024-10 --max-warcs 4 [--offset K] [--stride S] [--base-url s3://commoncrawl/]
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import re
from pathlib import Path

from pipelines.errors import ConfigError
from pipelines.remote import open_stream

log = logging.getLogger(__name__)

COMMON_CRAWL_HTTPS = "https://data.commoncrawl.org/"
COMMON_CRAWL_S3 = "s3://commoncrawl/"
CRAWL_ID = re.compile(r"CC-MAIN-(?P<year>\d{4})-(?P<week>\d{2})")


class CrawlIdError(ConfigError):
    """Not a Common Crawl crawl id of the form CC-MAIN-YYYY-WW."""

    def __init__(self, crawl_id: str):
        super().__init__(
            f"invalid crawl id {crawl_id!r}: expected CC-MAIN-YYYY-WW with week 01-53, e.g. CC-MAIN-2024-10 "
            "(the crawls are listed at https://commoncrawl.org/get-started)"
        )
        self.crawl_id = crawl_id


def validate_crawl_id(crawl_id: str) -> str:
    """Return ``crawl_id`` if it is a CC-MAIN-YYYY-WW id (week 01-53, year 2008 or later), else raise CrawlIdError."""
    m = CRAWL_ID.fullmatch(crawl_id)
    if not m or not 1 <= int(m["week"]) <= 53 or int(m["year"]) < 2008:
        raise CrawlIdError(crawl_id)
    return crawl_id


def listing_url(crawl_id: str, base_url: str = COMMON_CRAWL_HTTPS) -> str:
    """Where a crawl's WARC listing lives under ``base_url`` (https://, s3:// or a local mirror)."""
    return f"{base_url.rstrip('/')}/crawl-data/{validate_crawl_id(crawl_id)}/warc.paths.gz"


def crawl_warc_paths(
    crawl_id: str, *, max_warcs: int, offset: int = 0, stride: int = 1, base_url: str = COMMON_CRAWL_HTTPS
) -> list[str]:
    """Full URLs of the WARC files a run takes from a crawl: listing entries ``offset``, ``offset + stride``, ...,
    at most ``max_warcs`` of them, in listing order, each prefixed with ``base_url``.

    Reads only as much of the listing as needed. Raises CrawlIdError for a malformed id, FileNotFoundError (naming
    the listing URL) for a crawl the server does not have, ValueError when the slice selects nothing.
    """
    if max_warcs < 1 or offset < 0 or stride < 1:
        raise ValueError(f"need max_warcs >= 1, offset >= 0, stride >= 1; got {max_warcs}, {offset}, {stride}")
    url = listing_url(crawl_id, base_url)
    base = base_url.rstrip("/") + "/"
    selected: list[str] = []
    seen = 0
    try:
        with open_stream(url) as raw, io.TextIOWrapper(gzip.GzipFile(fileobj=raw), encoding="utf-8") as lines:
            for line in lines:
                entry = line.strip()
                if not entry:
                    continue
                if seen >= offset and (seen - offset) % stride == 0:
                    selected.append(base + entry.lstrip("/"))
                    if len(selected) == max_warcs:
                        break
                seen += 1
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{url}: no WARC listing for crawl {crawl_id} (not found)") from e
    except (gzip.BadGzipFile, EOFError, UnicodeDecodeError) as e:
        raise ValueError(f"{url}: not a gzipped list of WARC paths ({e})") from e
    if not selected:
        raise ValueError(f"{url}: offset {offset} selects no WARC file (the listing has {seen} entries)")
    if len(selected) < max_warcs:
        log.warning(
            "%s: only %d of the %d requested WARC files exist from offset %d", url, len(selected), max_warcs, offset
        )
    return selected


# The crawl index's list of every crawl, newest first (each entry has at least "id").
COLLINFO_URL = "https://index.commoncrawl.org/collinfo.json"
LATEST = "latest"
REFRESH_MARKER = "_refresh.json"


def list_crawls(index_url: str = COLLINFO_URL) -> list[str]:
    """Crawl ids listed by ``index_url`` (Common Crawl's collinfo.json or a mirror of it), newest first."""
    try:
        with open_stream(index_url) as raw:
            entries = json.load(raw)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{index_url}: crawl index not found") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{index_url}: not a JSON list of crawls ({e})") from e
    ids = [e.get("id", "") for e in entries if isinstance(e, dict)]
    crawls = [c for c in ids if CRAWL_ID.fullmatch(c)]
    if not crawls:
        raise ValueError(f"{index_url}: lists no CC-MAIN-YYYY-WW crawl")
    return sorted(set(crawls), key=lambda c: (int(c[8:12]), int(c[13:15])), reverse=True)


def refresh_marker(data_root: str, crawl_id: str) -> Path:
    """Written by a completed data refresh of a crawl: which slice of it was processed, and when."""
    return Path(data_root) / crawl_id / REFRESH_MARKER


def slice_done(data_root: str, crawl_id: str, selection: dict[str, object]) -> bool:
    marker = refresh_marker(data_root, crawl_id)
    return marker.is_file() and json.loads(marker.read_text()).get("selection") == selection


def newest_unprocessed(data_root: str, selection: dict[str, object], index_url: str = COLLINFO_URL) -> str:
    """The newest crawl whose slice ``selection`` (max_warcs, offset, stride, base_url) has no completed refresh
    under ``data_root``; the newest crawl when every listed one is done (its rerun is all cache hits)."""
    crawls = list_crawls(index_url)
    for crawl_id in crawls:
        if not slice_done(data_root, crawl_id, selection):
            return crawl_id
    return crawls[0]
