"""Servers that tests start and stop on 127.0.0.1: an HTTP file server (Range, ETag, scripted faults) and a moto S3.

    from tests.local_servers import RangeServer, moto_s3

Used by tests/pipelines/test_remote.py, tests/pipelines/test_crawl.py and tests/flows/test_refresh.py.
"""

from __future__ import annotations

import hashlib
import logging
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# What the next request (GET or HEAD) for a path gets instead of a proper answer, one entry consumed per request:
#   "drop"          send the headers and half of the body, then close the connection (the client may or may not
#                   have taken the bytes sent: a resume starts anywhere from 0 to half)
#   "short"         send half of the body with a Content-Length cut to match (Content-Range, if any, still true)
#   "ignore-range"  answer 200 with the whole file even when a Range was asked for
#   "503" / "403"   that status, no body
FAULTS = ("drop", "short", "ignore-range", "503", "403")


class RangeServer:
    """``with RangeServer({"/a.warc.gz": path}) as srv: srv.url("/a.warc.gz")``; ``srv.faults[path]`` scripts faults."""

    def __init__(self, files: dict[str, Path | bytes]):
        self.files = {k: v if isinstance(v, bytes) else Path(v).read_bytes() for k, v in files.items()}
        self.faults: dict[str, list[str]] = {}
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self._lock = threading.Lock()
        self._httpd = _QuietServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    def url(self, path: str = "/") -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def gets(self, path: str) -> list[str | None]:
        """The Range headers of the GET requests for ``path``, in order (None = no Range)."""
        return [rng for method, p, rng in self.requests if method == "GET" and p == path]

    def next_fault(self, path: str) -> str | None:
        with self._lock:
            queue = self.faults.get(path) or []
            return queue.pop(0) if queue else None

    def __enter__(self) -> RangeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # clients hanging up are not errors here
            super().handle_error(request, client_address)


def _handler(server: RangeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002  (stdlib signature)
            pass

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _status(self, code: int) -> None:
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _serve(self, body: bool) -> None:
            rng = self.headers.get("Range")
            server.requests.append((self.command, self.path, rng))
            data = server.files.get(self.path)
            if data is None:
                return self._status(404)
            fault = server.next_fault(self.path)
            if fault in ("503", "403"):
                return self._status(int(fault))
            start = 0
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng or "")
            if m and fault != "ignore-range":
                start = int(m.group(1))
                end = int(m.group(2)) + 1 if m.group(2) else len(data)
                if start >= len(data):
                    return self._status(416)
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
                part = data[start:end]
            else:
                self.send_response(200)
                part = data
            self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()[:16]}"')
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "application/octet-stream")
            if fault == "short":
                part = part[: len(part) // 2]
            self.send_header("Content-Length", str(len(part)))
            self.end_headers()
            if not body:
                return
            if fault == "drop":
                self.wfile.write(part[: len(part) // 2])
                self.wfile.flush()
                time.sleep(0.1)  # lets the client take what was sent (aiohttp drops unread data on a reset)
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(part)

    return Handler


@contextmanager
def moto_s3() -> Iterator[tuple[str, object]]:
    """A moto S3 server on 127.0.0.1 (random port): yields its endpoint URL and a boto3 client for setting it up."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",  # explicit, so boto3 never looks for credentials elsewhere
            aws_secret_access_key="test",
        )
        yield endpoint, client
    finally:
        server.stop()
