"""Parquet shards: schema helpers, fsspec reads, atomic writes, manifests and fingerprints.

Every write goes to a tmp file renamed into place; a failed write removes its tmp file, and a full disk (ENOSPC,
EDQUOT) raises ``DiskFullError`` naming the file that did not fit, so nothing partial is left under a final name.

Layout (DESIGN.md): ``{data_root}/{crawl_id}/{stage}/{shard_id}.parquet`` plus ``{stage}/_manifest.json`` and
``{stage}/_stats/{shard_id}.json``. The manifest, not Prefect's cache, is the source of truth for "done".
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock
from pydantic import BaseModel

from pipelines import CODE_VERSION
from pipelines.errors import DISK_FULL_ERRNOS, DiskFullError, InputError
from pipelines.remote import file_info, filesystem

# The document columns every extract shard carries (later stages add theirs).
DOC_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("url", pa.string()),
        ("crawl_id", pa.string()),
        ("warc_path", pa.string()),
        ("warc_offset", pa.int64()),
        ("fetch_time", pa.timestamp("s", tz="UTC")),
        ("title", pa.string()),
        ("charset", pa.string()),
        ("content_length", pa.int64()),
        ("text", pa.string()),
    ]
)


class ShardSchemaError(InputError):
    """A Parquet input lacks a required column or has the wrong type for it."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path


def shard_id(path: str | Path) -> str:
    """The shard id of a file: its name without the data suffixes (``a.warc.gz`` -> ``a``)."""
    name = Path(str(path)).name
    for suffix in (".gz", ".warc", ".parquet", ".arc", ".txt"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


def config_hash(cfg: BaseModel | dict[str, Any]) -> str:
    """Stable short hash of a config (its JSON with sorted keys)."""
    data = cfg.model_dump(mode="json") if isinstance(cfg, BaseModel) else cfg
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with fsspec.open(str(path), "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fingerprint(path: str | Path) -> str:
    """Cheap identity of an input file: its content hash when a stage wrote it, else size + mtime locally, ETag
    (or size + mtime) remotely.

    A shard with an unchanged manifest entry (same size and mtime) is identified by the sha256 recorded there, so
    a stage that reruns and writes the same bytes leaves every stage after it cached. Never reads the file, so
    fingerprinting a thousand 1 GB WARCs costs a thousand stat calls.
    """
    path = str(path)
    if "://" not in path and (recorded := _recorded_sha256(Path(path))):
        return f"sha256:{recorded}"
    # remote's filesystem: anonymous S3 with the configured endpoint, like the reads; info retries transient faults
    fs, p = filesystem(path)
    info = file_info(path)
    if "ETag" in info or "etag" in info:
        return f"etag:{info.get('ETag') or info.get('etag')}"
    mtime = info.get("mtime") or info.get("LastModified") or info.get("last_modified") or ""
    if isinstance(mtime, float):
        mtime = f"{os.stat(p).st_mtime_ns}" if fs.protocol in ("file", ("file", "local")) else mtime
    return f"size:{info.get('size')}:mtime:{mtime}"


def _recorded_sha256(path: Path) -> str | None:
    """The sha256 the manifest beside ``path`` recorded for it, if the file is still the one recorded."""
    manifest = path.parent / "_manifest.json"
    try:
        st, mst = path.stat(), manifest.stat()
    except OSError:
        return None
    entry = _manifest_entries(str(manifest), mst.st_mtime_ns, mst.st_size).get(path.name, {})
    if entry.get("bytes") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
        return entry.get("sha256")
    return None


@functools.lru_cache(maxsize=64)
def _manifest_entries(manifest: str, mtime_ns: int, size: int) -> dict[str, dict[str, Any]]:
    """A manifest's entries, read once per version of the file (a stage fingerprints all its inputs)."""
    try:
        return json.loads(Path(manifest).read_text())
    except (OSError, ValueError):
        return {}


def read_table(
    path: str | Path, columns: list[str] | None = None, required: tuple[str, ...] = ("id", "text")
) -> pa.Table:
    """Read a Parquet shard (local or remote) and check it has the required string columns."""
    path = str(path)
    try:
        with fsspec.open(path, "rb") as f:
            table = pq.read_table(f, columns=columns)
    except FileNotFoundError:
        raise
    except (pa.ArrowInvalid, OSError) as e:
        raise ShardSchemaError(path, f"not a readable Parquet file ({e})") from e
    for col in required:
        if col not in table.column_names:
            raise ShardSchemaError(path, f"missing required column '{col}' (has {table.column_names})")
        if not pa.types.is_string(table.schema.field(col).type) and not pa.types.is_large_string(
            table.schema.field(col).type
        ):
            raise ShardSchemaError(path, f"column '{col}' must be string, is {table.schema.field(col).type}")
    return table


def read_tables(paths: list[str | Path], required: tuple[str, ...] = ("id", "text")) -> pa.Table:
    """Concatenate several shards (schemas unified; missing columns become null)."""
    tables = [read_table(p, required=required) for p in paths]
    if not tables:
        raise ValueError("no input shards given")
    return pa.concat_tables(tables, promote_options="permissive")


def free_bytes(path: str | Path) -> int | None:
    """Space left on the local file system that holds (or would hold) ``path``; None for a remote store."""
    path = str(path)
    if "://" in path and not path.startswith("file://"):
        return None
    where = Path(path.removeprefix("file://")).parent
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        return shutil.disk_usage(where).free
    except OSError:
        return None


def _size(fs: Any, path: str) -> int | None:
    try:
        return fs.size(path)
    except OSError:
        return None


def _remove(fs: Any, path: str) -> None:
    """Best-effort removal of a partial file (the write is already failing: its own error is the one to raise)."""
    with contextlib.suppress(OSError):
        if fs.exists(path):
            fs.rm(path)


@contextlib.contextmanager
def publishing(final: str, tmp: str, cleanup: Callable[[], None], fs: Any = None) -> Iterator[None]:
    """Around the writes of ``tmp`` that publish ``final``: on any failure ``cleanup()`` (close and remove the partial
    file), and a full disk becomes DiskFullError naming ``final``, the space left and the size the tmp file reached."""
    try:
        yield
    except BaseException as e:
        disk_full = isinstance(e, OSError) and not isinstance(e, DiskFullError) and e.errno in DISK_FULL_ERRNOS
        written = _size(fs or fsspec.filesystem("file"), tmp) if disk_full else None
        cleanup()
        if disk_full:
            raise DiskFullError(final, free_bytes(final), e, written) from e
        raise


def write_table(table: pa.Table, path: str | Path) -> dict[str, Any]:
    """Write a shard atomically (tmp file + rename, zstd) and return its manifest facts.

    A failed write leaves neither ``path`` nor the tmp file; a full disk raises DiskFullError naming ``path``.
    """
    path = str(path)
    fs, p = fsspec.core.url_to_fs(path)
    fs.makedirs(os.path.dirname(p) or ".", exist_ok=True)
    tmp = f"{p}.tmp-{os.getpid()}-{time.monotonic_ns()}"
    with publishing(path, tmp, lambda: _remove(fs, tmp), fs):
        with fs.open(tmp, "wb") as f:
            pq.write_table(table, f, compression="zstd", row_group_size=8192)
        fs.mv(tmp, p)
    return {"rows": table.num_rows, "bytes": fs.size(p), "sha256": sha256_file(path)}


class ShardWriter:
    """A shard written batch by batch (memory bounded by one batch), published atomically by ``commit``.

    ``with ShardWriter(output, schema) as w: w.write(batch) …; w.commit(stats, cfg, inputs)`` — the same tmp file +
    rename, manifest entry and ``_stats`` file as ``write_shard``. Leaving the block without ``commit`` (an error)
    removes the partial file, and so does a failed write: a shard is either complete and in the manifest, or absent.
    A full disk raises DiskFullError naming the output.
    """

    def __init__(
        self, output: str | Path, schema: pa.Schema, row_group_size: int = 8192, *, empty_row_group: bool = False
    ):
        self.output = str(output)
        self.fs, self.path = fsspec.core.url_to_fs(self.output)
        self.fs.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self.tmp = f"{self.path}.tmp-{os.getpid()}-{time.monotonic_ns()}"
        self._file: Any = None
        self._writer: pq.ParquetWriter | None = None
        with self._publishing():
            self._file = self.fs.open(self.tmp, "wb")
            self._writer = pq.ParquetWriter(self._file, schema, compression="zstd")
        self.schema = schema
        self.row_group_size = row_group_size
        # a shard of no rows gets one empty row group, as write_table (pq.write_table) writes it
        self.empty_row_group = empty_row_group
        self.rows = 0

    def _publishing(self) -> contextlib.AbstractContextManager[None]:
        return publishing(self.output, self.tmp, self._abort, self.fs)

    def _abort(self) -> None:
        """Close without finishing (errors ignored: the write already failed) and remove the partial file."""
        writer, self._writer = self._writer, None
        for handle in (writer, self._file):
            if handle is not None:
                with contextlib.suppress(Exception):
                    handle.close()
        _remove(self.fs, self.tmp)

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        if batch.num_rows:
            table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
            assert self._writer is not None, f"{self.output}: written after commit or a failed write"
            with self._publishing():
                self._writer.write_table(table, row_group_size=self.row_group_size)
            self.rows += batch.num_rows

    def _close(self) -> None:
        if self._writer is not None:
            if self.rows == 0 and self.empty_row_group:
                self._writer.write_table(self.schema.empty_table())
            self._writer.close()
            self._file.close()
            self._writer = None

    def publish(self) -> dict[str, Any]:
        """Close and rename the shard into place, without a manifest entry (a side output); its manifest facts."""
        with self._publishing():
            self._close()
            self.fs.mv(self.tmp, self.path)
        return {"rows": self.rows, "bytes": self.fs.size(self.path), "sha256": sha256_file(self.output)}

    def commit(self, stats: Any, cfg: BaseModel, inputs: list[str | Path]) -> Any:
        stats.check()
        facts = self.publish()
        stats.bytes_out = facts["bytes"]
        _record(self.output, facts, stats, cfg, inputs)
        return stats

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._writer is not None:  # not committed
            self._abort()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` at once (tmp file + rename); on failure the old file stays and no tmp file
    does; a full disk raises DiskFullError naming ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with publishing(str(path), str(tmp), lambda: tmp.unlink(missing_ok=True)):
        tmp.write_bytes(data)
        os.replace(tmp, path)


def _record(output: str | Path, facts: dict[str, Any], stats: Any, cfg: BaseModel, inputs: list[str | Path]) -> None:
    """The manifest entry and ``_stats`` file of a just-published shard. If either cannot be written, the shard
    and its stats file are removed again: a shard is complete and recorded, or absent."""
    stage_dir = Path(output).parent
    stats_path = stage_dir / "_stats" / f"{shard_id(output)}.json"

    def undo() -> None:
        for path in (Path(output), stats_path):
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)

    with publishing(
        str(stats_path), str(stats_path), undo
    ):  # a full disk there: the manifest names itself, else the stats file
        stats.save(stats_path)  # before the manifest entry: a recorded shard always has its stats file
        Manifest(stage_dir).record(output, facts, config_hash(cfg), inputs)


class Manifest:
    """``{stage_dir}/_manifest.json``: per output file its rows, bytes, sha256, config hash, code version, inputs.

    Updates take a file lock so that shard tasks running in parallel processes never lose each other's entries.
    """

    def __init__(self, stage_dir: str | Path):
        self.dir = Path(stage_dir)
        self.path = self.dir / "_manifest.json"

    def load(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        return json.loads(self.path.read_text())

    def record(self, output: str | Path, facts: dict[str, Any], cfg_hash: str, inputs: list[str | Path]) -> None:
        entry = {
            **facts,
            "config_hash": cfg_hash,
            "code_version": CODE_VERSION,
            "inputs": {str(p): fingerprint(p) for p in inputs},
            "mtime_ns": os.stat(output).st_mtime_ns,
        }
        self._update(lambda data: {**data, Path(output).name: entry})

    def forget(self, names: Callable[[str], bool]) -> None:
        """Drop the entries whose file name ``names`` matches (a stage clearing its own earlier outputs)."""
        self._update(lambda data: {k: v for k, v in data.items() if not names(k)})

    def _update(self, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Read, change and write the manifest under its file lock (parallel tasks never lose each other's entries)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path) + ".lock"):
            atomic_write_bytes(self.path, json.dumps(change(self.load()), indent=2, sort_keys=True).encode())

    def valid(self, output: str | Path) -> bool:
        """True when ``output`` exists and matches its manifest entry (same size+mtime, else same sha256)."""
        output = Path(output)
        entry = self.load().get(output.name)
        if entry is None or not output.exists():
            return False
        st = output.stat()
        if st.st_size == entry.get("bytes") and st.st_mtime_ns == entry.get("mtime_ns"):
            return True
        return sha256_file(output) == entry.get("sha256")


def write_shard(table: pa.Table, output: str | Path, stats: Any, cfg: BaseModel, inputs: list[str | Path]) -> Any:
    """The one way a stage publishes a shard: atomic Parquet write, manifest entry, ``_stats/{shard}.json``.

    ``stats`` is the stage's StageStats; its counts must reconcile before anything is recorded.
    """
    stats.check()
    facts = write_table(table, output)
    stats.bytes_out = facts["bytes"]
    _record(output, facts, stats, cfg, inputs)
    return stats
