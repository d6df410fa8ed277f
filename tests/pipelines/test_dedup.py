"""Dedup stage on real text (dolma-cc documents) with controlled near-duplicate edits."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasketch import MinHash

from pipelines.config import DedupConfig
from pipelines.dedup import jaccard, minhash_signatures, run_dedup, shingles


@pytest.fixture(scope="module")
def real_docs(shared_data: Path) -> list[str]:
    docs = []
    for f in sorted((shared_data / "text/dolma-cc").rglob("*.gz")):
        with gzip.open(f, "rt") as fh:
            docs += [json.loads(line)["text"] for line in fh if line.strip()]
    docs = [d for d in docs if len(d.split()) >= 80]
    assert len(docs) >= 10
    return docs


def _edit(text: str, rng: random.Random, n_words: int) -> str:
    words = text.split()
    for _ in range(n_words):
        words[rng.randrange(len(words))] = rng.choice(["alpha", "beta", "gamma", "delta"])
    return " ".join(words)


def test_signatures_equal_datasketch(real_docs: list[str]) -> None:
    cfg = DedupConfig()
    sigs = minhash_signatures(real_docs[:10], cfg)
    for text, sig in zip(real_docs[:10], sigs, strict=True):
        m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed, scheme="affine64")
        m.update_batch(shingles(text, cfg.ngram))
        assert (m.hashvalues == sig).all()


def test_near_duplicates_removed_across_shards(real_docs: list[str], tmp_path: Path) -> None:
    rng = random.Random(0)
    base = real_docs[:10]
    copies = [_edit(t, rng, max(1, len(t.split()) // 200)) for t in base[:6]]
    assert all(jaccard(shingles(a, 5), shingles(b, 5)) >= 0.8 for a, b in zip(base, copies, strict=False))
    a = pa.table({"id": [f"a{i}" for i in range(len(base))], "text": base, "extra": list(range(len(base)))})
    b = pa.table({"id": [f"b{i}" for i in range(len(copies))], "text": copies})
    pq.write_table(a, tmp_path / "a.parquet")
    pq.write_table(b, tmp_path / "b.parquet")
    out = tmp_path / "dedup"
    stats = run_dedup([str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")], str(out), DedupConfig())
    assert stats.docs_in == 16 and stats.dropped == {"minhash_duplicate": 6}
    kept_b = pq.read_table(out / "b.parquet")
    assert kept_b.num_rows == 0  # ids 'a…' < 'b…' and no fetch_time: the originals survive
    kept_a = pq.read_table(out / "a.parquet")
    assert kept_a.column("extra").to_pylist() == list(range(10))  # other columns pass through

    annotated = run_dedup(
        [str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")],
        str(tmp_path / "ann"),
        DedupConfig(annotate_only=True),
    )
    assert annotated.docs_kept == 16
    t = pq.read_table(tmp_path / "ann" / "b.parquet")
    assert t.column("is_duplicate").to_pylist() == [True] * 6
    assert t.column("minhash_cluster").to_pylist() == [f"a{i}" for i in range(6)]
    ta = pq.read_table(tmp_path / "ann" / "a.parquet")
    assert ta.column("minhash_cluster").to_pylist() == [f"a{i}" for i in range(10)]  # own id when unique
