"""Byte-level BPE training (tokenizers) and token shards: llm.c-format .bin files plus Parquet (id, tokens).

    lmpipe task tokenize --input A.parquet [B.parquet …] --output OUT_DIR [--vocab-size N]

Binary layout (llm.c): a header of 256 little-endian int32 — magic 20240520, version, token count — then the
tokens: version 1 = uint16 (vocab ≤ 65,536, llm.c's own), version 2 = uint32 (lmpipe's variant for larger vocabs).
Every document is preceded by the end-of-text token, as in llm.c's fineweb.py. Files: ``{split}_{index:05d}.bin``
(split = train | val, by a hash of the document id) beside ``tokenizer.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from pipelines.config import TokenizeConfig
from pipelines.shards import Manifest, config_hash, read_table, sha256_file, write_table
from pipelines.stats import StageStats

log = logging.getLogger(__name__)

MAGIC = 20240520
HEADER_INTS = 256
VERSION_U16, VERSION_U32 = 1, 2
# GPT-4 (cl100k) pre-tokenization split, as used by tiktoken and nanochat.
GPT4_SPLIT = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)


class TokenShardError(ValueError):
    """A .bin file that is not a valid token shard."""


def split_of(doc_id: str, cfg: TokenizeConfig) -> str:
    """'val' or 'train', stable across reruns: a hash of (seed, id) against val_fraction."""
    h = int.from_bytes(hashlib.blake2b(f"{cfg.seed}:{doc_id}".encode(), digest_size=8).digest(), "little")
    return "val" if h / 2**64 < cfg.val_fraction else "train"


def build_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE(byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(GPT4_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def train_tokenizer(texts: Iterator[str], cfg: TokenizeConfig) -> Tokenizer:
    """Train a byte-level BPE; the end-of-text token gets id 0."""
    tok = build_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=[cfg.eot_token],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def write_token_bin(path: str | Path, tokens: np.ndarray, vocab_size: int) -> None:
    """Write one llm.c-format shard (atomically)."""
    version, dtype = (VERSION_U16, np.uint16) if vocab_size <= 65536 else (VERSION_U32, np.uint32)
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = MAGIC, version, len(tokens)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(header.tobytes())
        f.write(np.asarray(tokens, dtype=np.dtype(dtype).newbyteorder("<")).tobytes())
    os.replace(tmp, path)


def read_token_bin(path: str | Path) -> np.ndarray:
    """Memory-map the tokens of an llm.c-format shard, validating its header."""
    path = str(path)
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if len(header) < HEADER_INTS or header[0] != MAGIC:
        raise TokenShardError(f"{path}: not a token shard (magic {header[0] if len(header) else None})")
    if header[1] not in (VERSION_U16, VERSION_U32):
        raise TokenShardError(f"{path}: unknown version {header[1]}")
    dtype = np.dtype("<u2") if header[1] == VERSION_U16 else np.dtype("<u4")
    expected = HEADER_INTS * 4 + int(header[2]) * dtype.itemsize
    if os.path.getsize(path) != expected:
        raise TokenShardError(f"{path}: size {os.path.getsize(path)} != {expected} for {header[2]} tokens")
    return np.memmap(path, dtype=dtype, mode="r", offset=HEADER_INTS * 4, shape=(int(header[2]),))


def _training_sample(texts: list[str], ids: list[str], budget: int, seed: int) -> Iterator[str]:
    """Documents in a seeded hash order until ``budget`` bytes: a deterministic sample of the corpus."""
    order = sorted(range(len(ids)), key=lambda i: hashlib.blake2b(f"{seed}/{ids[i]}".encode()).digest())
    used = 0
    for i in order:
        if used >= budget:
            return
        used += len(texts[i].encode())
        yield texts[i]


def run_tokenize(inputs: list[str], output: str, cfg: TokenizeConfig, *, limit: int | None = None) -> StageStats:
    """Train the tokenizer on ``inputs`` and write train/val token shards into the directory ``output``."""
    t0 = time.monotonic()
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    tables = [read_table(p, columns=None) for p in inputs]
    ids = [i for t in tables for i in t.column("id").to_pylist()]
    texts = [x for t in tables for x in t.column("text").to_pylist()]
    if limit is not None:
        ids, texts = ids[:limit], texts[:limit]
    stats = StageStats(stage="tokenize", shard="all", docs_in=len(ids))
    stats.bytes_in = sum(len(x.encode()) for x in texts)

    tok = train_tokenizer(_training_sample(texts, ids, cfg.train_bytes, cfg.seed), cfg)
    tok_path = out / "tokenizer.json"
    tok.save(str(tok_path))
    eot = tok.token_to_id(cfg.eot_token)
    vocab = tok.get_vocab_size()

    encoded = tok.encode_batch_fast(texts) if hasattr(tok, "encode_batch_fast") else tok.encode_batch(texts)
    buffers: dict[str, list[np.ndarray]] = {"train": [], "val": []}
    fill = {"train": 0, "val": 0}
    index = {"train": 0, "val": 0}
    docs_per_split: dict[str, list[tuple[str, list[int]]]] = {"train": [], "val": []}
    files: list[Path] = []

    def flush(split: str) -> None:
        if not buffers[split]:
            return
        path = out / f"{split}_{index[split]:05d}.bin"
        write_token_bin(path, np.concatenate(buffers[split]), vocab)
        files.append(path)
        buffers[split], fill[split] = [], 0
        index[split] += 1

    for doc_id, enc in zip(ids, encoded, strict=True):
        if not enc.ids:
            stats.drop("empty_after_tokenization")
            continue
        stats.docs_kept += 1
        split = split_of(doc_id, cfg)
        arr = np.asarray([eot, *enc.ids], dtype=np.uint32)
        docs_per_split[split].append((doc_id, enc.ids))
        stats.tokens += len(arr)
        # Fill shards to exactly shard_tokens; a document may continue in the next shard (as llm.c does).
        while len(arr):
            room = cfg.shard_tokens - fill[split]
            buffers[split].append(arr[:room])
            fill[split] += len(arr[:room])
            arr = arr[room:]
            if fill[split] >= cfg.shard_tokens:
                flush(split)
    for split in ("train", "val"):
        flush(split)
        if docs_per_split[split]:
            doc_ids, toks = zip(*docs_per_split[split], strict=True)
            table = pa.table({"id": pa.array(doc_ids, pa.string()), "tokens": pa.array(toks, pa.list_(pa.uint32()))})
            p = out / f"{split}_tokens.parquet"
            write_table(table, p)
            files.append(p)

    manifest = Manifest(out)
    chash = config_hash(cfg)
    tok_hash = sha256_file(tok_path)
    for f in files:
        manifest.record(f, {"bytes": f.stat().st_size, "sha256": sha256_file(f)}, chash, inputs)
    manifest.record(tok_path, {"bytes": tok_path.stat().st_size, "sha256": tok_hash}, chash, inputs)
    meta = {
        "tokenizer_sha256": tok_hash,
        "vocab_size": vocab,
        "eot_id": eot,
        "eot_token": cfg.eot_token,
        "tokens": {
            s: int(sum(read_token_bin(f).shape[0] for f in files if f.name.startswith(f"{s}_") and f.suffix == ".bin"))
            for s in ("train", "val")
        },
        "config": cfg.model_dump(mode="json"),
        "sources": list(map(str, inputs)),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    stats.extra.update(
        {
            "vocab_size": vocab,
            "train_tokens": meta["tokens"]["train"],
            "val_tokens": meta["tokens"]["val"],
            "shards": len([f for f in files if f.suffix == ".bin"]),
        }
    )
    stats.seconds = time.monotonic() - t0
    stats.save(out / "_stats" / "all.json")
    return stats.check()
