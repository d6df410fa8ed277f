"""The tokenize stage: byte-level BPE trained on the cleaned corpus (tokenizers), then streaming multi-core encoding
into llm.c-format .bin shards, Parquet token shards and a lineage index (see pipelines/token_shards.py).

    lmpipe task tokenize --input A.parquet [B.parquet …] --output OUT_DIR [--vocab-size N]

Tokenizer: BPE over bytes with the GPT-4 (cl100k) pre-tokenization split, the end-of-text token (id 0) and any
extra special tokens; trained on ``train_bytes`` bytes of train-split documents chosen by a seeded hash of their id
(so the same documents are chosen on every run), or loaded from ``tokenizer_file``. Saved as ``tokenizer.json``;
its sha256 is in ``meta.json``. Any ``transformers.PreTrainedTokenizerFast(tokenizer_file=…)`` loads it.

Encoding: inputs stream in record batches; ``encode_batch_fast`` (Rust, all cores, GIL released) encodes one batch
while the previous one is written. Each document is preceded by the end-of-text token, so the id of that token
occurs only as the separator: a literal "<|endoftext|>" inside a text is encoded as ordinary text. Documents go to
``val`` or ``train`` by a hash of (seed, id), so a document keeps its split across reruns and refreshes; with
``shuffle_seed`` the documents of each split are ordered by a hash of (shuffle_seed, id) before they are packed, a
global shuffle across shards that leaves the train/val split alone.

Text policy (round trip): decoding a document's tokens gives back its text exactly. Parquet strings are UTF-8, so
no surrogate code point can arrive from a shard; a Python ``str`` given to ``encode_documents`` may hold them
(e.g. from ``json.loads`` of a broken escape): a valid high+low pair is joined into its code point and each lone
surrogate becomes U+FFFD (``str.encode("utf-16", "surrogatepass")`` then ``decode("utf-16", "replace")``).
Null or empty texts are dropped as ``empty_text``, null ids as ``missing_id``.

Outputs in OUT_DIR: tokenizer.json, {train,val}_{index:05d}.bin (+ .index.parquet lineage, + .tokens.parquet),
meta.json (shards, token counts, sha256, tokenizer hash, config, sources), _manifest.json, _stats/all.json.
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import json
import logging
import os
import re
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from pipelines import CODE_VERSION
from pipelines.config import TokenizeConfig
from pipelines.errors import DISK_FULL_ERRNOS, DiskFullError
from pipelines.registry import Call
from pipelines.shards import (
    Manifest,
    ShardSchemaError,
    ShardWriter,
    atomic_write_bytes,
    config_hash,
    fingerprint,
    free_bytes,
    sha256_file,
    shard_id,
)
from pipelines.stats import StageStats
from pipelines.token_shards import (  # noqa: F401  (the format's names, re-exported for readers of token shards)
    HEADER_INTS,
    MAGIC,
    MAGIC_U32,
    VERSION_U16,
    VERSION_U32,
    DocumentBatch,
    ShardInfo,
    TokenShardError,
    TokenShardWriter,
    read_token_bin,
    shard_header,
    token_dtype,
    write_token_bin,
)

log = logging.getLogger(__name__)

# GPT-4 (cl100k) pre-tokenization split, as used by tiktoken and nanochat.
GPT4_SPLIT = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)
BATCH_ROWS = 512  # documents per encode_batch_fast call: enough for rayon to balance two cores, small enough to overlap
IN_FLIGHT = 2  # batches encoding at once (see _encode_stream)
SPLITS = ("train", "val")


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def split_of(doc_id: str, cfg: TokenizeConfig) -> str:
    """'val' or 'train', stable across reruns: a hash of (seed, id) against val_fraction."""
    return "val" if _hash64(f"{cfg.seed}:{doc_id}") / 2**64 < cfg.val_fraction else "train"


def build_tokenizer() -> Tokenizer:
    """An untrained byte-level BPE with the GPT-4 split (no normalizer: the text is kept byte for byte)."""
    tok = Tokenizer(models.BPE(byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(GPT4_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def train_tokenizer(texts: Iterable[str], cfg: TokenizeConfig) -> Tokenizer:
    """Train a byte-level BPE on ``texts``; the end-of-text token gets id 0, cfg.special_tokens the next ids."""
    tok = build_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=[cfg.eot_token, *cfg.special_tokens],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def load_tokenizer(path: str | Path, eot_token: str) -> Tokenizer:
    """A tokenizer.json to encode with; it must know the end-of-text token."""
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a bare Exception for a malformed file
        raise TokenShardError(f"{path}: not a tokenizers tokenizer.json ({e})") from e
    if tok.token_to_id(eot_token) is None:
        raise TokenShardError(f"{path}: the tokenizer has no end-of-text token {eot_token!r}")
    return tok


def replace_surrogates(text: str) -> str:
    """Join valid surrogate pairs into their code point and replace each lone surrogate with U+FFFD."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def encode_documents(tok: Tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text: no special token added, and special-token strings inside a text encoded as text.

    Runs on all cores (tokenizers' rayon pool) without the GIL. ``encode_batch_fast``: the same ids as
    ``encode_batch`` without the character offsets, which the shards do not use; 1.25x (langid-75) to 1.43x
    (dolma-cc) less CPU, each run in a fresh process (bench/tokenize_throughput.py). Texts holding surrogate code
    points, which UTF-8 cannot carry, are cleaned by ``replace_surrogates`` first (only then: the check costs nothing
    otherwise).
    """
    if not tok.encode_special_tokens:  # a setter call would fail while another thread encodes with ``tok``
        tok.encode_special_tokens = True
    try:
        encodings = tok.encode_batch_fast(texts, add_special_tokens=False)
    except TypeError:  # tokenizers rejects a str that is not valid UTF-8 as a type error
        if not all(isinstance(t, str) for t in texts):
            raise
        encodings = tok.encode_batch_fast([replace_surrogates(t) for t in texts], add_special_tokens=False)
    return [e.ids for e in encodings]


def iter_documents(
    inputs: list[str], columns: list[str], *, limit: int | None = None, batch_rows: int = BATCH_ROWS
) -> Iterator[tuple[str, int, pa.RecordBatch]]:
    """(source, row of the batch's first document in it, batch) over the inputs in order, at most ``limit`` rows."""
    left = limit
    for source in inputs:
        if left is not None and left <= 0:
            return
        with fsspec.open(source, "rb") as f:
            try:
                pf = pq.ParquetFile(f)
            except (pa.ArrowInvalid, OSError) as e:
                raise ShardSchemaError(source, f"not a readable Parquet file ({e})") from e
            for col in ("id", "text"):
                if col not in pf.schema_arrow.names:
                    raise ShardSchemaError(source, f"missing required column '{col}' (has {pf.schema_arrow.names})")
                kind = pf.schema_arrow.field(col).type
                if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
                    raise ShardSchemaError(source, f"column '{col}' must be string, is {kind}")
            row = 0
            for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
                if left is not None:
                    if left <= 0:
                        return
                    batch = batch.slice(0, left)
                    left -= batch.num_rows
                yield source, row, batch
                row += batch.num_rows


def _source_name(path: str, out: Path) -> str:
    """The input as the lineage index records it: local files relative to the token directory (``../pii/x.parquet``),
    so a data root can move or be copied and its lineage still resolves (``locate`` joins it to the shard's
    directory), and two runs over the same data in different places write identical bytes; URLs as they are."""
    return path if "://" in path else os.path.relpath(os.path.abspath(path), os.path.abspath(out))


def _per_input(inputs: list[str], columns: list[str], limit: int | None) -> Iterator[tuple[str, int, pa.RecordBatch]]:
    """iter_documents over each input in turn, at most ``limit`` rows of each (as every data stage counts it)."""
    for source in inputs:
        yield from iter_documents([source], columns, limit=limit)


def training_sample(inputs: list[str], cfg: TokenizeConfig, *, limit: int | None = None) -> Iterator[str]:
    """The texts the tokenizer is trained on: train-split documents with the smallest hash of (seed, id) until
    ``cfg.train_bytes`` UTF-8 bytes. Two streaming passes (hashes and lengths, then texts): memory is a few bytes
    per document, and the choice does not depend on the order or sharding of the inputs."""
    keys, sizes, train = [], [], []
    for _, _, batch in _per_input(inputs, ["id", "text"], limit):
        ids = batch.column("id").to_pylist()
        sizes.append(pc.fill_null(pc.binary_length(batch.column("text")), 0).to_numpy())
        keys.append(np.array([_hash64(f"{cfg.seed}/{i}") if i is not None else 0 for i in ids], dtype=np.uint64))
        train.append(np.array([i is not None and split_of(i, cfg) == "train" for i in ids], dtype=bool))
    if not keys:
        return
    key, size, in_train = np.concatenate(keys), np.concatenate(sizes).astype(np.int64), np.concatenate(train)
    candidate = (size > 0) & (in_train if (in_train & (size > 0)).any() else True)  # tiny inputs: all val
    order = np.flatnonzero(candidate)[np.argsort(key[candidate], kind="stable")]
    cut = int(np.searchsorted(np.cumsum(size[order]), cfg.train_bytes))  # the document that reaches the budget
    chosen = np.zeros(len(key), dtype=bool)
    chosen[order[: cut + 1]] = True
    log.info("tokenizer training sample: %d documents, %d bytes", chosen.sum(), size[chosen].sum())
    pos = 0
    for _, _, batch in _per_input(inputs, ["text"], limit):
        mask = chosen[pos : pos + batch.num_rows]
        pos += batch.num_rows
        if mask.any():
            yield from batch.column("text").filter(pa.array(mask)).to_pylist()


class _InputBatch:
    """One record batch of an input: the documents to encode (null ids and empty texts dropped and counted here),
    with their rows; ``split`` packs their token ids into one DocumentBatch per split."""

    def __init__(self, source: str, first_row: int, batch: pa.RecordBatch, stats: StageStats) -> None:
        ids = batch.column("id").to_pylist()
        texts = batch.column("text").to_pylist()
        stats.docs_in += len(ids)
        stats.bytes_in += int(pc.sum(pc.binary_length(batch.column("text"))).as_py() or 0)
        self.source = source
        self.rows: list[int] = []
        self.ids: list[str] = []
        self.texts: list[str] = []
        for i, (doc_id, text) in enumerate(zip(ids, texts, strict=True)):
            if doc_id is None:
                stats.drop("missing_id")
            elif not text:
                stats.drop("empty_text")
            else:
                self.rows.append(first_row + i)
                self.ids.append(doc_id)
                self.texts.append(text)

    def split(self, token_ids: list[list[int]], eot: int, dtype: np.dtype, cfg: TokenizeConfig) -> dict[str, Any]:
        """Per split, a DocumentBatch: every document's tokens preceded by the end-of-text token."""
        n = len(token_ids)
        lengths = np.fromiter(map(len, token_ids), dtype=np.int64, count=n) + 1
        tokens = np.empty(int(lengths.sum()), dtype=dtype)
        starts = np.cumsum(lengths) - lengths
        is_text = np.ones(len(tokens), dtype=bool)
        is_text[starts] = False
        tokens[starts] = eot
        tokens[is_text] = np.fromiter(itertools.chain.from_iterable(token_ids), dtype=dtype, count=len(tokens) - n)
        val = np.array([split_of(i, cfg) == "val" for i in self.ids], dtype=bool)
        rows = np.asarray(self.rows, dtype=np.int64)
        out = {}
        for name, mask in (("train", ~val), ("val", val)):
            if mask.any():
                pick = np.flatnonzero(mask)
                out[name] = DocumentBatch(
                    ids=[self.ids[j] for j in pick],
                    sources=[self.source] * len(pick),
                    rows=rows[pick],
                    lengths=lengths[pick],
                    tokens=tokens if mask.all() else tokens[np.repeat(mask, lengths)],
                )
        return out


def _encode_stream(
    tok: Tokenizer, batches: Iterator[tuple[str, int, pa.RecordBatch]], stats: StageStats, out: Path
) -> Iterator[tuple[_InputBatch, list[list[int]]]]:
    """Encoded batches in input order. IN_FLIGHT batches are encoding at any time in worker threads (the GIL is
    released while Rust encodes), so the cores stay busy while the caller reads and packs, and while one batch's
    last long documents finish on one core, the next batch's run on the other."""
    with ThreadPoolExecutor(max_workers=IN_FLIGHT, thread_name_prefix="encode") as pool:
        pending: deque = deque()
        for source, first_row, batch in batches:
            docs = _InputBatch(_source_name(source, out), first_row, batch, stats)
            pending.append((docs, pool.submit(encode_documents, tok, docs.texts)))
            if len(pending) >= IN_FLIGHT:
                docs, future = pending.popleft()
                yield docs, future.result()
        while pending:
            docs, future = pending.popleft()
            yield docs, future.result()


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector. The encode loop makes one list of token ids per document, kept until
    its batch is packed; with the collector on, those lists reach the older generations and set off full collections
    over every object in the process. The loop makes no reference cycles, so collecting can wait for its end: 4 %
    more throughput on langid-75 (10 interleaved runs, fresh processes). Process-wide while it lasts."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _Spool:
    """Shuffle support: one split's encoded documents on disk (tokens) and in memory (lineage), to be re-packed in
    a seeded hash order of their ids once every input has been read."""

    def __init__(self, path: Path, dtype: np.dtype) -> None:
        self.path, self.dtype = path, dtype
        self.file = open(path, "wb")
        self.ids: list[str] = []
        self.sources: list[str] = []
        self.rows: list[np.ndarray] = []
        self.lengths: list[np.ndarray] = []

    def add(self, batch: DocumentBatch) -> None:
        self.file.write(batch.tokens.astype(self.dtype, copy=False).tobytes())
        self.ids += batch.ids
        self.sources += batch.sources
        self.rows.append(batch.rows)
        self.lengths.append(batch.lengths)

    def replay(self, seed: int, batch_docs: int = 4096) -> Iterator[DocumentBatch]:
        self.file.close()
        if not self.ids:
            return
        lengths = np.concatenate(self.lengths)
        rows = np.concatenate(self.rows)
        offsets = np.cumsum(lengths) - lengths
        tokens = np.memmap(self.path, dtype=self.dtype, mode="r")
        order = np.argsort(np.array([_hash64(f"shuffle:{seed}:{i}") for i in self.ids], dtype=np.uint64), kind="stable")
        for lo in range(0, len(order), batch_docs):
            pick = order[lo : lo + batch_docs]
            n = lengths[pick]
            # gather the picked documents' token ranges: start of each range + position inside it
            gather = np.repeat(offsets[pick] - (np.cumsum(n) - n), n) + np.arange(int(n.sum()))
            yield DocumentBatch(
                ids=[self.ids[j] for j in pick],
                sources=[self.sources[j] for j in pick],
                rows=rows[pick],
                lengths=n,
                tokens=np.asarray(tokens[gather]),
            )
        del tokens
        self.path.unlink()


# What a tokenize run writes into OUT_DIR (and an earlier lmpipe wrote: {split}_tokens.parquet), temporaries included
OUTPUT_NAME = re.compile(
    r"(train|val)_(\d{5}\.(bin|index\.parquet|tokens\.parquet)|tokens\.parquet)(\.tmp-.*)?|\.spool-(train|val)"
)


def _clear_outputs(out: Path) -> None:
    """Remove the token shards an earlier run left in OUT_DIR, and their manifest entries (shards of another size or
    config would otherwise linger); the tokenizer, phase 1's output, stays."""
    (out / "meta.json").unlink(missing_ok=True)  # first: without it the directory never counts as done
    Manifest(out).forget(OUTPUT_NAME.fullmatch)
    for path in out.iterdir():
        if path.is_file() and OUTPUT_NAME.fullmatch(path.name):
            path.unlink()


ENCODED = "_encoded"  # phase 2's per-shard token files under OUT_DIR
SOURCE_KEY = b"lmpipe.source"


def plan_tokenizer(sources: list[str], previous: list[str], out_dir: str, cfg: TokenizeConfig) -> list[Call]:
    """Phase 1: one task over all shards (the training sample is drawn from all of them)."""
    return [Call(list(sources), str(Path(out_dir) / "tokenizer.json"))]


def plan_encode(sources: list[str], previous: list[str], out_dir: str, cfg: TokenizeConfig) -> list[Call]:
    """Phase 2: one task per shard, with the tokenizer."""
    tok = str(Path(out_dir) / "tokenizer.json")
    return [Call([src, tok], str(Path(out_dir) / ENCODED / f"{shard_id(src)}.parquet")) for src in sources]


def plan_index(sources: list[str], previous: list[str], out_dir: str, cfg: TokenizeConfig) -> list[Call]:
    """Phase 3: one task packing every encoded shard, in input order, into the token shards and meta.json."""
    return [Call([*previous, str(Path(out_dir) / "tokenizer.json")], out_dir)]


def prepare_tokenizer(
    inputs: list[str], tok_path: Path, given: Path | None, cfg: TokenizeConfig, *, limit: int | None = None
) -> Tokenizer:
    """Load ``given`` (copied to ``tok_path``) or train a BPE on the training sample (saved there)."""
    # atomic_write_bytes: a process killed while writing leaves no partial tokenizer.json
    if given is not None:
        tok = load_tokenizer(given, cfg.eot_token)
        if given.resolve() != tok_path.resolve():
            atomic_write_bytes(tok_path, given.read_bytes())
    else:
        tok = train_tokenizer(training_sample(inputs, cfg, limit=limit), cfg)
        atomic_write_bytes(tok_path, tok.to_str(pretty=True).encode())  # the bytes Tokenizer.save writes
    return tok


def run_tokenizer(inputs: list[str], output: str, cfg: TokenizeConfig, *, limit: int | None = None) -> StageStats:
    """Phase 1 (reduce): load ``cfg.tokenizer_file`` or train a BPE on the training sample; save it as ``output``."""
    t0 = time.monotonic()
    tok_path = Path(output)
    tok_path.parent.mkdir(parents=True, exist_ok=True)
    tok = prepare_tokenizer(
        list(inputs), tok_path, Path(cfg.tokenizer_file) if cfg.tokenizer_file else None, cfg, limit=limit
    )
    facts = {"bytes": tok_path.stat().st_size, "sha256": sha256_file(tok_path)}
    Manifest(tok_path.parent).record(tok_path, facts, config_hash(cfg), list(inputs))
    stats = StageStats(stage="tokenize_tokenizer", shard="tokenizer", seconds=time.monotonic() - t0)
    stats.extra.update({"vocab_size": tok.get_vocab_size(), "tokenizer_seconds": round(stats.seconds, 3)})
    return stats


def _encoded_schema(dtype: np.dtype) -> pa.Schema:
    tokens = pa.large_list(pa.uint16() if dtype.itemsize == 2 else pa.uint32())
    fields = [("id", pa.string()), ("row", pa.int64()), ("batch", pa.int32()), ("val", pa.bool_()), ("tokens", tokens)]
    return pa.schema(fields)


def _encoded_rows(batch: DocumentBatch, number: int, val: bool, schema: pa.Schema) -> pa.Table:
    """One split's documents of input batch ``number`` as rows of an encoded shard (tokens with their separator)."""
    offsets = pa.array(np.r_[0, np.cumsum(batch.lengths)].astype(np.int64))
    tokens = pa.LargeListArray.from_arrays(offsets, pa.array(batch.tokens), type=schema.field("tokens").type)
    n = len(batch.ids)
    columns = [batch.ids, batch.rows, np.full(n, number, dtype=np.int32), np.full(n, val), tokens]
    return pa.table(columns, schema=schema)


def run_encode(inputs: list[str], output: str, cfg: TokenizeConfig, *, limit: int | None = None) -> StageStats:
    """Phase 2 (map, per shard): encode the shard batch by batch on all cores; every kept document's tokens (after
    its end-of-text separator), split and place in the input → ``output``. Null ids and empty texts are counted."""
    t0 = time.monotonic()
    source, tok_path = inputs
    out = Path(output).parent.parent  # the token directory: lineage names the source relative to it
    tok = load_tokenizer(tok_path, cfg.eot_token)
    tok.encode_special_tokens = True  # before the encoding threads start (see encode_documents)
    eot, dtype = tok.token_to_id(cfg.eot_token), token_dtype(tok.get_vocab_size())
    schema = _encoded_schema(dtype).with_metadata({SOURCE_KEY: _source_name(source, out)})  # as lineage names it
    stats = StageStats(stage="tokenize_encode", shard=shard_id(source))
    batches = iter_documents([source], ["id", "text"], limit=limit)
    with ShardWriter(output, schema) as writer, _gc_paused():
        for number, (docs, token_ids) in enumerate(_encode_stream(tok, batches, stats, out)):
            for split, batch in docs.split(token_ids, eot, dtype, cfg).items():
                stats.docs_kept += len(batch.ids)
                stats.tokens += len(batch.tokens)
                writer.write(_encoded_rows(batch, number, split == "val", schema))
        stats.seconds = time.monotonic() - t0
        return writer.commit(stats, cfg, list(inputs))


def _replay(path: str, out: Path, dtype: np.dtype) -> Iterator[tuple[str, DocumentBatch]]:
    """An encoded shard's documents as the encoder packed them: per input batch, per split, a DocumentBatch."""
    pf = pq.ParquetFile(path)
    source = pf.schema_arrow.metadata[SOURCE_KEY].decode()
    table = pf.read()
    if not table.num_rows:
        return
    numbers, val = table.column("batch").to_numpy(), table.column("val").to_numpy(zero_copy_only=False)
    edges = np.flatnonzero(np.r_[True, (numbers[1:] != numbers[:-1]) | (val[1:] != val[:-1]), True])
    for lo, hi in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
        rows = table.slice(lo, hi - lo)
        tokens = rows.column("tokens").combine_chunks()
        yield (
            ("val" if val[lo] else "train"),
            DocumentBatch(
                ids=rows.column("id").to_pylist(),
                sources=[source] * (hi - lo),
                rows=rows.column("row").to_numpy(),
                lengths=pc.list_value_length(tokens).to_numpy().astype(np.int64),
                tokens=tokens.flatten().to_numpy().astype(dtype, copy=False),
            ),
        )


def pack_shards(encoded: list[str], out: Path, vocab: int, cfg: TokenizeConfig) -> list[ShardInfo]:
    """Phase 3's packing: each split's documents, in input order, into token shards with their lineage; with
    ``shuffle_seed`` spooled first and packed in hash order."""
    dtype = token_dtype(vocab)
    writers = {s: TokenShardWriter(out, s, cfg.shard_tokens, vocab, parquet_tokens=cfg.parquet_tokens) for s in SPLITS}
    sinks: dict[str, Any] = (
        {s: _Spool(out / f".spool-{s}", dtype) for s in SPLITS} if cfg.shuffle_seed is not None else writers
    )
    split = SPLITS[0]
    try:
        for path in encoded:
            for split, batch in _replay(path, out, dtype):
                sinks[split].add(batch)
        if cfg.shuffle_seed is not None:
            for split in SPLITS:
                for batch in sinks[split].replay(cfg.shuffle_seed):
                    writers[split].add(batch)
        return [info for split in SPLITS for info in writers[split].close()]
    except OSError as e:
        for writer in writers.values():
            writer.abort()
        if isinstance(e, DiskFullError) or e.errno not in DISK_FULL_ERRNOS:
            raise
        target = str(writers[split].current_path)  # the shard being written when the disk filled up
        raise DiskFullError(target, free_bytes(target), e) from e


def _record_manifest(out: Path, shards: list[ShardInfo], chash: str, inputs: list[str]) -> None:
    """Every shard file in OUT_DIR's manifest (phase 1 recorded the tokenizer)."""
    manifest = Manifest(out)
    for info in shards:
        for f in info.files:
            facts = {"bytes": f.stat().st_size, "sha256": info.sha256[f.name]}
            if f == info.path:
                facts["tokens"] = info.tokens
            manifest.record(f, facts, chash, inputs)


def _format_meta(dtype: np.dtype) -> dict[str, Any]:
    """meta.json's description of the .bin layout."""
    return {
        "layout": "llm.c: 256 x int32 header (magic, version, token count), then little-endian tokens",
        "magic": MAGIC if dtype.itemsize == 2 else MAGIC_U32,
        "version": VERSION_U16 if dtype.itemsize == 2 else VERSION_U32,
        "dtype": "uint16" if dtype.itemsize == 2 else "uint32",
        "separator": "end-of-text token before every document",
    }


def _shard_meta(info: ShardInfo) -> dict[str, Any]:
    """meta.json's entry of one .bin shard."""
    return {
        "file": info.path.name,
        "split": info.split,
        "tokens": info.tokens,
        "documents": info.documents,
        "bytes": info.path.stat().st_size,
        "sha256": info.sha256[info.path.name],
        "index": info.files[1].name,
        "parquet": info.files[2].name if len(info.files) > 2 else None,
    }


def write_token_index(
    tok: Tokenizer,
    shards: list[ShardInfo],
    out: Path,
    cfg: TokenizeConfig,
    stats: StageStats,
    sources: list[str],
    inputs: list[str],
) -> dict[str, Any]:
    """The manifest entries, then meta.json (shards, token counts, hashes, config, sources); returns meta."""
    tok_path = out / "tokenizer.json"
    eot = tok.token_to_id(cfg.eot_token)
    vocab = tok.get_vocab_size()
    tok_hash = sha256_file(tok_path)
    chash = config_hash(cfg)
    _record_manifest(out, shards, chash, inputs)

    per_split = {s: [i for i in shards if i.split == s] for s in SPLITS}
    doc_tokens = stats.tokens - stats.docs_kept  # without the separators
    kept_bytes = stats.bytes_in  # null/empty texts have no bytes, so every byte read belongs to a kept document
    meta = {
        "format": _format_meta(token_dtype(vocab)),
        "tokenizer": {"file": tok_path.name, "sha256": tok_hash, "vocab_size": vocab, "eot_id": eot},
        "tokenizer_sha256": tok_hash,
        "vocab_size": vocab,
        "eot_id": eot,
        "eot_token": cfg.eot_token,
        "tokens": {s: sum(i.tokens for i in per_split[s]) for s in SPLITS},
        "documents": {s: sum(i.documents for i in per_split[s]) for s in SPLITS},
        "bytes_per_token": round(kept_bytes / doc_tokens, 4) if doc_tokens else None,
        "shards": [_shard_meta(i) for i in shards],
        "config": cfg.model_dump(mode="json"),
        "config_hash": chash,
        "code_version": CODE_VERSION,
        "sources": [{"path": _source_name(p, out), "fingerprint": fingerprint(p)} for p in sources],
    }
    atomic_write_bytes(out / "meta.json", json.dumps(meta, indent=2).encode())  # last: it marks the output complete
    return meta


def _encoded_stats(encoded: list[str]) -> tuple[StageStats, list[str]]:
    """The encoded shards' counts summed (phase 2 saved them beside each shard), and their sources in order."""
    stats = StageStats(stage="tokenize", shard="all")
    sources = []
    for path in encoded:
        shard = StageStats.load(Path(path).parent / "_stats" / f"{shard_id(path)}.json")
        for field in ("docs_in", "docs_kept", "bytes_in", "tokens"):
            setattr(stats, field, getattr(stats, field) + getattr(shard, field))
        for reason, n in shard.dropped.items():
            stats.drop(reason, n)
        stats.extra["encode_seconds"] = round(float(stats.extra.get("encode_seconds", 0.0)) + shard.seconds, 3)
        name = pq.read_schema(path).metadata[SOURCE_KEY].decode()  # relative to the token directory, or a URL
        sources.append(name if "://" in name else os.path.normpath(Path(path).parent.parent / name))
    return stats, sources


def run_index(inputs: list[str], output: str, cfg: TokenizeConfig, *, limit: int | None = None) -> StageStats:
    """Phase 3 (reduce): pack the encoded shards into train/val token shards with their lineage, then meta.json."""
    t0 = time.monotonic()
    *encoded, tok_path = inputs
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    _clear_outputs(out)
    tok = load_tokenizer(tok_path, cfg.eot_token)
    stats, sources = _encoded_stats(encoded)
    shards = pack_shards(encoded, out, tok.get_vocab_size(), cfg)
    meta = write_token_index(tok, shards, out, cfg, stats, sources, list(inputs))

    stats.bytes_out = sum(i.path.stat().st_size for i in shards)
    stats.seconds = time.monotonic() - t0
    encode = float(stats.extra["encode_seconds"]) if encoded else 0.0
    stats.extra.update(
        {
            "vocab_size": meta["vocab_size"],
            "tokenizer_sha256": meta["tokenizer_sha256"],
            "train_tokens": meta["tokens"]["train"],
            "val_tokens": meta["tokens"]["val"],
            "shards": len(shards),
            "bytes_per_token": meta["bytes_per_token"] or 0.0,
            "tokens_per_sec": round(stats.tokens / encode, 1) if encode else 0.0,
        }
    )
    log.info(
        "tokenized %d documents into %d tokens (%d shards, %.2f bytes/token)",
        stats.docs_kept,
        stats.tokens,
        len(shards),
        meta["bytes_per_token"] or 0,
    )
    stats.save(out / "_stats" / "all.json")
    return stats.check()


def index_outputs(inputs: list[str], output: str) -> list[Path]:
    """Phase 3's files: the token shards its manifest lists (none yet: not complete)."""
    entries = [name for name in Manifest(output).load() if OUTPUT_NAME.fullmatch(name)]
    return [Path(output) / name for name in entries] or [Path(output) / "_none"]


def run_tokenize(inputs: list[str], output: str, cfg: TokenizeConfig, *, limit: int | None = None) -> StageStats:
    """Train (or load) the tokenizer and write train/val token shards, their lineage and meta.json into ``output``:
    the three phases one after the other in this process (the refresh flow runs them as tasks). ``limit``: at most
    that many documents of each input."""
    from pipelines import registry

    return registry.run_phases(registry.get("tokenize"), [str(p) for p in inputs], output, cfg, limit=limit)
