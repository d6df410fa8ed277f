"""Staging a remote tokenize output (``s3://bucket/prefix`` or any fsspec URL) into a local cache for training.

    stage_token_dir("s3://bucket/crawl/tokenize", default_cache_root())  # -> ~/.cache/lmpipe/tokens/<hash>

Training memory-maps its token shards, so they must be on local disk. ``stage_token_dir`` copies what the training
reads (tokenizer.json, ``train_*.bin``, ``val_*.bin``) and what says what they are (meta.json, ``_manifest.json``)
into ``cache_root / sha256(url)[:16]`` and returns that directory; a local path comes back unchanged.

Each file is downloaded to a hidden temporary name, checked, then renamed into place, so a file under its final name
is always complete. The check: the sha256 the tokenize stage recorded for the file (meta.json's shard list and
tokenizer entry first, else its ``_manifest.json`` entry), else only the size the store lists. meta.json and the
manifest themselves are checked against the listed size. ``_staged.json`` in the cache remembers each file's remote
version (ETag, else size + modification time) and the local copy's size, mtime and sha256, so a file whose remote
version is unchanged is not downloaded again; files that vanished from the source are removed from the cache.
Credentials come from the standard AWS environment (see pipelines/remote.py; ``LMPIPE_S3_ANON=0`` to sign).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from pipelines.remote import RemoteRequestError, filesystem, open_stream, with_retries
from pipelines.shards import atomic_write_bytes, publishing
from pipelines.tokenizer import TokenShardError

log = logging.getLogger(__name__)

RECORDS = ("meta.json", "_manifest.json")  # staged first: they hold the checksums of the data files
DATA_PATTERNS = ("tokenizer.json", "train_*.bin", "val_*.bin")  # what pipelines.train.run reads
INDEX_FILE = "_staged.json"
CACHE_ENV = "LMPIPE_TOKEN_CACHE"  # where staged token directories go (default: the user's cache directory)
CHUNK_BYTES = 1 << 20


class ChecksumMismatchError(TokenShardError):
    """A staged file's bytes are not the ones recorded for it (sha256, or the size the store listed)."""

    def __init__(self, url: str, what: str, expected: object, actual: object, recorded_in: str):
        super().__init__(f"{url}: {what} {actual} does not match {expected} recorded in {recorded_in}")
        self.url, self.expected, self.actual = url, expected, actual


@dataclass(frozen=True)
class RemoteFile:
    """One object of the source as the store lists it; ``version`` changes whenever its content may have."""

    name: str
    url: str
    size: int
    version: str


def is_staged_name(name: str) -> bool:
    """True for the files a staged token directory holds (records and training inputs)."""
    return name in RECORDS or any(fnmatch.fnmatchcase(name, p) for p in DATA_PATTERNS)


def default_cache_root() -> Path:
    """``$LMPIPE_TOKEN_CACHE``, else ``$XDG_CACHE_HOME/lmpipe/tokens`` (``~/.cache/lmpipe/tokens``): a place that
    outlives run directories, so every run on the same source reuses one copy."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "lmpipe" / "tokens"


def cache_dir_for(source: str, cache_root: Path) -> Path:
    """``cache_root / sha256(url)[:16]``: one cache directory per source URL (trailing slashes ignored)."""
    return Path(cache_root) / hashlib.sha256(source.rstrip("/").encode()).hexdigest()[:16]


def stage_token_dir(source: str | Path, cache_root: str | Path) -> Path:
    """The local token directory for ``source``: ``source`` itself when it is a local path, else a verified copy of
    the remote tokenize output in the cache (only files whose remote version changed are downloaded).

    Raises FileNotFoundError naming the URL when it holds no tokenizer.json or no train_*.bin, and
    ChecksumMismatchError (a bad-input error) when a downloaded file is not the one recorded for it.
    """
    source = str(source)
    if "://" not in source:
        return Path(source)
    url = source.rstrip("/")
    cache = cache_dir_for(url, Path(cache_root))
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache / ".lock")):  # two runs staging the same source share one download
        remote = _list_remote(url)
        if "tokenizer.json" not in remote or not any(fnmatch.fnmatchcase(n, "train_*.bin") for n in remote):
            raise FileNotFoundError(f"{url}: expected tokenizer.json and train_*.bin / val_*.bin token shards")
        index = _load_index(cache)
        _remove_stale(cache, remote, index)
        fetched = [_fetch(remote[n], cache, index, None) for n in RECORDS if n in remote]
        recorded = _recorded_checksums(url, cache)
        data = sorted(n for n in remote if n not in RECORDS)
        fetched += [_fetch(remote[n], cache, index, recorded.get(n)) for n in data]
    downloaded = [f for f in fetched if f]
    log.info("staged %s in %s: %d of %d files downloaded", url, cache, len(downloaded), len(fetched))
    return cache


def _list_remote(url: str) -> dict[str, RemoteFile]:
    """The stageable objects directly under ``url``, by name (a fresh listing: never fsspec's cached one)."""
    fs, root = filesystem(url)
    fs.invalidate_cache(root)
    entries = with_retries(url, lambda: fs.ls(root, detail=True), retries=5, backoff=1.0)
    files = {}
    for info in entries:
        name = info["name"].rstrip("/").rsplit("/", 1)[-1]
        if info.get("type") == "file" and is_staged_name(name):
            etag = info.get("ETag") or info.get("etag")
            mtime = info.get("LastModified") or info.get("mtime") or info.get("last_modified")
            version = f"etag:{etag}" if etag else f"size:{info['size']}:mtime:{mtime}"
            files[name] = RemoteFile(name, f"{url}/{name}", int(info["size"]), version)
    return files


def _load_index(cache: Path) -> dict[str, dict[str, Any]]:
    path = cache / INDEX_FILE
    try:
        return json.loads(path.read_text())["files"]
    except (OSError, ValueError, KeyError):
        return {}  # no index (or a damaged one): everything is downloaded again


def _save_index(cache: Path, index: dict[str, dict[str, Any]]) -> None:
    atomic_write_bytes(cache / INDEX_FILE, json.dumps({"files": index}, indent=2, sort_keys=True).encode())


def _remove_stale(cache: Path, remote: dict[str, RemoteFile], index: dict[str, dict[str, Any]]) -> None:
    """Drop temporaries of an interrupted staging and the files the source no longer has: a shard left over from
    an earlier version of the source would otherwise be trained on (the training globs train_*.bin)."""
    removed = False
    for path in cache.iterdir():
        leftover = path.name.startswith(".") and ".tmp-" in path.name
        if path.is_file() and (leftover or (is_staged_name(path.name) and path.name not in remote)):
            path.unlink()
            removed = index.pop(path.name, None) is not None or removed
    if removed:
        _save_index(cache, index)


def _recorded_checksums(url: str, cache: Path) -> dict[str, tuple[str, str]]:
    """File name → (sha256, where it was recorded), from the staged manifest, then meta.json (which wins: the
    tokenize stage writes it last, marking the output complete)."""
    recorded: dict[str, tuple[str, str]] = {}
    for name in ("_manifest.json", "meta.json"):
        path = cache / name
        if not path.is_file():
            continue
        try:
            doc = json.loads(path.read_text())
            if name == "_manifest.json":
                entries = {k: v.get("sha256") for k, v in doc.items()}
            else:
                entries = {s["file"]: s.get("sha256") for s in doc.get("shards", [])}
                tok = doc.get("tokenizer") or {}
                entries[tok.get("file", "tokenizer.json")] = tok.get("sha256") or doc.get("tokenizer_sha256")
        except (ValueError, AttributeError, KeyError, TypeError) as e:
            raise TokenShardError(f"{url}/{name}: not a tokenize {name} ({e})") from e
        recorded.update({k: (v, f"{url}/{name}") for k, v in entries.items() if v})
    return recorded


def _fetch(remote: RemoteFile, cache: Path, index: dict[str, dict[str, Any]], recorded: tuple[str, str] | None) -> bool:
    """Make ``cache / remote.name`` a verified copy of ``remote``; True if it had to be downloaded."""
    final = cache / remote.name
    entry = index.get(remote.name)
    if entry and _up_to_date(final, entry, remote, recorded):
        return False
    sha = _download(remote, final, recorded)
    st = final.stat()
    index[remote.name] = {"version": remote.version, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}
    _save_index(cache, index)
    return True


def _up_to_date(final: Path, entry: dict[str, Any], remote: RemoteFile, recorded: tuple[str, str] | None) -> bool:
    """The cached copy is the remote version it was staged from, untouched since, with the checksum recorded now."""
    try:
        st = final.stat()
    except OSError:
        return False
    same_local = st.st_size == entry.get("size") == remote.size and st.st_mtime_ns == entry.get("mtime_ns")
    same_sha = recorded is None or recorded[0] == entry.get("sha256")
    return entry.get("version") == remote.version and same_local and same_sha


def _download(remote: RemoteFile, final: Path, recorded: tuple[str, str] | None) -> str:
    """Stream ``remote`` into a temporary file beside ``final``, check its size and sha256, rename it into place;
    the sha256. Any failure removes the temporary file and leaves ``final`` as it was."""
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    h = hashlib.sha256()
    with publishing(str(final), str(tmp), lambda: tmp.unlink(missing_ok=True)):
        with open_stream(remote.url) as src, open(tmp, "wb") as dst:
            while block := src.read(CHUNK_BYTES):
                h.update(block)
                dst.write(block)
            etag = getattr(getattr(src, "raw", None), "etag", None)
        if etag and remote.version.startswith("etag:") and remote.version != f"etag:{etag}":
            raise RemoteRequestError(remote.url, f"changed while being staged ({remote.version} -> etag:{etag})")
        size = tmp.stat().st_size
        if size != remote.size:
            raise ChecksumMismatchError(remote.url, "size", remote.size, size, "the store's listing")
        if recorded is not None and h.hexdigest() != recorded[0]:
            raise ChecksumMismatchError(remote.url, "sha256", recorded[0], h.hexdigest(), recorded[1])
        os.replace(tmp, final)
    return h.hexdigest()
