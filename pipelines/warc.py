"""Streaming WARC records from local, s3:// and https:// paths, one HTTP response at a time.

Never holds a whole WARC in memory: the file is opened as a stream and parsed record by record. fastwarc frames
well-formed WARC/1.x; files it rejects from the start (WARC/0.17-0.18 quirks, LF-only headers, ARC v1) go through
``iter_tolerant``, which also resynchronises on wrong Content-Lengths; a file where fastwarc loses the framing later
(a Content-Length that lies) is re-read by it too, going on after the responses already yielded. HTTP heads are
parsed here (LF-only heads included), chunked payloads decoded, and ``decode_content`` undoes a Content-Encoding
within a size limit (a decompression bomb costs the limit, not its size). A file damaged after some records yields
those records, the record cut short flagged ``truncated``, and the offset in ``WarcReadReport``; an unreadable file
raises CorruptWarcError.
Run one file through the extract stage with: ``lmpipe task extract --input X.warc.gz --output OUT.parquet``.
"""

from __future__ import annotations

import glob
import itertools
import logging
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO

from fastwarc.warc import ArchiveIterator, WarcRecordType

from pipelines.errors import InputError
from pipelines.remote import open_stream

log = logging.getLogger(__name__)


class CorruptWarcError(InputError):
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
    truncated: bool = False  # the record was cut off (damaged file): body is what there was
    oversize: bool = False  # the record is longer than the reader's max_bytes: body holds only its first bytes
    content_encoding: str | None = None  # the HTTP Content-Encoding, not undone here (see decode_content)


@dataclass
class WarcReadReport:
    """What a pass over a file saw besides responses: other record types, and a damaged tail if any."""

    records: dict[str, int]
    truncated_at: int | None = None
    error: str | None = None
    parser: str = "fastwarc"  # or "tolerant"
    resyncs: int = 0  # records not followed by the next one where their Content-Length said (tolerant parser)


def _open(path: str) -> IO[bytes]:
    """Local file, or an http(s)/s3 stream that resumes at its byte offset after a network fault."""
    return open_stream(path)


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


def iter_responses(
    path: str, report: WarcReadReport | None = None, *, max_bytes: int | None = None
) -> Iterator[WarcResponse]:
    """Yield every HTTP ``response`` record of a WARC (or ARC) file, gzip or plain.

    fastwarc reads well-formed WARC/1.x; a file it cannot read from the start (WARC/0.17-0.18 quirks such as
    ClueWeb09's LF-only headers, a WARC with LF line endings, an ARC file) is re-read by ``iter_tolerant``.
    Other record types are counted in ``report.records``. Where fastwarc loses the framing after some records (a
    wrong Content-Length), the tolerant parser re-reads the file and yields the responses after those (their
    offsets are then positions in the decompressed stream). If the file breaks after some records (a truncated
    download, a bad Content-Length), the records before it are yielded, a record cut short is yielded with
    ``truncated=True``, and ``report.truncated_at`` names the offset; if nothing at all can be read,
    CorruptWarcError is raised naming the file and offset. A record longer than ``max_bytes`` is not read into
    memory: it comes with ``oversize=True`` and only its first HEAD_BYTES (enough for the HTTP head).
    """
    report = report if report is not None else WarcReadReport(records={})
    try:
        yield from _iter_fastwarc(path, report, max_bytes)
        return
    except _NotForFastwarc as e:
        log.info("%s: %s; reading it with the tolerant parser", path, e)
        skip = 0
    except _ResumeTolerant as e:
        # A wrong Content-Length in the middle: fastwarc would stop there and lose every record after it. The
        # tolerant parser re-reads the file, resynchronises, and goes on after the responses already yielded.
        log.warning("%s: %s; reading on with the tolerant parser after %d responses", path, e, e.responses)
        skip = e.responses
    report.records.clear()
    report.truncated_at = report.error = None
    report.parser = "tolerant"
    yield from itertools.islice(iter_tolerant(path, report, max_bytes=max_bytes), skip, None)


# What is read of an oversize record: its HTTP head and the start of the payload.
HEAD_BYTES = 64 * 1024


class _NotForFastwarc(Exception):
    """fastwarc cannot read this file from its first record on (raised before anything was yielded)."""


class _ResumeTolerant(Exception):
    """fastwarc lost the record framing after ``responses`` responses (a Content-Length that lies)."""

    def __init__(self, message: str, responses: int):
        super().__init__(message)
        self.responses = responses


def _iter_fastwarc(path: str, report: WarcReadReport, max_bytes: int | None) -> Iterator[WarcResponse]:
    """fastwarc frames the records; the HTTP head is parsed by ``_parse_http``, which also takes the LF-only
    header lines of ClueWeb09-era crawls (fastwarc's own HTTP parser then runs into the body)."""
    last_offset = 0
    n = responses = 0
    with _open(path) as f:
        try:
            for rec in ArchiveIterator(f, parse_http=False, strict_mode=False):
                n += 1
                last_offset = rec.stream_pos
                kind = rec.record_type.name if hasattr(rec.record_type, "name") else str(rec.record_type)
                kind = kind.split(".")[-1]
                if n == 1 and kind == "unknown":
                    raise _NotForFastwarc(
                        f"first record has a WARC-Type fastwarc does not know: {rec.headers.get('WARC-Type')}"
                    )
                report.records[kind] = report.records.get(kind, 0) + 1
                if rec.record_type != WarcRecordType.response:
                    continue
                headers = rec.headers
                oversize = max_bytes is not None and rec.content_length > max_bytes
                block = rec.reader.read(HEAD_BYTES) if oversize else rec.reader.read()  # fastwarc skips the rest
                # fastwarc hands over what there is: a block shorter than the record's length was cut off, unless
                # the length overshoots into the records after it (they start inside the block).
                truncated = not oversize and len(block) < rec.content_length
                if truncated and b"\nWARC/" in block:
                    raise _ResumeTolerant(f"Content-Length of the record at {rec.stream_pos} overshoots", responses)
                responses += 1
                yield _response(
                    path,
                    headers.get("WARC-Record-ID", ""),
                    headers.get("WARC-Target-URI", "").strip("<>"),
                    rec.stream_pos,
                    headers.get("WARC-Date"),
                    block,
                    truncated,
                    oversize,
                )
                if truncated:
                    report.truncated_at = rec.stream_pos
                    report.error = f"record cut off after {len(block)} of {rec.content_length} bytes"
                    log.warning("%s: response at offset %d is truncated: %s", path, rec.stream_pos, report.error)
                    return
        except (_NotForFastwarc, _ResumeTolerant):
            raise
        except Exception as e:  # fastwarc raises OSError/ValueError for broken framing or gzip
            if n == 0:
                raise _NotForFastwarc(f"fastwarc: {e or type(e).__name__}") from e
            if responses == 0 and set(report.records) <= {"warcinfo"}:
                raise _NotForFastwarc(f"fastwarc stopped after the warcinfo record: {e}") from e
            if "header" in str(e).lower():  # framing lost, not a damaged stream: records may follow
                raise _ResumeTolerant(f"fastwarc stopped after offset {last_offset}: {e}", responses) from e
            report.truncated_at, report.error = last_offset, f"{type(e).__name__}: {e}"
            log.warning("%s: stopped at offset %d after %d records: %s", path, last_offset, n, e)
            return
    if n == 0:
        raise _NotForFastwarc("fastwarc found no record")


# --- tolerant parser --------------------------------------------------------------------------------------------

# Longest header line / header block the tolerant parser accepts before calling the data garbage.
MAX_HEADER_LINE = 64 * 1024
MAX_HEADER_LINES = 512
# How far it scans for the next record start after a record that is not followed by one (bad Content-Length).
MAX_RESYNC_BYTES = 8 * 1024 * 1024


class _LineReader:
    """readline / read(n) / skip(n) over a byte stream with a position counter (in the stream it reads: for gzip
    input, offsets are in the decompressed data). Linear time: a bytearray buffer consumed from ``start``."""

    CHUNK = 1 << 20

    def __init__(self, raw: IO[bytes]):
        self.raw = raw
        self.buf = bytearray()
        self.start = 0  # first unconsumed byte of buf
        self.pos = 0  # stream offset of buf[start]
        self.eof = False
        self.error: str | None = None  # why the stream ended early (a damaged gzip), if it did

    def _raw_read(self) -> bytes:
        if self.eof:
            return b""
        try:
            chunk = self.raw.read(self.CHUNK)
        except (EOFError, OSError, zlib.error) as e:  # truncated or corrupt gzip: what was read stays usable
            self.error = f"{type(e).__name__}: {e}"
            chunk = b""
        if not chunk:
            self.eof = True
        return chunk

    def _fill(self) -> bool:
        chunk = self._raw_read()
        if not chunk:
            return False
        if self.start > len(self.buf) // 2:
            del self.buf[: self.start]
            self.start = 0
        self.buf += chunk
        return True

    def _available(self) -> int:
        return len(self.buf) - self.start

    def tell(self) -> int:
        return self.pos

    def peek(self, n: int) -> bytes:
        while self._available() < n and self._fill():
            pass
        return bytes(self.buf[self.start : self.start + n])

    def readline(self, limit: int = MAX_HEADER_LINE) -> bytes:
        while True:
            i = self.buf.find(b"\n", self.start, self.start + limit)
            if i >= 0:
                return self._take(i + 1 - self.start)
            if self._available() >= limit or not self._fill():
                return self._take(min(self._available(), limit))

    def read(self, n: int) -> bytes:
        if self._available() >= n:
            return self._take(n)
        parts = [self._take(self._available())]
        got = len(parts[0])
        while got < n:
            chunk = self._raw_read()
            if not chunk:
                break
            need = n - got
            if len(chunk) > need:
                self.buf = bytearray(chunk[need:])
                self.start = 0
                chunk = chunk[:need]
            parts.append(chunk)
            got += len(chunk)
            self.pos += len(chunk)
        return b"".join(parts)

    def skip(self, n: int) -> int:
        """Discard up to n bytes without holding them; how many there were."""
        done = 0
        while done < n:
            got = len(self.read(min(n - done, self.CHUNK)))
            if not got:
                break
            done += got
        return done

    def unread(self, data: bytes) -> None:
        self.buf[self.start : self.start] = data
        self.pos -= len(data)

    def _take(self, n: int) -> bytes:
        out = bytes(self.buf[self.start : self.start + n])
        self.start += n
        self.pos += n
        return out


def _open_decompressed(f: IO[bytes]) -> IO[bytes]:
    """The stream itself, or a gzip reader over it (one or many members)."""
    head = f.read(2)
    rest = _Prepend(head, f)
    return _GzipStream(rest) if head == b"\x1f\x8b" else rest


class _GzipStream:
    """Decompress gzip members one after another with zlib, handing over everything that decompresses: unlike
    gzip.GzipFile, a stream cut off mid-member gives its data up to the cut, then EOFError."""

    def __init__(self, raw: _Prepend):
        self.raw = raw
        self.z = zlib.decompressobj(wbits=31)
        self.done = False

    def read(self, n: int = 1 << 20) -> bytes:
        while not self.done:
            data = self.raw.read(1 << 16)
            if not data:
                self.done = True
                if not self.z.eof and (self.z.unconsumed_tail or self._started):
                    raise EOFError("compressed file ended before the end-of-stream marker was reached")
                return b""
            out = self._feed(data)
            if out:
                return out
        return b""

    _started = False

    def _feed(self, data: bytes) -> bytes:
        parts = []
        while data:
            self._started = True
            parts.append(self.z.decompress(data))
            if not self.z.eof:
                break
            data = self.z.unused_data
            self.z = zlib.decompressobj(wbits=31)
            self._started = False
            if data and not data.startswith(b"\x1f\x8b"):
                raise zlib.error(f"garbage after a gzip member: {data[:8]!r}")
        return b"".join(parts)


class _Prepend:
    """A read()-only stream: ``head`` followed by ``stream``."""

    def __init__(self, head: bytes, stream: IO[bytes]):
        self.head, self.stream = head, stream

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n is None or n < 0:
                out, self.head = self.head + self.stream.read(), b""
                return out
            out, self.head = self.head[:n], self.head[n:]
            return out + (self.stream.read(n - len(out)) if len(out) < n else b"")
        return self.stream.read(n)


def _header_block(r: _LineReader) -> dict[str, str] | None:
    """Header lines up to a blank line (CRLF or LF) as a case-insensitive dict; None if the block never ends."""
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADER_LINES):
        line = r.readline()
        if not line:
            return None
        text = line.rstrip(b"\r\n")
        if not text:
            return headers
        name, sep, value = text.decode("latin-1").partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return None


def _parse_http(block: bytes) -> tuple[int | None, dict[str, str], bytes]:
    """(status, headers, payload) of an HTTP response block; status None if it does not start as one."""
    end = block.find(b"\r\n\r\n")
    sep = 4
    lf = block.find(b"\n\n")
    if end < 0 or (0 <= lf < end):
        end, sep = lf, 2
    if end < 0 or not block.startswith(b"HTTP/"):
        return None, {}, block
    lines = block[:end].decode("latin-1").splitlines()
    parts = lines[0].split(None, 2)
    try:
        status: int | None = int(parts[1])
    except (IndexError, ValueError):
        status = None
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return status, headers, block[end + sep :]


def _content_type(headers: dict[str, str]) -> tuple[str | None, str | None]:
    raw = headers.get("content-type")
    if not raw:
        return None, None
    mime, _, params = raw.partition(";")
    charset = None
    for param in params.split(";"):
        key, eq, value = param.partition("=")
        if eq and key.strip().lower() == "charset":
            charset = value.strip().strip("\"'") or None
    return mime.strip().lower() or None, charset


def dechunk(body: bytes) -> bytes:
    """Undo HTTP chunked transfer encoding; the body unchanged if it is not validly chunked."""
    out = []
    pos = 0
    while True:
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            return body
        size_text = body[pos:eol].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return body
        if size == 0:
            return b"".join(out)
        start = eol + 2
        out.append(body[start : start + size])
        pos = start + size + 2
        if pos > len(body):
            return b"".join(out)


class ContentEncodingError(ValueError):
    """An HTTP payload whose Content-Encoding cannot be undone: ``reason`` is the drop reason it counts under."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _inflate(body: bytes, wbits: int, max_bytes: int) -> bytes:
    """One zlib/gzip/raw-deflate stream, never more than ``max_bytes`` + 1 bytes of output (a decompression bomb
    stops there)."""
    z = zlib.decompressobj(wbits)
    try:
        out = z.decompress(body, max_bytes + 1)
    except zlib.error as e:
        raise ContentEncodingError("bad_content_encoding", f"zlib: {e}") from e
    if len(out) > max_bytes:
        raise ContentEncodingError("page_too_large", f"decodes to more than {max_bytes} bytes")
    if not z.eof:
        raise ContentEncodingError("bad_content_encoding", "compressed payload is cut off")
    return out


def _unbrotli(body: bytes, max_bytes: int) -> bytes:
    import brotli  # a dependency of fastwarc

    d = brotli.Decompressor()
    try:
        out = d.process(body, output_buffer_limit=max_bytes + 1)
    except brotli.error as e:
        raise ContentEncodingError("bad_content_encoding", f"brotli: {e}") from e
    if len(out) > max_bytes:
        raise ContentEncodingError("page_too_large", f"decodes to more than {max_bytes} bytes")
    if not d.is_finished():
        raise ContentEncodingError("bad_content_encoding", "brotli payload is cut off")
    return out


def decode_content(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """Undo an HTTP ``Content-Encoding`` (gzip, x-gzip, deflate, br, or a list of them), decoding at most
    ``max_bytes``: the decoded size is what a page limit bounds, so a decompression bomb costs ``max_bytes``, not
    its size. A payload declared gzip or deflate that is not compressed (crawlers that stored the decoded body but
    kept the header) is returned as it is. Raises ContentEncodingError: ``page_too_large`` past ``max_bytes``,
    ``bad_content_encoding`` for a corrupt, cut-off or unknown encoding."""
    for coding in reversed([c.strip().lower() for c in (encoding or "").split(",") if c.strip()]):
        if coding in ("identity", "none", "utf-8", "binary", "8bit"):
            continue
        if coding in ("gzip", "x-gzip"):
            body = _inflate(body, 31, max_bytes) if body[:2] == b"\x1f\x8b" else body
        elif coding == "deflate":
            if body.lstrip()[:1] != b"<":  # zlib-wrapped (RFC 9110) or, as some servers send it, raw deflate
                wrapped = len(body) > 1 and (body[0] << 8 | body[1]) % 31 == 0 and body[0] & 0x0F == 8
                body = _inflate(body, 15 if wrapped else -15, max_bytes)
        elif coding == "br":
            body = _unbrotli(body, max_bytes)
        else:
            raise ContentEncodingError("bad_content_encoding", f"unknown Content-Encoding {coding!r}")
    return body


def _response(
    path: str,
    record_id: str,
    url: str,
    offset: int,
    date: str | None,
    block: bytes,
    truncated: bool,
    oversize: bool = False,
) -> WarcResponse:
    status, http, payload = _parse_http(block)
    mime, charset = _content_type(http)
    if not oversize and "chunked" in http.get("transfer-encoding", "").lower():
        payload = dechunk(payload)
    return WarcResponse(
        record_id=record_id,
        url=url,
        offset=offset,
        fetch_time=_parse_date(date),
        http_status=status,
        content_type=mime,
        charset=charset,
        body=payload,
        truncated=truncated,
        oversize=oversize,
        content_encoding=http.get("content-encoding") or None,
    )


def iter_tolerant(
    path: str, report: WarcReadReport | None = None, *, max_bytes: int | None = None
) -> Iterator[WarcResponse]:
    """A forgiving reader for what strict parsers reject: WARC/0.17-0.18 and LF-only headers (ClueWeb09, cc_net
    WET samples), a Content-Length that misses the record separator (it resynchronises on the next ``WARC/``
    line, counting ``report.resyncs``), and ARC v1 files (``filedesc://`` first line). Offsets are positions in
    the decompressed stream. Damage after some records is reported like ``iter_responses`` does."""
    report = report if report is not None else WarcReadReport(records={})
    report.parser = "tolerant"
    with _open(path) as raw:
        r = _LineReader(_open_decompressed(raw))
        n = 0
        try:
            first = r.peek(16)
            if first.startswith(b"filedesc://"):
                yield from _arc_records(path, r, report)
                return
            while True:
                offset = _skip_to_record(r, report, first_record=n == 0)
                if offset is None:
                    break
                headers, block, length, truncated, oversize = _tolerant_record(r, report, max_bytes)
                n += 1
                kind = headers.get("warc-type", "unknown").lower()
                report.records[kind] = report.records.get(kind, 0) + 1
                if kind == "response":
                    yield _response(
                        path,
                        headers.get("warc-record-id", ""),
                        headers.get("warc-target-uri", "").strip("<>"),
                        offset,
                        headers.get("warc-date"),
                        block,
                        truncated,
                        oversize,
                    )
                if truncated:
                    report.truncated_at = offset
                    report.error = f"record cut off after {len(block)} of {length} bytes" + (
                        f" ({r.error})" if r.error else ""
                    )
                    return
        except (OSError, EOFError, ValueError, zlib.error) as e:
            if n == 0:
                raise CorruptWarcError(path, r.tell(), f"{type(e).__name__}: {e}") from e
            report.truncated_at, report.error = r.tell(), f"{type(e).__name__}: {e}"
            log.warning("%s: stopped at offset %d after %d records: %s", path, r.tell(), n, e)
            return
        if r.error and report.truncated_at is None:
            if n == 0:
                raise CorruptWarcError(path, r.tell(), r.error)
            report.truncated_at, report.error = r.tell(), r.error
        if n == 0:
            raise CorruptWarcError(path, 0, "no WARC record found (not a WARC or ARC file)")


def _tolerant_record(
    r: _LineReader, report: WarcReadReport, max_bytes: int | None
) -> tuple[dict[str, str], bytes, int, bool, bool]:
    """The record at the reader: (headers, block, Content-Length, truncated, oversize). An oversize block is its
    first HEAD_BYTES, the rest skipped unread."""
    version = r.readline().strip()
    headers = _header_block(r)
    if headers is None:
        raise ValueError(f"header block of the {version.decode('latin-1')} record never ends")
    try:
        length = int(headers.get("content-length", ""))
    except ValueError:
        length = -1
    if length < 0:
        # No usable length: the record's block is given up (its response counts as bad_http), and the reader
        # resynchronises on the next record start, as after an undershooting length.
        log.warning("record without a valid Content-Length (%r) at %d", headers.get("content-length"), r.tell())
        report.resyncs += 1
        return headers, b"", 0, False, False
    oversize = max_bytes is not None and length > max_bytes
    if oversize:
        block = r.read(HEAD_BYTES)
        truncated = r.skip(length - len(block)) < length - len(block)
    else:
        block = r.read(length)
        truncated = len(block) < length
        if not truncated or b"\nWARC/" in block:  # a length past the end of the file may be an overshoot too
            trimmed = _trim_overshoot(r, block, report, at_eof=truncated)
            truncated, block = truncated and len(trimmed) == len(block), trimmed
    return headers, block, length, truncated, oversize


# A record's version line (or its start, where the block ends inside it).
_VERSION_LINE = re.compile(rb"\nWARC/(?:[0-9]+\.[0-9]+\r?\n|[0-9.]*\Z)")


def _trim_overshoot(r: _LineReader, block: bytes, report: WarcReadReport, *, at_eof: bool = False) -> bytes:
    """A Content-Length that overshoots swallows the start of the next record: if no record follows the block but
    the block holds a ``WARC/`` line, the record ends there and the rest is handed back to the reader. ``at_eof``:
    the length ran past the end of the file (which, after a complete block, is just the end of the file)."""
    ahead = r.peek(256).lstrip(b"\r\n")
    if ahead.startswith(b"WARC/") or not (ahead or at_eof):
        return block
    # the first version line in the block: a length may overshoot by several records
    m = _VERSION_LINE.search(block)
    if m is None:
        return block  # an undershoot: _skip_to_record scans forward
    cut = m.start() + 1
    report.resyncs += 1
    r.unread(block[cut:])
    return block[:cut]


def _skip_to_record(r: _LineReader, report: WarcReadReport, first_record: bool) -> int | None:
    """Advance to the next line that starts with ``WARC/``; its offset, or None at a clean end of the stream."""
    skipped = 0
    while True:
        line_start = r.tell()
        head = r.peek(5)
        if not head:
            return None
        if head == b"WARC/":
            if skipped and not first_record:
                report.resyncs += 1
            return line_start
        line = r.readline()
        if line.strip():
            if first_record and skipped == 0 and not line.startswith(b"WARC"):
                raise ValueError(f"does not start with a WARC record: {line[:40]!r}")
            skipped += len(line)
            if skipped > MAX_RESYNC_BYTES:
                raise ValueError(f"no WARC record start within {MAX_RESYNC_BYTES} bytes")


def _arc_records(path: str, r: _LineReader, report: WarcReadReport) -> Iterator[WarcResponse]:
    """ARC v1: a ``URL IP DATE MIME LENGTH`` line, LENGTH bytes, a newline; the first record is ``filedesc://``."""
    n = 0
    while True:
        while r.peek(1) in (b"\n", b"\r"):
            r.read(1)
        offset = r.tell()
        line = r.readline()
        if not line:
            return
        fields = line.decode("latin-1").split()
        if len(fields) < 5 or not fields[-1].isdigit():
            raise ValueError(f"bad ARC header line at offset {offset}: {line[:80]!r}")
        url, date, length = fields[0], fields[2], int(fields[-1])
        block = r.read(length)
        n += 1
        kind = "filedesc" if url.startswith("filedesc:") else ("response" if url.startswith("http") else "other")
        report.records[kind] = report.records.get(kind, 0) + 1
        truncated = len(block) < length
        if kind == "response":
            iso = (
                f"{date[0:4]}-{date[4:6]}-{date[6:8]}T{date[8:10]}:{date[10:12]}:{date[12:14]}Z"
                if len(date) >= 14
                else None
            )
            yield _response(path, f"arc:{path}@{offset}", url, offset, iso, block, truncated)
        if truncated:
            report.truncated_at = offset
            report.error = f"ARC record cut off after {len(block)} of {length} bytes"
            return
