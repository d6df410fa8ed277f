"""Streaming WARC records from local, s3:// and https:// paths (fastwarc), one HTTP response at a time.

Never holds a whole WARC in memory: fsspec opens the file as a stream and fastwarc parses record by record.
Run one file through the extract stage with: ``lmpipe task extract --input X.warc.gz --output OUT.parquet``.
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import fsspec
from fastwarc.warc import ArchiveIterator, WarcRecordType

log = logging.getLogger(__name__)


class CorruptWarcError(ValueError):
    """A WARC file that cannot be parsed at all (at ``offset``); nothing was read from it."""

    def __init__(self, path: str, offset: int, cause: str):
        super().__init__(f"{path}: corrupt WARC at offset {offset}: {cause}")
        self.path, self.offset, self.cause = path, offset, cause


@dataclass
class WarcResponse:
    """One WARC ``response`` record with its parsed HTTP head; ``body`` is the (dechunked) HTTP payload."""

    record_id: str
    url: str
    offset: int
    fetch_time: datetime | None
    http_status: int | None
    content_type: str | None
    charset: str | None
    body: bytes


@dataclass
class WarcReadReport:
    """What a pass over a file saw besides responses: other record types, and a damaged tail if any."""

    records: dict[str, int]
    truncated_at: int | None = None
    error: str | None = None


def expand_inputs(inputs: list[str]) -> list[str]:
    """Expand local globs; URLs and plain paths pass through. Sorted, de-duplicated, order-stable."""
    out: list[str] = []
    for item in inputs:
        if "://" not in item and any(ch in item for ch in "*?["):
            out.extend(sorted(glob.glob(item, recursive=True)))
        else:
            out.append(item)
    return list(dict.fromkeys(out))


def _parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def iter_responses(path: str, report: WarcReadReport | None = None) -> Iterator[WarcResponse]:
    """Yield every HTTP ``response`` record of a WARC file (gzip/plain detected by fastwarc).

    Other record types are counted in ``report.records``. If the file breaks after some records (a truncated
    download, a bad Content-Length), the records before it are yielded and ``report.truncated_at`` names the
    offset; if nothing at all can be read, CorruptWarcError is raised naming the file and offset.
    """
    report = report if report is not None else WarcReadReport(records={})
    last_offset = 0
    n = responses = 0
    with fsspec.open(path, "rb") as f:
        try:
            for rec in ArchiveIterator(f, parse_http=True, strict_mode=False):
                n += 1
                last_offset = rec.stream_pos
                kind = rec.record_type.name if hasattr(rec.record_type, "name") else str(rec.record_type)
                kind = kind.split(".")[-1]
                report.records[kind] = report.records.get(kind, 0) + 1
                if rec.record_type != WarcRecordType.response:
                    continue
                headers = rec.headers
                http = rec.http_headers
                status = None
                if http is not None:
                    try:
                        status = int(http.status_code)
                    except (TypeError, ValueError):
                        status = None
                body = rec.reader.read()
                responses += 1
                yield WarcResponse(
                    record_id=headers.get("WARC-Record-ID", ""),
                    url=headers.get("WARC-Target-URI", "").strip("<>"),
                    offset=rec.stream_pos,
                    fetch_time=_parse_date(headers.get("WARC-Date")),
                    http_status=status,
                    content_type=rec.http_content_type if http is not None else None,
                    charset=rec.http_charset if http is not None else None,
                    body=body,
                )
        except Exception as e:  # fastwarc raises OSError/ValueError for broken framing or gzip
            if responses == 0:
                raise CorruptWarcError(path, last_offset, str(e) or type(e).__name__) from e
            report.truncated_at, report.error = last_offset, f"{type(e).__name__}: {e}"
            log.warning("%s: stopped at offset %d after %d records: %s", path, last_offset, n, e)
            return
    if n == 0:
        raise CorruptWarcError(path, 0, "no WARC record found (not a WARC file, or a header fastwarc rejects)")
