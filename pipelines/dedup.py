"""MinHash near-duplicate removal across shards: signatures (datasketch), LSH banding, connected components.

    lmpipe task dedup --input A.parquet B.parquet --output OUT_DIR [--annotate-only]

FineWeb's recipe: word 5-gram shingles of normalised text, 112 hash functions as 14 bands x 8 rows. Two documents
are candidates when all 8 values of any band agree; candidates are joined into clusters (connected components);
one survivor per cluster is kept: the earliest ``fetch_time``, then the smallest ``id`` (deterministic).
Band hashes are grouped by sorting (per band), the step that later moves to disk partitions for crawl scale.
"""

from __future__ import annotations

import json
import logging
import re
import time
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasketch import MinHash
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from pipelines.config import DedupConfig
from pipelines.shards import read_table, shard_id, write_shard
from pipelines.stats import StageStats, merge

log = logging.getLogger(__name__)

_PUNCT = re.compile(r"[^\w\s]+", re.UNICODE)
_SPACE = re.compile(r"\s+", re.UNICODE)


def normalize(text: str) -> str:
    """Lowercase, NFKC, punctuation → space, whitespace folded (datatrove's simplify_text in spirit)."""
    text = unicodedata.normalize("NFKC", text).lower()
    return _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()


def shingles(text: str, n: int) -> set[bytes]:
    """Word n-grams of the normalised text, as UTF-8 bytes (a short text gives one shingle of all its words)."""
    words = normalize(text).split(" ")
    if len(words) < n:
        return {" ".join(words).encode()}
    return {" ".join(words[i : i + n]).encode() for i in range(len(words) - n + 1)}


def minhash_signatures(texts: list[str], cfg: DedupConfig) -> np.ndarray:
    """(N, num_perm) uint64 signatures, equal to datasketch.MinHash(num_perm, seed, scheme='affine64').hashvalues."""
    template = MinHash(num_perm=cfg.num_perm, seed=cfg.seed, scheme="affine64")
    out = np.empty((len(texts), cfg.num_perm), dtype=np.uint64)
    for i, text in enumerate(texts):
        m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed, scheme="affine64", permutations=template.permutations)
        m.update_batch(shingles(text, cfg.ngram))
        out[i] = m.hashvalues
    return out


def band_hashes(signatures: np.ndarray, cfg: DedupConfig) -> np.ndarray:
    """(N, num_bands) uint64: each band's rows folded into one 64-bit value (FNV-1a over the row values)."""
    n = signatures.shape[0]
    sig = signatures.reshape(n, cfg.num_bands, cfg.rows_per_band)
    h = np.full((n, cfg.num_bands), np.uint64(0xCBF29CE484222325), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for r in range(cfg.rows_per_band):
            h = (h ^ sig[:, :, r]) * np.uint64(0x100000001B3)
    return h


def candidate_edges(bands: np.ndarray) -> np.ndarray:
    """(E, 2) index pairs of documents sharing a band hash: per band, sort and link each doc to its group's first."""
    edges = []
    for b in range(bands.shape[1]):
        col = bands[:, b]
        order = np.argsort(col, kind="stable")
        sorted_col = col[order]
        starts = np.r_[True, sorted_col[1:] != sorted_col[:-1]]
        group_first = order[np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0))]
        mask = ~starts
        if mask.any():
            edges.append(np.stack([group_first[mask], order[mask]], axis=1))
    return np.unique(np.concatenate(edges), axis=0) if edges else np.empty((0, 2), dtype=np.int64)


def jaccard(a: set[bytes], b: set[bytes]) -> float:
    return len(a & b) / max(1, len(a | b))


def cluster(n: int, edges: np.ndarray) -> np.ndarray:
    """Connected components over candidate edges: a component label per document."""
    if n == 0:
        return np.empty(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels


def run_dedup(inputs: list[str], output: str, cfg: DedupConfig, *, limit: int | None = None) -> StageStats:
    """Deduplicate all ``inputs`` together; write one output shard per input into the directory ``output``."""
    t0 = time.monotonic()
    tables = [read_table(p) for p in inputs]
    if limit is not None:
        tables = [t.slice(0, limit) for t in tables]
    ids = [i for t in tables for i in t.column("id").to_pylist()]
    texts = [x for t in tables for x in t.column("text").to_pylist()]
    n = len(ids)
    sigs = minhash_signatures(texts, cfg)
    edges = candidate_edges(band_hashes(sigs, cfg))
    candidates = len(edges)
    if cfg.jaccard_check and len(edges):
        sets = {}
        keep = []
        for a, b in edges:
            sa = sets.setdefault(a, shingles(texts[a], cfg.ngram))
            sb = sets.setdefault(b, shingles(texts[b], cfg.ngram))
            keep.append(jaccard(sa, sb) >= cfg.jaccard_threshold)
        edges = edges[np.array(keep, dtype=bool)]
    labels = cluster(n, edges)

    # Survivor per cluster: earliest fetch_time (missing = latest), then smallest id.
    times = []
    for t in tables:
        if "fetch_time" in t.column_names:
            col = pc.cast(t.column("fetch_time"), pa.timestamp("s", tz="UTC")).cast(pa.int64()).to_pylist()
            times.extend(v if v is not None else np.iinfo(np.int64).max for v in col)
        else:
            times.extend([np.iinfo(np.int64).max] * t.num_rows)
    order = sorted(range(n), key=lambda i: (labels[i], times[i], ids[i]))
    survivor: dict[int, int] = {}
    for i in order:
        survivor.setdefault(int(labels[i]), i)
    cluster_id = [ids[survivor[int(labels[i])]] for i in range(n)]
    is_dup = [survivor[int(labels[i])] != i for i in range(n)]
    sizes = np.bincount(labels) if n else np.empty(0, dtype=np.int64)

    out_dir = Path(output)
    shard_stats = []
    start = 0
    for path, t in zip(inputs, tables, strict=True):
        rows = t.num_rows
        dup = pa.array(is_dup[start : start + rows], pa.bool_())
        t2 = t.append_column("minhash_cluster", pa.array(cluster_id[start : start + rows], pa.string()))
        t2 = t2.append_column("is_duplicate", dup)
        s = StageStats(stage="dedup", shard=shard_id(path), docs_in=rows)
        ndup = int(sum(is_dup[start : start + rows]))
        if cfg.annotate_only:
            s.docs_kept = rows
            s.extra["would_drop_minhash_duplicate"] = ndup
        else:
            t2 = t2.filter(pc.invert(dup))
            s.docs_kept = rows - ndup
            if ndup:
                s.drop("minhash_duplicate", ndup)
        s.seconds = time.monotonic() - t0
        shard_stats.append(write_shard(t2, out_dir / f"{shard_id(path)}.parquet", s, cfg, inputs))
        start += rows

    multi = sizes[sizes > 1]
    report = {
        "documents": n,
        "candidate_pairs": int(candidates),
        "edges_after_check": int(len(edges)),
        "clusters_with_duplicates": int(len(multi)),
        "largest_clusters": [
            {"size": int(sizes[c]), "members": [ids[i] for i in np.flatnonzero(labels == c)[:5]]}
            for c in np.argsort(-sizes)[:10]
            if sizes[c] > 1
        ],
    }
    (out_dir / "_clusters.json").write_text(json.dumps(report, indent=2))
    total = merge(shard_stats, "dedup")
    total.extra.update(
        {
            "candidate_pairs": int(candidates),
            "clusters_with_duplicates": int(len(multi)),
            "duplicates": int(sum(is_dup)),
        }
    )
    total.seconds = time.monotonic() - t0
    log.info(
        "dedup: %d docs, %d candidate pairs, %d clusters with duplicates, %d duplicates",
        n,
        candidates,
        len(multi),
        sum(is_dup),
    )
    return total
