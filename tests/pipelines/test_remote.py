"""open_stream on real WARC files served over HTTP (with dropped connections, 503s, lying Content-Lengths) and S3.

pytest tests/pipelines/test_remote.py
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from fastwarc.warc import ArchiveIterator

from pipelines.remote import RemoteReadError, RemoteRequestError, open_stream
from pipelines.shards import fingerprint
from tests.local_servers import RangeServer, moto_s3

AEB = "warc/aeb-articles.warc.gz"  # 6 MB, 181 responses: the biggest real WARC in shared/data
CC = "warc/resiliparse/warcfile.warc.gz"  # a real Common Crawl WARC (CC-MAIN-2020-34)


def read_all(f: io.BufferedIOBase, chunk: int = 1 << 16) -> bytes:
    out = bytearray()
    while block := f.read(chunk):
        out += block
    return bytes(out)


def record_count(f: object) -> int:
    return sum(1 for _ in ArchiveIterator(f, parse_http=False))


def resumed_at(rng: str | None) -> int:
    return int(rng.removeprefix("bytes=").removesuffix("-")) if rng else 0


def test_http_resumes_after_a_dropped_connection_and_a_503(shared_data: Path) -> None:
    data = (shared_data / AEB).read_bytes()
    with RangeServer({"/a.warc.gz": data}) as srv:
        srv.faults["/a.warc.gz"] = ["drop", "503"]
        with open_stream(srv.url("/a.warc.gz"), backoff=0.01) as f:
            assert read_all(f) == data
        # The 503 was retried at the same offset: where the delivered bytes ended, never past them.
        first, *retries = srv.gets("/a.warc.gz")
        assert first == "bytes=0-" and len(retries) == 2 and retries[0] == retries[1]
        assert 0 <= resumed_at(retries[0]) <= len(data) // 2

        srv.faults["/a.warc.gz"] = ["drop"]
        with open_stream(srv.url("/a.warc.gz"), backoff=0.01) as f, open(shared_data / AEB, "rb") as local:
            assert record_count(f) == record_count(local) > 181


def test_http_short_body_ignored_range_and_seek(shared_data: Path) -> None:
    data = (shared_data / CC).read_bytes()
    half = len(data) // 2
    with RangeServer({"/w.warc.gz": data}) as srv:
        # A body cut short with a Content-Length cut to match (Content-Range still gives the size): resumed exactly
        # where it stopped; the server then ignores the Range and sends the whole file: the first half is skipped.
        srv.faults["/w.warc.gz"] = ["short", "ignore-range"]
        with open_stream(srv.url("/w.warc.gz"), backoff=0.01) as f:
            assert read_all(f, 4096) == data
        assert srv.gets("/w.warc.gz") == ["bytes=0-", f"bytes={half}-"]
        with open_stream(srv.url("/w.warc.gz")) as f:
            f.seek(1000)
            assert f.tell() == 1000 and f.read(100) == data[1000:1100]
        assert srv.gets("/w.warc.gz")[-1] == "bytes=1000-"


def test_http_gives_up_naming_url_and_offset(shared_data: Path) -> None:
    data = (shared_data / CC).read_bytes()
    with RangeServer({"/w.warc.gz": data}) as srv:
        srv.faults["/w.warc.gz"] = ["short", "503", "503", "503"]
        url = srv.url("/w.warc.gz")
        with open_stream(url, retries=2, backoff=0.01) as f, pytest.raises(RemoteReadError) as err:
            read_all(f)
        half = len(data) // 2
        assert err.value.offset == half and f"{url}: read failed at byte offset {half}" in str(err.value)
        assert srv.gets("/w.warc.gz") == ["bytes=0-", f"bytes={half}-", f"bytes={half}-"]  # 2 retries, both 503


def test_http_missing_or_forbidden_fails_fast(shared_data: Path) -> None:
    with RangeServer({"/w.warc.gz": shared_data / CC}) as srv:
        srv.faults["/w.warc.gz"] = ["403"]
        t0 = time.monotonic()
        with pytest.raises(FileNotFoundError, match=srv.url("/missing.warc.gz")):
            open_stream(srv.url("/missing.warc.gz"), backoff=5)
        with pytest.raises(RemoteRequestError, match="403") as err:
            open_stream(srv.url("/w.warc.gz"), backoff=5)
        assert srv.url("/w.warc.gz") in str(err.value)
        assert time.monotonic() - t0 < 2  # a retry would have slept >= 2.5 s
        assert len(srv.gets("/missing.warc.gz")) == len(srv.gets("/w.warc.gz")) == 1


def test_http_object_changed_mid_read_is_not_spliced(shared_data: Path) -> None:
    data = (shared_data / AEB).read_bytes()
    with RangeServer({"/a.warc.gz": data}) as srv:
        srv.faults["/a.warc.gz"] = ["drop"]
        with open_stream(srv.url("/a.warc.gz"), backoff=0.01) as f:
            f.read(1000)
            srv.files["/a.warc.gz"] = data[::-1]  # a new version (new ETag) replaces the file while we read
            with pytest.raises(RemoteRequestError, match="changed while being read"):
                read_all(f)


def test_http_fingerprint_is_the_etag_and_survives_a_503(shared_data: Path) -> None:
    with RangeServer({"/w.warc.gz": shared_data / CC}) as srv:
        srv.faults["/w.warc.gz"] = ["503", "503"]  # fsspec's info: HEAD, then GET, then our retry
        fp = fingerprint(srv.url("/w.warc.gz"))
        assert fp.startswith('etag:"') and fp == fingerprint(srv.url("/w.warc.gz"))
        assert [m for m, p, _ in srv.requests][:3] == ["HEAD", "GET", "HEAD"]


def test_local_path_and_missing_local_path(shared_data: Path, tmp_path: Path) -> None:
    with open_stream(str(shared_data / CC)) as f:
        assert read_all(f) == (shared_data / CC).read_bytes()
    with pytest.raises(FileNotFoundError, match="nope.warc.gz"):
        open_stream(str(tmp_path / "nope.warc.gz"))


def test_s3_anonymous_with_endpoint_from_env_or_option(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = (shared_data / CC).read_bytes()
    key = "crawl-data/CC-MAIN-2020-34/segments/1/warc/warcfile.warc.gz"
    with moto_s3() as (endpoint, s3):
        s3.create_bucket(Bucket="commoncrawl")
        put = s3.put_object(Bucket="commoncrawl", Key=key, Body=data, ACL="public-read")
        s3.put_object(Bucket="commoncrawl", Key="private.warc.gz", Body=data)  # not readable anonymously
        url = f"s3://commoncrawl/{key}"

        with open_stream(url, storage_options={"endpoint_url": endpoint}) as f:
            assert read_all(f) == data
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        with open_stream(url) as f, open(shared_data / CC, "rb") as local:
            assert record_count(f) == record_count(local) == 50
        assert fingerprint(url) == f"etag:{put['ETag']}"

        with pytest.raises(FileNotFoundError, match="s3://commoncrawl/missing.warc.gz"):
            open_stream("s3://commoncrawl/missing.warc.gz", backoff=5)
        with pytest.raises(RemoteRequestError, match="s3://commoncrawl/private.warc.gz: access denied"):
            open_stream("s3://commoncrawl/private.warc.gz", backoff=5)
