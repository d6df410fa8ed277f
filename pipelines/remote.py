"""Resumable byte streams from local paths, ``s3://`` and ``http(s)://`` URLs (fsspec; s3fs for S3).

A Common Crawl WARC is ~1 GB and takes minutes to read; over minutes, connections drop. ``open_stream`` reads it
front to back through a bounded buffer and, when a transient fault interrupts the read (connection reset, timeout,
HTTP 5xx/429, a body shorter than announced), reopens at the current byte offset with a Range request and goes on,
after an exponential backoff with jitter; ``retries`` failures in a row without progress raise RemoteReadError
naming the URL and the offset. Deterministic faults (404, 403, other 4xx, the object changed under us) raise at once.

    with open_stream("https://data.commoncrawl.org/crawl-data/CC-MAIN-2024-10/warc.paths.gz") as f:
        head = f.read(100)

S3 is anonymous by default (Common Crawl's bucket is public). ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` point
it at an S3-compatible server, ``LMPIPE_S3_ANON=0`` signs requests with the usual AWS credential chain instead;
``storage_options`` overrides both per call. ``lmpipe refresh --crawl CC-MAIN-2024-10 --max-warcs 2`` reads the
crawl listing through this module.
"""

from __future__ import annotations

import io
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from pipelines.errors import InputError, TransientError

log = logging.getLogger(__name__)

HTTP_PROTOCOLS = ("http", "https")
S3_PROTOCOLS = ("s3", "s3a")
BUFFER_BYTES = 1 << 20  # read-ahead of the returned stream, plus aiohttp's ~128 KiB (HTTP) or one S3 block
S3_BLOCK_BYTES = 8 << 20  # one ranged GET per block on S3 (and other random-access stores)


class RemoteReadError(TransientError):
    """Transient faults outlasted the retries; ``offset`` is the first byte that could not be read."""

    def __init__(self, url: str, offset: int, attempts: int, cause: BaseException):
        super().__init__(
            f"{url}: read failed at byte offset {offset} after {attempts} attempts: {type(cause).__name__}: {cause}"
        )
        self.url, self.offset, self.attempts, self.cause = url, offset, attempts, cause


class RemoteRequestError(InputError):
    """The server refused a request for good (403, other 4xx) or the object changed between two requests."""

    def __init__(self, url: str, message: str):
        super().__init__(f"{url}: {message}")
        self.url = url


class _TruncatedBody(ConnectionError):
    """A response ended before the size it announced: resumed like a dropped connection."""


def _env_flag(name: str, default: bool) -> bool:
    value = (os.environ.get(name) or "").strip().lower()
    return default if not value else value not in ("0", "false", "no", "off")


def storage_options_for(path: str, timeout: float = 60.0) -> dict[str, Any]:
    """fsspec options for ``path``'s protocol: anonymous S3 with the endpoint from the environment; HTTP timeouts.

    aiohttp's default is a 5-minute limit on a whole request, which a 1 GB download exceeds; here only
    connecting and each single read are limited.
    """
    protocol = fsspec.core.split_protocol(path)[0] or "file"
    if protocol in S3_PROTOCOLS:
        options: dict[str, Any] = {
            "anon": _env_flag("LMPIPE_S3_ANON", True),
            "config_kwargs": {"connect_timeout": 30, "read_timeout": timeout},
        }
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            options["endpoint_url"] = endpoint
        return options
    if protocol in HTTP_PROTOCOLS:
        import aiohttp

        return {
            "client_kwargs": {"timeout": aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=timeout)},
            "get_client": _http_session,
        }
    return {}


async def _http_session(**kwargs: Any) -> Any:
    """An aiohttp session that closes each connection after its response instead of pooling it.

    Observed here: with pooled keep-alive connections, a request made after the extract stage forked its worker
    process (while another shard read over HTTP in a sibling thread) got no response until the 60 s read timeout.
    A new connection per request costs one TCP handshake per HEAD or GET, nothing on a long stream.
    """
    import aiohttp

    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True), **kwargs)


def filesystem(
    path: str, storage_options: dict[str, Any] | None = None, timeout: float = 60.0
) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem for ``path`` with this module's defaults (overridden by ``storage_options``)."""
    options = {**storage_options_for(path, timeout), **(storage_options or {})}
    return fsspec.core.url_to_fs(path, **options)


def is_transient(exc: BaseException) -> bool:
    """True for faults that may go away by themselves: connection errors, timeouts, 5xx/408/429, short bodies."""
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError | NotADirectoryError):
        # fsspec's HTTP info() reports every failure, a 503 included, as FileNotFoundError(url) from the real cause.
        cause = exc.__cause__
        return cause is not None and not isinstance(cause, FileNotFoundError) and is_transient(cause)
    status = _http_status(exc)
    if status is not None:
        return status >= 500 or status in (408, 429)
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    module = type(exc).__module__
    if module.startswith("aiohttp"):
        import aiohttp

        return isinstance(exc, aiohttp.ClientError)  # payload errors (truncated body), disconnects, socket errors
    if module.startswith(("botocore", "aiobotocore")):
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import HTTPClientError, IncompleteReadError

        return isinstance(exc, BotoConnectionError | HTTPClientError | IncompleteReadError)
    # s3fs turns unrecognised S3 errors (InternalError, ...) into a bare OSError.
    return type(exc) is OSError


def _http_status(exc: BaseException) -> int | None:
    if type(exc).__module__.startswith("aiohttp"):
        status = getattr(exc, "status", None)
        return status if isinstance(status, int) and status >= 400 else None
    return None


def _deterministic(url: str, exc: BaseException) -> BaseException:
    """The error a caller sees for a fault that retrying cannot fix: a specific type, naming the path."""
    if isinstance(exc, FileNotFoundError):
        return FileNotFoundError(f"{url}: not found")
    if isinstance(exc, PermissionError):
        return RemoteRequestError(url, f"access denied ({exc})")
    status = _http_status(exc)
    if status is not None:
        return RemoteRequestError(url, f"HTTP {status} {getattr(exc, 'message', '')}".strip())
    return exc


def _backoff_delay(attempt: int, backoff: float, max_backoff: float) -> float:
    """Exponential backoff with jitter: ``backoff * 2**(attempt-1)``, capped, times a random factor in [0.5, 1.5)."""
    return min(max_backoff, backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)


def with_retries(
    url: str,
    fn: Callable[[], Any],
    *,
    retries: int,
    backoff: float,
    max_backoff: float = 60.0,
    position: Callable[[], int] = lambda: 0,
    on_fault: Callable[[], None] | None = None,
) -> Any:
    """Call ``fn`` until it succeeds: transient faults are retried after a backoff, ``retries`` times in a row at
    most (then RemoteReadError at byte ``position()``); deterministic ones raise at once, naming ``url``.

    ``on_fault`` runs after every fault, before deciding (the reader drops its broken response there).
    """
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as e:
            if on_fault is not None:
                on_fault()
            if not is_transient(e):
                raise _deterministic(url, e) from e
            attempt += 1
            if attempt > retries:
                raise RemoteReadError(url, position(), attempt, e) from e
            delay = _backoff_delay(attempt, backoff, max_backoff)
            log.warning(
                "%s: %s at byte %d: %s; retry %d/%d in %.1f s",
                url,
                type(e).__name__,
                position(),
                e,
                attempt,
                retries,
                delay,
            )
            time.sleep(delay)


def file_info(path: str, *, retries: int = 5, backoff: float = 1.0) -> dict[str, Any]:
    """fsspec ``info`` (size, ETag, mtime) of a local or remote file, retrying transient faults."""
    fs, p = filesystem(path)
    return with_retries(path, lambda: fs.info(p), retries=retries, backoff=backoff)


@dataclass
class _Opened:
    """One open response/file positioned at the requested offset, with what the server said about the object."""

    file: Any
    size: int | None
    etag: str | None


def _open_http(fs: fsspec.AbstractFileSystem, url: str, offset: int) -> _Opened:
    """A streaming GET (one response for the whole rest of the file) from ``offset`` on.

    It asks for a Range even from 0: the 206's Content-Range then states the file's size independently of the
    response's own length, so a body cut short is noticed even when its Content-Length was cut too.
    """
    # Accept-Encoding identity: byte offsets must be those of the stored file.
    headers = {"Accept-Encoding": "identity", "Range": f"bytes={offset}-"}
    try:
        # block_size=0 is fsspec's streaming file; a size skips its HEAD request: this GET's headers tell us.
        f = fs.open(url, "rb", block_size=0, size=-1, headers=headers)
    except Exception as e:
        if _http_status(e) == 416:  # nothing at or beyond offset: the end of the file (or an empty file)
            return _Opened(io.BytesIO(b""), offset, None)
        raise
    r = f.r  # fsspec's HTTPStreamFile keeps the aiohttp response as .r
    etag = r.headers.get("ETag")
    if r.status == 206:
        first, _, total = r.headers.get("Content-Range", "").removeprefix("bytes ").partition("/")
        if not first.startswith(f"{offset}-"):
            f.close()
            raise RemoteRequestError(url, f"asked for bytes from {offset}, got Content-Range {first}")
        return _Opened(f, int(total) if total.isdigit() else None, etag)
    length = r.headers.get("Content-Length")
    size = int(length) if length and length.isdigit() and "Content-Encoding" not in r.headers else None
    if offset:
        log.warning("%s: server ignored the Range request; skipping %d bytes to resume", url, offset)
        skip = offset
        while skip:
            chunk = f.read(min(skip, BUFFER_BYTES))
            if not chunk:
                raise _TruncatedBody(f"body ended while skipping to byte {offset}")
            skip -= len(chunk)
    return _Opened(f, size, etag)


def _open_seekable(fs: fsspec.AbstractFileSystem, path: str, offset: int) -> _Opened:
    """A random-access fsspec file (S3, GCS, ...): ranged GETs of one block each, read ahead one block."""
    f = fs.open(path, "rb", block_size=S3_BLOCK_BYTES, cache_type="readahead")
    f.seek(offset)
    details = getattr(f, "details", {}) or {}
    return _Opened(f, f.size, details.get("ETag") or details.get("etag"))


class ResumableReader(io.RawIOBase):
    """A sequential reader that reopens at its current offset after transient faults (see the module docstring).

    Seeking is allowed (it reopens lazily at the new offset on the next read), so ``tell()`` and random access work.
    """

    def __init__(
        self,
        url: str,
        opener: Callable[[int], _Opened],
        *,
        retries: int,
        backoff: float,
        max_backoff: float = 60.0,
    ):
        super().__init__()
        self.url, self.retries, self.backoff, self.max_backoff = url, retries, backoff, max_backoff
        self._opener = opener
        self._pos = 0
        self._current: _Opened | None = None
        self.size: int | None = None
        self.etag: str | None = None
        self.faults = 0  # failed attempts so far (each transient one was followed by a reopen)
        self._attempt(self._ensure_open)  # deterministic errors (404, 403) surface at open time

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._pos + offset
        elif whence == io.SEEK_END and self.size is not None:
            target = self.size + offset
        else:
            raise io.UnsupportedOperation(f"{self.url}: cannot seek with whence={whence} (size unknown)")
        if target < 0:
            raise ValueError(f"negative seek position {target}")
        if target != self._pos:
            self._drop()
            self._pos = target
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if not len(view) or (self.size is not None and self._pos >= self.size):
            return 0
        data = self._attempt(lambda: self._read(len(view)))
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        self._drop()
        super().close()

    def _read(self, n: int) -> bytes:
        self._ensure_open()
        data = self._current.file.read(n)
        if not data and self.size is not None and self._pos < self.size:
            raise _TruncatedBody(f"response ended at byte {self._pos} of {self.size}")
        return data

    def _ensure_open(self) -> None:
        if self._current is not None:
            return
        opened = self._opener(self._pos)
        if self.etag and opened.etag and opened.etag != self.etag:
            opened.file.close()
            raise RemoteRequestError(self.url, f"changed while being read (ETag {self.etag} -> {opened.etag})")
        self.etag = self.etag or opened.etag
        self.size = opened.size if opened.size is not None else self.size
        self._current = opened

    def _drop(self) -> None:
        if self._current is not None:
            try:
                self._current.file.close()
            except Exception:  # closing a broken connection may fail again; it is gone either way
                log.debug("%s: error closing a dropped response", self.url, exc_info=True)
            self._current = None

    def _attempt(self, fn: Callable[[], Any]) -> Any:
        return with_retries(
            self.url,
            fn,
            retries=self.retries,
            backoff=self.backoff,
            max_backoff=self.max_backoff,
            position=self.tell,
            on_fault=self._on_fault,
        )

    def _on_fault(self) -> None:
        """The response is broken (or refused): drop it; the next read reopens at the current offset."""
        self._drop()
        self.faults += 1


def open_stream(
    path: str,
    *,
    retries: int = 8,
    backoff: float = 1.0,
    timeout: float = 60.0,
    storage_options: dict[str, Any] | None = None,
) -> IO[bytes]:
    """Open a local path, ``s3://bucket/key`` or ``http(s)://`` URL for reading, as a binary file-like object.

    Remote files stream (bounded read-ahead, never the whole file in memory) and resume transparently after
    transient faults: up to ``retries`` failures in a row without progress, waiting ``backoff * 2**k`` seconds
    (with jitter, at most 60 s) in between; then RemoteReadError names the URL and byte offset. A missing file
    raises FileNotFoundError, a refused one RemoteRequestError, both at once and naming the path. ``timeout`` limits
    connecting and each single network read (seconds). Use it as a context manager (it holds a connection).
    """
    fs, p = filesystem(path, storage_options, timeout)
    if isinstance(fs, LocalFileSystem):
        try:
            return fs.open(p, "rb")
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{path}: not found") from e
    opener = _open_http if fsspec.core.split_protocol(path)[0] in HTTP_PROTOCOLS else _open_seekable
    reader = ResumableReader(path, lambda offset: opener(fs, p, offset), retries=retries, backoff=backoff)
    return io.BufferedReader(reader, buffer_size=BUFFER_BYTES)
