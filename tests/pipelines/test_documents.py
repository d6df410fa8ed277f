"""The streaming runner of document stages, on real Common Crawl text (dolma) through a word-count stage made here.

The stage (``WordCount``) collapses each document's whitespace, annotates it with its word count and drops the short
ones. The runner must give the bytes a whole-shard write gives (the same table built in memory and written with
``pq.write_table(row_group_size=8192)``), reconcile its counts, honour ``limit`` and ``annotate_only``, and never hand
the transform more than one batch of rows.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipelines.config import FilterConfig
from pipelines.documents import BatchResult, run_documents
from pipelines.shards import Manifest, ShardSchemaError
from pipelines.stats import StageStats

MIN_WORDS = 100
COLUMNS = pa.schema([("text", pa.string()), ("words", pa.int32())])


class WordCount:
    """Whitespace collapsed and words counted; a document under MIN_WORDS is dropped as ``short``, an empty one as
    ``empty``."""

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    def __call__(self, batch: pa.RecordBatch) -> BatchResult:
        self.batch_sizes.append(batch.num_rows)
        words = _words(batch.column("text"))
        reasons = ["empty" if not n else "short" if n < MIN_WORDS else None for n in words.to_pylist()]
        return BatchResult({"text": _collapsed(batch.column("text").to_pylist()), "words": words}, reasons)


def _collapsed(texts: list[str | None]) -> pa.Array:
    return pa.array([None if t is None else " ".join(t.split()) for t in texts], pa.string())


def _words(text: pa.Array | pa.ChunkedArray) -> pa.Array:
    counts = pc.list_value_length(pc.utf8_split_whitespace(pc.fill_null(text, "")))
    return pc.cast(counts, pa.int32()) if isinstance(counts, pa.Array) else pc.cast(counts.combine_chunks(), pa.int32())


@pytest.fixture(scope="module")
def shard(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~20,000 real documents (dolma's CC pages, repeated, numbered, every third one cut short) in row groups of 1,000
    rows: more than two output row groups, several input row groups in each. Unique texts are not dictionary-encoded,
    so a chunk layout other than a whole-table write's moves page boundaries."""
    docs = []
    for f in sorted((shared_data / "text" / "dolma-cc").glob("*.jsonl.gz")):
        docs += [json.loads(line) for line in gzip.open(f, "rt")]
    rows = []
    while len(rows) < 20_000:
        for d in docs:
            n = len(rows)
            text = f"{n}. " + (d["text"] if n % 3 else d["text"][:400])  # unique: no dictionary encoding
            rows.append({"id": f"{d['id']}-{n}", "url": d["id"], "text": None if n % 997 == 0 else text, "rank": n})
    path = tmp_path_factory.mktemp("documents") / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows[:20_000]), path, row_group_size=1000)
    return path


def whole_shard(src: Path, out: Path, *, annotate_only: bool, limit: int | None = None) -> str:
    """What the stages wrote before streaming: the whole table in memory, columns appended, filtered, one write."""
    table = pq.read_table(src)
    table = table.slice(0, limit) if limit is not None else table
    table = table.append_column("words", _words(table.column("text")))
    text = _collapsed(table.column("text").to_pylist())
    table = table.set_column(table.column_names.index("text"), "text", text)
    if not annotate_only:
        kept = pc.greater_equal(table.column("words"), MIN_WORDS)
        table = table.filter(kept)
    pq.write_table(table, out, compression="zstd", row_group_size=8192)
    return hashlib.sha256(out.read_bytes()).hexdigest()


@pytest.mark.parametrize(("annotate_only", "limit"), [(False, None), (True, None), (False, 16_500), (True, 9_000)])
def test_stream_writes_the_bytes_of_a_whole_shard_write(
    shard: Path, tmp_path: Path, annotate_only: bool, limit: int | None
) -> None:
    out = tmp_path / "words" / "in.parquet"
    stage = WordCount()
    stats = run_documents(
        [str(shard)],
        str(out),
        FilterConfig(),
        "words",
        stage,
        columns=COLUMNS,
        drops=True,
        annotate_only=annotate_only,
        limit=limit,
        batch_rows=500,
    )
    expected = whole_shard(shard, tmp_path / "whole.parquet", annotate_only=annotate_only, limit=limit)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == expected
    assert pq.ParquetFile(out).num_row_groups >= 2
    assert max(stage.batch_sizes) <= 500  # the transform never sees more than a batch

    # counts reconcile; annotate_only keeps every row and counts what it would drop
    table = pq.read_table(out)
    words = _words(pq.read_table(shard).column("text").slice(0, limit)).to_pylist()
    reasons = Counter("empty" if not n else "short" for n in words if n < MIN_WORDS)
    assert stats.docs_in == len(words) and stats.docs_in == stats.docs_kept + sum(stats.dropped.values())
    if annotate_only:
        assert table.num_rows == stats.docs_kept == len(words) and stats.dropped == {}
        assert {k.removeprefix("would_drop_"): v for k, v in stats.extra.items()} == dict(reasons)
    else:
        assert table.num_rows == stats.docs_kept == len(words) - sum(reasons.values())
        assert stats.dropped == dict(reasons) and not stats.extra
    assert StageStats.load(out.parent / "_stats" / "in.json") == stats
    assert Manifest(out.parent).valid(out)


def test_an_empty_shard_has_one_empty_row_group(tmp_path: Path) -> None:
    src = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())}), src)
    out = tmp_path / "out" / "empty.parquet"
    stats = run_documents([str(src)], str(out), FilterConfig(), "words", WordCount(), columns=COLUMNS, drops=True)
    expected = whole_shard(src, tmp_path / "whole.parquet", annotate_only=False)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == expected
    assert stats.docs_in == 0 and pq.ParquetFile(out).num_row_groups == 1


def test_a_failing_transform_leaves_no_shard(shard: Path, tmp_path: Path) -> None:
    def fails(batch: pa.RecordBatch) -> BatchResult:
        raise RuntimeError("transform failed")

    out = tmp_path / "out" / "in.parquet"
    with pytest.raises(RuntimeError, match="transform failed"):
        run_documents([str(shard)], str(out), FilterConfig(), "words", fails, columns=COLUMNS)
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_input_that_is_not_parquet_names_the_file(tmp_path: Path) -> None:
    src = tmp_path / "notes.parquet"
    src.write_text("not parquet")
    with pytest.raises(ShardSchemaError, match="notes.parquet: not a readable Parquet file"):
        run_documents([str(src)], str(tmp_path / "out.parquet"), FilterConfig(), "words", WordCount(), columns=COLUMNS)


def test_invalid_utf8_text_is_repaired_and_counted(tmp_path: Path) -> None:
    """Arrow checks UTF-8 neither on write nor on read; such a text would stop the stage at its first to_pylist."""
    import numpy as np

    values = [b"fine text here", "caf\xe9 cp1252".encode("cp1252"), b"also fine"]
    offsets = np.cumsum([0, *map(len, values)]).astype(np.int32)
    text = pa.Array.from_buffers(
        pa.string(), 3, [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(b"".join(values))]
    )
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "c"], "text": text}), src)
    for annotate_only in (False, True):
        out = tmp_path / f"out-{annotate_only}" / "s.parquet"
        stats = run_documents(
            [str(src)], str(out), FilterConfig(), "words", WordCount(), columns=COLUMNS, drops=True,
            annotate_only=annotate_only,
        )  # fmt: skip
        assert stats.extra["invalid_utf8"] == 1
        if annotate_only:
            assert stats.docs_kept == 3 and stats.extra["would_drop_invalid_utf8"] == 1
            assert "caf\ufffd cp1252" in pq.read_table(out).column("text").to_pylist()
        else:
            assert stats.dropped["invalid_utf8"] == 1 and stats.docs_in == stats.docs_kept + sum(stats.dropped.values())
