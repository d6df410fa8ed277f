"""Tokenize stage: BPE training, llm.c-format shards read by an independent reader, exact round trip."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tokenizers import Tokenizer

from pipelines.config import TokenizeConfig
from pipelines.tokenizer import run_tokenize

TEXTS = [
    "The quick brown fox jumps over the lazy dog. " * 3,
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "東京は日本の首都です。人口は約1400万人。",
    "Emoji survive: 🦊🐶 and accents: café, naïve, Ærø.",
    "Line\nbreaks\r\nand\ttabs   stay exactly.",
    "Ελληνικά κείμενα και русский текст тоже.",
] * 20


def _llmc_reader(path: Path) -> list[int]:
    """Written from the llm.c format description only: 256 int32 header, then uint16 (v1) / uint32 (v2) tokens."""
    data = path.read_bytes()
    magic, version, n = struct.unpack("<3i", data[:12])
    assert magic == 20240520 and version in (1, 2)
    width = 2 if version == 1 else 4
    assert len(data) == 1024 + n * width
    return list(struct.unpack(f"<{n}{'H' if width == 2 else 'I'}", data[1024:]))


def test_round_trip_and_format(tmp_path: Path) -> None:
    ids = [f"doc{i}" for i in range(len(TEXTS))]
    pq.write_table(pa.table({"id": ids, "text": TEXTS}), tmp_path / "in.parquet")
    out = tmp_path / "tok"
    cfg = TokenizeConfig(vocab_size=400, val_fraction=0.2, shard_tokens=2048)
    stats = run_tokenize([str(tmp_path / "in.parquet")], str(out), cfg)
    assert stats.docs_kept == len(TEXTS) and stats.tokens > 0
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    eot = tok.token_to_id("<|endoftext|>")
    decoded = []
    for split in ("train", "val"):
        shards = sorted(out.glob(f"{split}_*.bin"))
        assert shards, split
        tokens = [t for s in shards for t in _llmc_reader(s)]
        # nanoGPT-style memmap after the header reads the same tokens
        mm = np.concatenate([np.memmap(s, dtype=np.uint16, mode="r", offset=1024) for s in shards])
        assert mm.tolist() == tokens
        assert tokens[0] == eot
        decoded += tok.decode(tokens, skip_special_tokens=False).split("<|endoftext|>")[1:]
    assert sorted(decoded) == sorted(TEXTS)
    # every shard but the last of a split is exactly shard_tokens long
    train = sorted(out.glob("train_*.bin"))
    assert all(len(_llmc_reader(s)) == 2048 for s in train[:-1])
    # Parquet token shards hold the same documents
    ptoks = pq.read_table(out / "train_tokens.parquet")
    assert set(ptoks.column_names) == {"id", "tokens"}


def test_split_is_stable(tmp_path: Path) -> None:
    ids = [f"doc{i}" for i in range(len(TEXTS))]
    pq.write_table(pa.table({"id": ids, "text": TEXTS}), tmp_path / "in.parquet")
    cfg = TokenizeConfig(vocab_size=400, val_fraction=0.2, shard_tokens=2048)
    run_tokenize([str(tmp_path / "in.parquet")], str(tmp_path / "a"), cfg)
    run_tokenize([str(tmp_path / "in.parquet")], str(tmp_path / "b"), cfg)
    va = pq.read_table(tmp_path / "a" / "val_tokens.parquet").column("id").to_pylist()
    vb = pq.read_table(tmp_path / "b" / "val_tokens.parquet").column("id").to_pylist()
    assert va == vb and 0 < len(va) < len(TEXTS)
    assert (tmp_path / "a" / "train_00000.bin").read_bytes() == (tmp_path / "b" / "train_00000.bin").read_bytes()
