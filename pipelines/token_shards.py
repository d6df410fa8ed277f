"""Token shards: llm.c-format .bin files, Parquet token shards, and the lineage index from token ranges to documents.

    lmpipe locate OUT_DIR/train_00000.bin 123456      # which document (id, url, WARC record) holds token 123456

Binary layout, as llm.c's dev/data/data_common.py writes it: a header of 256 little-endian int32 — magic, version,
token count, then zeros — followed by the tokens, little-endian.

    magic 20240520, version 1: uint16 tokens (vocab ≤ 65,536; llm.c's GPT-2 layout, read by train_gpt2 and nanoGPT)
    magic 20240801, version 7: uint32 tokens (larger vocabs; llm.c's own uint32 layout, its "llama-3" header)

Readers also accept magic 20240520 version 2 with uint32 tokens, which earlier lmpipe versions wrote. Every document
is preceded by the end-of-text token, as in llm.c's fineweb.py; a document may continue from one shard into the next.

Beside each ``{split}_{index:05d}.bin`` (split = train | val):

- ``{split}_{index:05d}.index.parquet`` — lineage, one row per document piece in the shard: ``id``, ``start`` /
  ``end`` (token positions in this shard, end exclusive; the piece includes the leading end-of-text token),
  ``doc_start`` (position of ``start`` within the document's own tokens counting that end-of-text token; > 0 only
  for a document continued from the previous shard), ``source`` (the input Parquet file, relative to this
  directory when local, so the data root can move) and ``row`` (its row there).
  Through ``source``/``row`` any token leads back to the input row, and from there to ``url``, ``warc_path`` and
  ``warc_offset`` (the WARC record).
- ``{split}_{index:05d}.tokens.parquet`` — ``id``, ``tokens`` (the document's tokens, no end-of-text) for every
  document that *starts* in that .bin shard: whole documents for users of Parquet / HF datasets.
"""

from __future__ import annotations

import bisect
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.errors import InputError
from pipelines.shards import publishing, sha256_file, write_table

HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
MAGIC = 20240520  # llm.c, GPT-2 layout: uint16 tokens
MAGIC_U32 = 20240801  # llm.c, "llama-3" layout: uint32 tokens
VERSION_U16, VERSION_U32 = 1, 7
LEGACY_U32 = (MAGIC, 2)  # lmpipe < 0.2 wrote uint32 shards under the uint16 magic with version 2
MAX_SHARD_TOKENS = 2**31 - 1  # the token count is an int32 in the header
# (magic, version) → token dtype
LAYOUTS: dict[tuple[int, int], np.dtype] = {
    (MAGIC, VERSION_U16): np.dtype("<u2"),
    (MAGIC_U32, VERSION_U32): np.dtype("<u4"),
    LEGACY_U32: np.dtype("<u4"),
}
LOCATE_COLUMNS = ("url", "warc_path", "warc_offset", "crawl_id", "fetch_time", "title")


class TokenShardError(InputError):
    """A .bin file that is not a valid token shard (or an offset outside it); the message names the file."""


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 while every id fits (vocab ≤ 65,536), else uint32."""
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


def shard_header(n_tokens: int, dtype: np.dtype) -> np.ndarray:
    """The 256 × int32 llm.c header for ``n_tokens`` tokens of ``dtype``."""
    if not 0 <= n_tokens <= MAX_SHARD_TOKENS:
        raise ValueError(f"{n_tokens} tokens do not fit an llm.c header (max {MAX_SHARD_TOKENS})")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1] = (MAGIC, VERSION_U16) if dtype.itemsize == 2 else (MAGIC_U32, VERSION_U32)
    header[2] = n_tokens
    return header


def write_token_bin(path: str | Path, tokens: np.ndarray, vocab_size: int) -> None:
    """Write one llm.c-format shard atomically (uint16 or uint32 by ``vocab_size``)."""
    dtype = token_dtype(vocab_size)
    tokens = np.asarray(tokens)
    if len(tokens) and (tokens.min() < 0 or tokens.max() >= max(vocab_size, 1)):
        raise ValueError(f"{path}: token ids must lie in [0, {vocab_size})")
    tmp = f"{path}.tmp-{os.getpid()}"
    with publishing(str(path), tmp, lambda: Path(tmp).unlink(missing_ok=True)):  # a full disk: DiskFullError(path)
        with open(tmp, "wb") as f:
            f.write(shard_header(len(tokens), dtype).tobytes())
            f.write(tokens.astype(dtype, copy=False).tobytes())
        os.replace(tmp, path)


def read_header(path: str | Path) -> tuple[int, int, int, np.dtype]:
    """(magic, version, token count, dtype) of a shard, validating the header against the file size."""
    path = str(path)
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if len(header) < HEADER_INTS:
        raise TokenShardError(f"{path}: not a token shard (shorter than the {HEADER_BYTES}-byte header)")
    magic, version, count = (int(x) for x in header[:3])
    if (magic, version) not in LAYOUTS:
        raise TokenShardError(f"{path}: not a token shard (magic {magic}, version {version})")
    dtype = LAYOUTS[(magic, version)]
    expected = HEADER_BYTES + count * dtype.itemsize
    if os.path.getsize(path) != expected:
        raise TokenShardError(f"{path}: size {os.path.getsize(path)} != {expected} for {count} tokens")
    return magic, version, count, dtype


def read_token_bin(path: str | Path) -> np.ndarray:
    """Memory-map the tokens of an llm.c-format shard, validating its header."""
    _, _, count, dtype = read_header(path)
    if count == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(str(path), dtype=dtype, mode="r", offset=HEADER_BYTES, shape=(count,))


def index_path(shard: str | Path) -> Path:
    """``train_00000.bin`` → ``train_00000.index.parquet`` (the lineage index beside it)."""
    shard = Path(shard)
    return shard.with_name(shard.name.removesuffix(".bin") + ".index.parquet")


def tokens_parquet_path(shard: str | Path) -> Path:
    """``train_00000.bin`` → ``train_00000.tokens.parquet``."""
    shard = Path(shard)
    return shard.with_name(shard.name.removesuffix(".bin") + ".tokens.parquet")


@dataclass
class DocumentBatch:
    """Encoded documents of one split, in stream order: each document's tokens start with the end-of-text token."""

    ids: list[str]
    sources: list[str]  # input file of each document
    rows: np.ndarray  # (D,) int64, row of each document in its source
    lengths: np.ndarray  # (D,) int64, tokens per document including its leading end-of-text token
    tokens: np.ndarray  # (sum(lengths),) the concatenated tokens


@dataclass
class ShardInfo:
    """One written .bin shard and its side files, as meta.json lists them."""

    split: str
    index: int
    path: Path
    tokens: int
    documents: int  # documents that start in this shard
    files: list[Path] = field(default_factory=list)  # the .bin, its index and its Parquet token shard
    sha256: dict[str, str] = field(default_factory=dict)  # file name → sha256


class TokenShardWriter:
    """Packs one split's documents into ``{split}_{index:05d}.bin`` shards of exactly ``shard_tokens`` tokens (the
    last one shorter), with the lineage index and the Parquet token shard of each.

    Tokens stream straight into the open shard's file and Parquet token rows into their file (a row group per
    batch), so memory stays at about one batch however large the shards; only the lineage rows of the open shard
    (one per document) are held until it closes.
    """

    def __init__(
        self, out_dir: str | Path, split: str, shard_tokens: int, vocab_size: int, *, parquet_tokens: bool = True
    ):
        if not 1 <= shard_tokens <= MAX_SHARD_TOKENS:
            raise ValueError(f"shard_tokens must be in [1, {MAX_SHARD_TOKENS}], got {shard_tokens}")
        self.dir = Path(out_dir)
        self.split = split
        self.shard_tokens = shard_tokens
        self.dtype = token_dtype(vocab_size)
        self.list_type = pa.list_(pa.uint16() if self.dtype.itemsize == 2 else pa.uint32())
        self.parquet_tokens = parquet_tokens
        self.position = 0  # tokens written to this split so far
        self.shards: list[ShardInfo] = []
        self._file: Any = None
        self._fill = 0
        self._index_rows: list[pa.Table] = []
        self._parquet: dict[int, tuple[pq.ParquetWriter, str, int]] = {}  # shard → (writer, tmp path, documents)
        self._index_schema = pa.schema(
            [
                ("id", pa.string()),
                ("start", pa.int64()),
                ("end", pa.int64()),
                ("doc_start", pa.int64()),
                ("source", pa.dictionary(pa.int32(), pa.string())),
                ("row", pa.int64()),
                ("_shard", pa.int64()),
            ]
        )
        self._docs_schema = pa.schema([("id", pa.string()), ("tokens", self.list_type)])

    def _path(self, index: int) -> Path:
        return self.dir / f"{self.split}_{index:05d}.bin"

    def _open(self) -> None:
        self._file = open(f"{self._path(len(self.shards))}.tmp-{os.getpid()}", "wb")
        self._file.write(b"\0" * HEADER_BYTES)
        self._fill = 0

    def add(self, batch: DocumentBatch) -> None:
        """Append the documents of ``batch`` (in order) to the split's stream of shards."""
        if not len(batch.ids):
            return
        size = self.shard_tokens
        lengths = batch.lengths.astype(np.int64)
        ends = self.position + np.cumsum(lengths)
        starts = ends - lengths
        self._route_pieces(batch, starts, ends)
        if self.parquet_tokens:
            self._route_documents(batch, starts)
        tokens = batch.tokens.astype(self.dtype, copy=False)
        while len(tokens):
            if self._file is None:
                self._open()
            take = min(size - self._fill, len(tokens))
            self._file.write(tokens[:take].tobytes())
            self._fill += take
            self.position += take
            tokens = tokens[take:]
            if self._fill == size:
                self._close_shard()

    def _route_pieces(self, batch: DocumentBatch, starts: np.ndarray, ends: np.ndarray) -> None:
        """Lineage rows: one per (document, shard) overlap; a long document yields one piece per shard it spans."""
        size = self.shard_tokens
        first, last = starts // size, (ends - 1) // size
        pieces = (last - first + 1).astype(np.int64)
        doc = np.repeat(np.arange(len(starts)), pieces)
        shard = first[doc] + (np.arange(len(doc)) - np.repeat(np.cumsum(pieces) - pieces, pieces))
        lo = np.maximum(starts[doc], shard * size)
        hi = np.minimum(ends[doc], (shard + 1) * size)
        ids = pa.array(batch.ids, pa.string()).take(pa.array(doc))
        table = pa.table(
            {
                "id": ids,
                "start": pa.array(lo - shard * size, pa.int64()),
                "end": pa.array(hi - shard * size, pa.int64()),
                "doc_start": pa.array(lo - starts[doc], pa.int64()),
                "source": pa.array(batch.sources, pa.string()).take(pa.array(doc)).dictionary_encode(),
                "row": pa.array(batch.rows[doc], pa.int64()),
                "_shard": pa.array(shard, pa.int64()),
            }
        )
        self._index_rows.append(table)

    def _route_documents(self, batch: DocumentBatch, starts: np.ndarray) -> None:
        """Parquet token rows (document tokens without the end-of-text token) into the file of the shard each
        document starts in; documents arrive in order, so each shard's rows are one contiguous slice."""
        offsets = np.concatenate([[0], np.cumsum(batch.lengths)]).astype(np.int64)
        keep = np.ones(len(batch.tokens), dtype=bool)
        keep[offsets[:-1]] = False  # drop each document's leading end-of-text token
        values = pa.array(batch.tokens[keep].astype(self.dtype.newbyteorder("="), copy=False))
        doc_offsets = pa.array((offsets - np.arange(len(offsets))).astype(np.int32))
        tokens = pa.ListArray.from_arrays(doc_offsets, values, type=self.list_type)
        table = pa.table({"id": pa.array(batch.ids, pa.string()), "tokens": tokens}, schema=self._docs_schema)
        first = starts // self.shard_tokens
        for shard in np.unique(first).tolist():
            lo, hi = np.searchsorted(first, shard, side="left"), np.searchsorted(first, shard, side="right")
            if shard not in self._parquet:
                tmp = f"{tokens_parquet_path(self._path(shard))}.tmp-{os.getpid()}"
                self._parquet[shard] = (pq.ParquetWriter(tmp, self._docs_schema, compression="zstd"), tmp, 0)
            writer, tmp, n = self._parquet[shard]
            writer.write_table(table.slice(lo, hi - lo))
            self._parquet[shard] = (writer, tmp, n + int(hi - lo))

    def _finish_parquet(self, index: int) -> tuple[Path, int]:
        """Close the Parquet token shard of .bin shard ``index`` (empty when no document starts there)."""
        path = tokens_parquet_path(self._path(index))
        if index not in self._parquet:
            tmp = f"{path}.tmp-{os.getpid()}"
            self._parquet[index] = (pq.ParquetWriter(tmp, self._docs_schema, compression="zstd"), tmp, 0)
        writer, tmp, n = self._parquet.pop(index)
        writer.close()
        os.replace(tmp, path)
        return path, n

    @staticmethod
    def _take(parts: list[pa.Table], shard: int, schema: pa.Schema) -> tuple[pa.Table, list[pa.Table]]:
        """Rows of ``parts`` belonging to ``shard`` (without the routing column), and the rest kept for later."""
        table = pa.concat_tables(parts) if parts else schema.empty_table()
        mine = table.filter(pc.equal(table["_shard"], shard)).drop_columns(["_shard"])
        rest = table.filter(pc.greater(table["_shard"], shard))
        return mine, [rest] if rest.num_rows else []

    def _close_shard(self) -> None:
        index = len(self.shards)
        path = self._path(index)
        f, self._file = self._file, None
        f.seek(0)
        f.write(shard_header(self._fill, self.dtype).tobytes())
        f.close()
        os.replace(f.name, path)
        digest = hashlib.sha256()
        with open(path, "rb") as g:
            while block := g.read(1 << 22):
                digest.update(block)
        info = ShardInfo(self.split, index, path, self._fill, 0, [path], {path.name: digest.hexdigest()})
        lineage, self._index_rows = self._take(self._index_rows, index, self._index_schema)
        # dictionary-encoded sources from different batches have different dictionaries: unify before writing
        facts = write_table(lineage.unify_dictionaries().combine_chunks(), index_path(path))
        info.files.append(index_path(path))
        info.sha256[index_path(path).name] = facts["sha256"]
        if self.parquet_tokens:
            parquet, info.documents = self._finish_parquet(index)
            info.files.append(parquet)
            info.sha256[parquet.name] = sha256_file(parquet)
        else:
            info.documents = int(pc.sum(pc.equal(lineage["doc_start"], 0)).as_py() or 0)
        self.shards.append(info)

    @property
    def current_path(self) -> Path:
        """The .bin shard being written (the next one when none is open)."""
        return self._path(len(self.shards))

    def abort(self) -> None:
        """After a failed write: close and remove the open .bin and Parquet tmp files (errors ignored)."""
        if self._file is not None:
            self._file.close()
            Path(self._file.name).unlink(missing_ok=True)
            self._file = None
        for writer, tmp, _ in self._parquet.values():
            try:
                writer.close()
            except OSError:
                pass
            Path(tmp).unlink(missing_ok=True)
        self._parquet.clear()

    def close(self) -> list[ShardInfo]:
        """Write the last (partial) shard; return every shard written."""
        if self._file is not None and self._fill:
            self._close_shard()
        elif self._file is not None:
            self._file.close()
            os.unlink(self._file.name)
            self._file = None
        return self.shards


def locate(shard: str | Path, offset: int) -> dict[str, Any]:
    """The document holding token ``offset`` of ``shard`` (0 = the first token after the header).

    Returns the lineage fields (id, source, row, doc_start → ``token_in_document``) and, read from the source Parquet
    row, every one of ``url``, ``warc_path``, ``warc_offset``, … that the source carries. Raises TokenShardError for a
    bad shard or an offset outside it, FileNotFoundError when the lineage index is missing.
    """
    shard = Path(shard)
    _, _, count, _ = read_header(shard)
    if not 0 <= offset < count:
        raise TokenShardError(f"{shard}: offset {offset} outside the shard's {count} tokens")
    idx = index_path(shard)
    if not idx.exists():
        raise FileNotFoundError(f"{idx}: no lineage index beside {shard.name}")
    table = pq.read_table(idx)
    starts = table.column("start").to_numpy()
    i = bisect.bisect_right(starts.tolist(), offset) - 1
    if i < 0 or offset >= table.column("end")[i].as_py():
        raise TokenShardError(f"{idx}: no document covers offset {offset}")
    row = {k: table.column(k)[i].as_py() for k in ("id", "start", "end", "doc_start", "source", "row")}
    result: dict[str, Any] = {
        "shard": str(shard),
        "offset": offset,
        "id": row["id"],
        "token_in_document": row["doc_start"] + offset - row["start"],
        "source": row["source"],
        "row": row["row"],
    }
    tok_path = shard.parent / "tokenizer.json"
    if tok_path.exists():
        from tokenizers import Tokenizer

        tokens = read_token_bin(shard)
        tok = Tokenizer.from_file(str(tok_path))
        result["token"] = tok.id_to_token(int(tokens[offset]))
        lo, hi = max(row["start"], offset - 8), min(row["end"], offset + 9)
        result["context"] = tok.decode(tokens[lo:hi].tolist(), skip_special_tokens=True)
    source = row["source"]
    if "://" not in source and not os.path.isabs(source):  # recorded relative to the token directory
        source = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(shard)), source))
        result["source"] = source
    result.update(_source_row(source, row["row"], row["id"]))
    return result


def _source_row(source: str, row: int, doc_id: str) -> dict[str, Any]:
    """The lineage columns of row ``row`` of the Parquet file ``source`` (whatever of LOCATE_COLUMNS it has)."""
    try:
        with fsspec.open(source, "rb") as f:
            pf = pq.ParquetFile(f)
            names = set(pf.schema_arrow.names)
            columns = ["id", *[c for c in LOCATE_COLUMNS if c in names]]
            group, first = 0, 0
            while group < pf.num_row_groups and first + pf.metadata.row_group(group).num_rows <= row:
                first += pf.metadata.row_group(group).num_rows
                group += 1
            if group == pf.num_row_groups:
                return {"source_status": f"row {row} beyond the {first} rows of {source}"}
            values = pf.read_row_group(group, columns=columns).slice(row - first, 1).to_pylist()[0]
    except FileNotFoundError:
        return {"source_status": f"{source} no longer exists"}
    if values.pop("id") != doc_id:
        return {"source_status": f"{source} changed since tokenization (row {row} holds another document)"}
    return {k: (str(v) if k == "fetch_time" and v is not None else v) for k, v in values.items()}
