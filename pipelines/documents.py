"""The streaming runner of document stages: shard(s) in, one shard out, batch by batch, in bounded memory.

    lmpipe task filter --input IN.parquet --output OUT.parquet [--annotate-only]   (run_filter, pipelines/filters/)
    lmpipe task pii --input IN.parquet --output OUT.parquet [--annotate-only]      (run_pii, pipelines/pii.py)

A document stage is a per-batch ``transform``: it gets a batch of input rows (every input column) and returns a
``BatchResult``: its columns (``text``, when it rewrites it, replaces the input's in place; the others are appended,
replacing an input column of the same name) and, for a stage that drops, one drop reason per row (None = kept).
``run_documents`` does the rest once for every such stage: it reads the inputs one row group at a time
(``ParquetFile.iter_batches``, never a whole shard), stops after ``limit`` rows, counts ``bytes_in``, drops the rows
with a reason and counts them (``docs_in == docs_kept + sum(dropped)``) or, with ``annotate_only``, keeps every row
and counts ``would_drop_<reason>`` in ``stats.extra``, repairs ``text`` that is not valid UTF-8 (U+FFFD, counted in
``extra['invalid_utf8']``, dropped as ``invalid_utf8`` by a stage that drops), writes side outputs (rows a stage
also sends elsewhere, e.g. the filter's other languages), and streams the output through ``ShardWriter`` in row
groups of 8192 rows, committed with its manifest entry and ``_stats`` file as ``write_shard`` does.

Memory is bounded by the batch (``batch_rows``) and one output row group, not by the shard. The bytes are those of the
whole-table write (``write_table``) that the stages did before: the same row groups, and inside each row group the
same Arrow chunks (Parquet's page boundaries follow them), see ``RowGroupBuffer``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel

from pipelines.shards import ShardSchemaError, ShardWriter, shard_id
from pipelines.stats import StageStats

logger = logging.getLogger(__name__)

REQUIRED = ("id", "text")
Segment = tuple[int, int]  # (input file, row group): the rows an input chunk held


@dataclass
class BatchResult:
    """What a stage made of one batch: its columns (one value per input row) and, if it drops, the drop reasons."""

    columns: dict[str, pa.Array]
    drop_reasons: list[str | None] | None = None  # None: the stage drops nothing


Transform = Callable[[pa.RecordBatch], BatchResult]
SideOutputs = Callable[[pa.RecordBatch], dict[str, pa.RecordBatch]]  # output rows -> {side shard path: its rows}


def check_columns(path: str, schema: pa.Schema, required: tuple[str, ...] = REQUIRED) -> None:
    """Raise ShardSchemaError unless ``schema`` has each ``required`` column as a string column."""
    for col in required:
        if col not in schema.names:
            raise ShardSchemaError(path, f"missing required column '{col}' (has {schema.names})")
        kind = schema.field(col).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise ShardSchemaError(path, f"column '{col}' must be string, is {kind}")


class DocumentReader:
    """The input shard(s) of a document stage as batches of one unified schema (missing columns null), read one row
    group at a time; a file that is not Parquet or lacks a required column fails here, before anything is written."""

    def __init__(self, inputs: list[str], required: tuple[str, ...] = REQUIRED):
        if not inputs:
            raise ValueError("no input shards given")
        self.inputs = [str(p) for p in inputs]
        schemas, self.num_rows = [], 0
        for path in self.inputs:
            with self._open(path) as pf:
                check_columns(path, pf.schema_arrow, required)
                schemas.append(pf.schema_arrow)
                self.num_rows += pf.metadata.num_rows
        # as pa.concat_tables(promote_options="permissive"): a column some inputs lack is null in their rows
        self.schema = schemas[0] if len(schemas) == 1 else pa.unify_schemas(schemas, promote_options="permissive")

    @staticmethod
    @contextmanager
    def _open(path: str) -> Iterator[pq.ParquetFile]:
        with fsspec.open(path, "rb") as f:
            try:
                pf = pq.ParquetFile(f)
            except (pa.ArrowInvalid, OSError) as e:
                raise ShardSchemaError(path, f"not a readable Parquet file ({e})") from e
            yield pf

    def batches(self, batch_rows: int, limit: int | None = None) -> Iterator[tuple[Segment, pa.RecordBatch]]:
        """(segment, batch) for every batch of at most ``batch_rows`` rows, the first ``limit`` rows in all."""
        left = self.num_rows if limit is None else min(limit, self.num_rows)
        for i, path in enumerate(self.inputs):
            with self._open(path) as pf:
                for group in range(pf.num_row_groups):
                    for batch in self._row_group(path, pf, group, batch_rows):
                        if left <= 0:
                            return
                        batch = self._unified(batch.slice(0, left))
                        left -= batch.num_rows
                        yield (i, group), batch

    @staticmethod
    def _row_group(path: str, pf: pq.ParquetFile, group: int, batch_rows: int) -> Iterator[pa.RecordBatch]:
        try:
            yield from pf.iter_batches(batch_size=batch_rows, row_groups=[group])
        except (pa.ArrowInvalid, OSError) as e:
            raise ShardSchemaError(path, f"row group {group} is not readable ({e})") from e

    def _unified(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if batch.schema.equals(self.schema):
            return batch
        names = batch.schema.names
        arrays = [
            batch.column(f.name).cast(f.type) if f.name in names else pa.nulls(batch.num_rows, f.type)
            for f in self.schema
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)


def output_schema(inputs: pa.Schema, columns: pa.Schema, metadata: dict[bytes, Any] | None = None) -> pa.Schema:
    """The input columns (``text`` replaced in place when ``columns`` has it), then the stage's other ``columns``."""
    added = [f for f in columns if f.name != "text"]
    replaced = {f.name for f in added}
    fields = [columns.field("text") if f.name == "text" and "text" in columns.names else f for f in inputs]
    merged = {**(inputs.metadata or {}), **metadata} if metadata else inputs.metadata
    return pa.schema([*(f for f in fields if f.name not in replaced), *added], metadata=merged)


class RowGroupBuffer:
    """Output rows gathered into full row groups before they reach a ``ShardWriter``.

    Parquet cuts data pages and gives up dictionary encoding at checks made per Arrow chunk, so a column's chunks
    inside a row group decide the bytes. The chunks are the ones a whole-table write had: an input column keeps one
    chunk per input row group (``Segment``); a column the stage computed is one chunk per row group, unless rows
    were dropped, where Arrow's Table.filter cuts every column at the input row groups (``contiguous`` empty).
    """

    def __init__(self, writer: ShardWriter, contiguous: set[str] | frozenset[str] = frozenset()):
        self.writer, self.size = writer, writer.row_group_size
        self.contiguous = [f.name in contiguous for f in writer.schema]
        self.pieces: list[tuple[Segment, pa.RecordBatch]] = []
        self.rows = 0

    def add(self, segment: Segment, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            self.pieces.append((segment, batch))
            self.rows += batch.num_rows
        while self.rows >= self.size:
            self._write(self.size)

    def close(self) -> None:
        if self.rows:
            self._write(self.rows)

    def _write(self, n: int) -> None:
        take: list[tuple[Segment, pa.RecordBatch]] = []
        rest: list[tuple[Segment, pa.RecordBatch]] = []
        left = n
        for segment, batch in self.pieces:
            k = min(batch.num_rows, left)
            left -= k
            if k:
                take.append((segment, batch.slice(0, k)))
            if k < batch.num_rows:
                rest.append((segment, batch.slice(k)))
        self.pieces, self.rows = rest, self.rows - n
        self.writer.write(self._table(take))

    def _table(self, pieces: list[tuple[Segment, pa.RecordBatch]]) -> pa.Table:
        schema = self.writer.schema
        columns = []
        for i, contiguous in enumerate(self.contiguous):
            runs = [pieces] if contiguous else [list(run) for _, run in groupby(pieces, key=itemgetter(0))]
            chunks = [pa.concat_arrays([b.column(i) for _, b in run]) for run in runs]
            columns.append(pa.chunked_array(chunks, schema.field(i).type))
        return pa.Table.from_arrays(columns, schema=schema)


def repair_utf8(batch: pa.RecordBatch) -> tuple[pa.RecordBatch, list[bool]]:
    """The batch with invalid UTF-8 in ``text`` (which Arrow checks neither on write nor on read, and which stops
    Python at the first ``to_pylist``) replaced by U+FFFD, and which rows had it (empty: none)."""
    text = batch.column("text")
    try:
        text.validate(full=True)  # checks the UTF-8 of a string array, in C++
        return batch, []
    except pa.ArrowInvalid:
        pass
    raw = text.cast(pa.large_binary() if pa.types.is_large_string(text.type) else pa.binary()).to_pylist()
    bad = [False] * len(raw)
    values: list[str | None] = []
    for i, value in enumerate(raw):
        try:
            values.append(None if value is None else value.decode("utf-8"))
        except UnicodeDecodeError:
            values.append(value.decode("utf-8", errors="replace"))
            bad[i] = True
    repaired = batch.set_column(batch.schema.get_field_index("text"), "text", pa.array(values, text.type))
    return repaired, bad


def _apply(transform: Transform, batch: pa.RecordBatch, stats: StageStats) -> tuple[pa.RecordBatch, BatchResult]:
    """``transform`` on the batch after ``repair_utf8``; rows that were not UTF-8 are counted in
    ``extra['invalid_utf8']`` and, in a stage that drops, dropped as ``invalid_utf8``."""
    batch, bad = repair_utf8(batch)
    result = transform(batch)
    if any(bad):
        stats.extra["invalid_utf8"] = int(stats.extra.get("invalid_utf8", 0)) + sum(bad)
        logger.warning("%s: %d documents with invalid UTF-8 text (replaced by U+FFFD)", stats.shard, sum(bad))
        if result.drop_reasons is not None:
            result.drop_reasons = ["invalid_utf8" if b else r for r, b in zip(result.drop_reasons, bad, strict=True)]
    return batch, result


def _output_rows(batch: pa.RecordBatch, result: BatchResult, schema: pa.Schema) -> pa.RecordBatch:
    arrays = [result.columns[f.name] if f.name in result.columns else batch.column(f.name) for f in schema]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _count_drops(stats: StageStats, reasons: Counter[str], annotate_only: bool) -> None:
    if annotate_only:
        stats.docs_kept = stats.docs_in
        for reason, n in reasons.items():
            stats.extra[f"would_drop_{reason}"] = n
    else:
        stats.docs_kept = stats.docs_in - sum(reasons.values())
        for reason, n in reasons.items():
            stats.drop(reason, n)


class _SideShards:
    """The side outputs of one run: a buffered writer per path, opened at its first row, published (without a
    manifest entry, as ``write_table`` did) before the main shard is committed."""

    def __init__(self, schema: pa.Schema, stack: ExitStack):
        self.schema, self.stack = schema, stack
        self.buffers: dict[str, RowGroupBuffer] = {}

    def add(self, segment: Segment, parts: dict[str, pa.RecordBatch]) -> None:
        for path, rows in parts.items():
            if rows.num_rows and path not in self.buffers:
                self.buffers[path] = RowGroupBuffer(self.stack.enter_context(ShardWriter(path, self.schema)))
            if rows.num_rows:
                self.buffers[path].add(segment, rows)

    def publish(self) -> None:
        for buffer in self.buffers.values():
            buffer.close()
            buffer.writer.publish()


def run_documents(
    inputs: list[str],
    output: str,
    cfg: BaseModel,
    stage: str,
    transform: Transform,
    *,
    columns: pa.Schema,
    drops: bool = False,
    annotate_only: bool = False,
    limit: int | None = None,
    batch_rows: int = 1024,
    metadata: dict[bytes, Any] | None = None,
    side_outputs: SideOutputs | None = None,
    finish: Callable[[StageStats], None] | None = None,
    made_from: list[str] | None = None,
) -> StageStats:
    """Run ``transform`` over the input shard(s) into ``output`` (see the module docstring) and commit it.

    ``columns``: the columns ``transform`` returns, with their types; ``drops``: whether it returns drop reasons;
    ``metadata``: added to the output's schema metadata; ``side_outputs``: rows also written elsewhere (called with
    each batch's output rows before anything is dropped); ``finish``: the stage's own counters, before the commit;
    ``made_from``: what the manifest records the shard was made from (default: ``inputs``; dedup's apply adds its
    decisions), so that the cache check, which compares it with the task's inputs, holds.
    """
    started = time.perf_counter()
    reader = DocumentReader(inputs)
    schema = output_schema(reader.schema, columns, metadata)
    stats = StageStats(stage=stage, shard=shard_id(output))
    dropping = drops and not annotate_only
    reasons: Counter[str] = Counter()
    with ShardWriter(output, schema, empty_row_group=True) as writer, ExitStack() as stack:
        shard = RowGroupBuffer(writer, frozenset() if dropping else frozenset(columns.names))
        sides = _SideShards(schema, stack)
        for segment, batch in reader.batches(batch_rows, limit):
            stats.docs_in += batch.num_rows
            stats.bytes_in += pc.sum(pc.binary_length(batch.column("text"))).as_py() or 0
            batch, result = _apply(transform, batch, stats)
            rows = _output_rows(batch, result, schema)
            if side_outputs is not None:
                sides.add(segment, side_outputs(rows))
            if result.drop_reasons is not None:
                reasons.update(r for r in result.drop_reasons if r is not None)
                if dropping:
                    rows = rows.filter(pa.array([r is None for r in result.drop_reasons]))
            shard.add(segment, rows)
            logger.info("%s %s: %d/%d docs", stage, stats.shard, stats.docs_in, reader.num_rows)
        shard.close()
        sides.publish()
        _count_drops(stats, reasons, annotate_only)
        if finish is not None:
            finish(stats)
        stats.seconds = time.perf_counter() - started
        logger.info("%s %s: kept %d of %d %s", stage, stats.shard, stats.docs_kept, stats.docs_in, dict(reasons))
        return writer.commit(stats, cfg, list(made_from or inputs))
