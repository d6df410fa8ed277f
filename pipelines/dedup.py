"""MinHash near-duplicate removal across shards: signatures, LSH bands on disk, connected components, index.

    lmpipe task dedup --input A.parquet B.parquet --output OUT_DIR [--annotate-only]
    lmpipe task dedup --input … --output OUT_DIR --set scope=global --set index_dir=data/_dedup_index

Word 5-gram shingles of normalised text, MinHash signatures, LSH bands (DedupConfig.preset). Two documents are
candidates when all values of any band agree; the default preset (``verified``: 18 bands x 6 rows) makes nearly every
pair of Jaccard >= 0.8 a candidate, and its exact shingle-Jaccard check (>= 0.7) rejects the extra candidates of its
flatter low end; ``fineweb`` is FineWeb's recipe (14 x 8 = 112 hash functions, every candidate kept). Checked
candidates are joined into clusters (connected components) and one survivor per cluster is kept. The rule: the earliest
``fetch_time`` (a missing time counts as latest), then the smallest ``id`` — deterministic, whatever the order of
the inputs.

Four phases, each a stage of the registry (pipelines/registry.py), so the refresh flow runs the parallel ones as
many tasks (``lmpipe task dedup`` runs them one after the other in one process):

1. ``dedup_signatures`` (map, per shard): MinHash signatures → band hashes, with the keys (id, fetch_time) →
   ``OUT_DIR/_signatures/{shard}.parquet``. Texts are read in batches of ``batch_docs``.
2. ``dedup_pairs`` (map, per group of bands): the rows of the run whose hash of one of the group's bands agree →
   ``_pairs/bands_LO-HI.npy``. Reads one uint64 column per band of each signature shard; one task per band at crawl
   scale (``band_groups``), one for a run of a few shards.
3. ``dedup_clusters`` (reduce): the union of the bands' pairs (optionally confirmed by exact Jaccard), connected
   components, survivors, earlier-crawl drops → ``_decisions/{shard}.parquet``, the report, the index entry.
   Memory: the run's keys and pairs (a few dozen bytes per document), never its texts or signatures.
4. ``dedup_apply`` (map, per shard): the shard with its decisions → ``OUT_DIR/{shard}.parquet``.

With ``scope=global`` a document is also dropped when one of its band hashes is in the index entry of a crawl added
before this run's crawl (``minhash_earlier_crawl``), together with its whole cluster. With ``index_dir`` set and
``update_index`` on, the run adds its own crawl (the inputs' ``crawl_id``) to the index afterwards; the refresh
flow does this, so each refreshed crawl becomes part of the index.

Outputs: one shard per input with ``minhash_cluster`` (id of the cluster's survivor; the row's own id when unique)
and ``is_duplicate``; ``_clusters.json`` / ``_clusters.md``: cluster-size histogram and the largest clusters with
example members.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.config import DedupConfig
from pipelines.documents import BatchResult, run_documents
from pipelines.lsh import BandIndex, BandPartitions, band_hashes, components, equal_runs, union_edges
from pipelines.minhash import minhash_signatures, shingle_sets, sorted_jaccard
from pipelines.registry import Call
from pipelines.shards import (
    Manifest,
    ShardSchemaError,
    atomic_write_bytes,
    config_hash,
    read_table,
    shard_id,
    write_shard,
    write_table,
)
from pipelines.stats import StageStats

log = logging.getLogger(__name__)

_NO_TIME = np.iinfo(np.int64).max
# The phases' working files under the dedup directory (the refresh flow runs each phase as its own tasks)
SIGNATURES, PAIRS, DECISIONS = "_signatures", "_pairs", "_decisions"
SHARDS_PER_PAIR_TASK = 4  # below this many input shards per band group, one more pairs task costs more than it saves
CRAWL_KEY = b"lmpipe.crawl_id"
_REPORT_CLUSTERS = 10
_REPORT_MEMBERS = 5


def _open_parquet(path: str) -> tuple[pq.ParquetFile, object]:
    f = fsspec.open(path, "rb").open()
    try:
        return pq.ParquetFile(f), f
    except (pa.ArrowInvalid, OSError) as e:
        f.close()
        raise ShardSchemaError(path, f"not a readable Parquet file ({e})") from e


def _shard_keys(path: str, limit: int | None) -> tuple[pa.Array, np.ndarray, str | None]:
    """ids, fetch times (epoch seconds, missing = max) and the crawl id of one input shard."""
    pf, f = _open_parquet(path)
    with f:
        names = pf.schema_arrow.names
        if "text" not in names:
            raise ShardSchemaError(path, f"missing required column 'text' (has {names})")
        cols = ["id"] + [c for c in ("fetch_time", "crawl_id") if c in names]
        table = read_table(path, columns=cols, required=("id",))
    if limit is not None:
        table = table.slice(0, limit)
    ids = table.column("id").combine_chunks()
    times = np.full(table.num_rows, _NO_TIME, dtype=np.int64)
    if "fetch_time" in cols:
        col = pc.cast(table.column("fetch_time"), pa.timestamp("s", tz="UTC")).cast(pa.int64())
        times = col.fill_null(_NO_TIME).to_numpy()
    crawl = None
    if "crawl_id" in cols and table.num_rows:
        crawl = table.column("crawl_id")[0].as_py()
    return ids, times, crawl


def _texts(path: str, rows: int, batch: int):  # noqa: ANN202  (yields lists of str)
    """The ``text`` column of the first ``rows`` rows, in batches."""
    pf, f = _open_parquet(path)
    with f:
        done = 0
        for rb in pf.iter_batches(batch_size=batch, columns=["text"]):
            if done >= rows:
                break
            texts = rb.column(0).to_pylist()[: rows - done]
            done += len(texts)
            yield texts


def verified_edges(edges: np.ndarray, inputs: list[str], offsets: np.ndarray, cfg: DedupConfig) -> np.ndarray:
    """Keep the candidate pairs whose exact shingle Jaccard reaches ``cfg.jaccard_threshold``."""
    needed = np.unique(edges)
    # each document's shingles as a sorted array of their 64-bit hashes (one process, one hash function): ~10x less
    # memory than the sets of bytes, which were most of this reduce task's peak; a hash collision inside one pair
    # (~1e-16 for two ~100-shingle documents) is the only way the answer can differ from the exact sets'
    hashes: dict[int, np.ndarray] = {}
    for s, path in enumerate(inputs):
        lo, hi = offsets[s], offsets[s + 1]
        rows = needed[(needed >= lo) & (needed < hi)]
        if not len(rows):
            continue
        table = read_table(path, columns=["text"], required=("text",)).slice(0, hi - lo)
        texts = table.column("text").take(pa.array(rows - lo)).to_pylist()
        for row, grams in zip(rows.tolist(), shingle_sets(texts, cfg.ngram), strict=True):
            hashes[row] = np.unique(np.fromiter(map(hash, grams), np.int64, len(grams)))
    keep = np.array([sorted_jaccard(hashes[int(a)], hashes[int(b)]) >= cfg.jaccard_threshold for a, b in edges], bool)
    return edges[keep] if len(edges) else edges


def survivors(labels: np.ndarray, times: np.ndarray, ids: pa.Array) -> np.ndarray:
    """For each document, the row of its cluster's survivor: earliest time, then smallest id (its own row when
    the cluster has one member)."""
    n = len(labels)
    rep = np.arange(n, dtype=np.int64)
    if not n:
        return rep
    sizes = np.bincount(labels)
    multi = np.flatnonzero(sizes[labels] > 1)
    if not len(multi):
        return rep
    table = pa.table({"label": labels[multi], "time": times[multi], "id": ids.take(pa.array(multi)), "row": multi})
    ordered = table.sort_by([("label", "ascending"), ("time", "ascending"), ("id", "ascending")])
    lab = ordered.column("label").to_numpy()
    row = ordered.column("row").to_numpy()
    first = np.r_[True, lab[1:] != lab[:-1]]
    best = np.full(len(sizes), -1, dtype=np.int64)
    best[lab[first]] = row[first]
    rep[multi] = best[labels[multi]]
    return rep


def _crawl_of(crawls: list[str | None]) -> str:
    found = {c for c in crawls if c}
    if len(found) != 1:
        raise ValueError(f"dedup index: the inputs must belong to one crawl (crawl_id column), found {sorted(found)}")
    return found.pop()


@dataclass(frozen=True)
class RunKeys:
    """What phase 1 keeps in memory of the whole run, in input order: row ``offsets[s] + r`` is row r of shard s."""

    ids: pa.Array  # (N,) string
    times: np.ndarray  # (N,) int64 epoch seconds, missing = max
    crawls: list[str | None]  # one per input shard
    offsets: np.ndarray  # (S + 1,) int64: the first row of each shard, then N

    @property
    def n(self) -> int:
        return int(self.offsets[-1])


@dataclass(frozen=True)
class DedupDecisions:
    """Phases 2-3 for every document of the run: its cluster, its survivor, and why it goes (if it does)."""

    candidates: int  # candidate pairs from the bands, before the exact check
    edges: np.ndarray  # (E, 2) the pairs that joined clusters
    labels: np.ndarray  # (N,) connected component of each document
    sizes: np.ndarray  # (L,) documents per label
    rep: np.ndarray  # (N,) row of the cluster's survivor
    is_dup_cluster: np.ndarray  # (N,) bool: not its cluster's survivor (and not an earlier-crawl drop)
    earlier: np.ndarray  # (N,) bool: its cluster has a member in an earlier crawl of the index
    drop: np.ndarray  # (N,) bool: either of the two


def signatures_path(out_dir: str | Path, source: str) -> Path:
    return Path(out_dir) / SIGNATURES / f"{shard_id(source)}.parquet"


def pairs_path(out_dir: str | Path, bands: range) -> Path:
    return Path(out_dir) / PAIRS / f"bands_{bands.start:02d}-{bands.stop - 1:02d}.npy"


def band_groups(shards: int, num_bands: int) -> list[range]:
    """The bands each pairs task covers: one task per ``SHARDS_PER_PAIR_TASK`` input shards, at most one per band
    (a small run is one task; a crawl, one task per band), contiguous and of near-equal size."""
    k = max(1, min(num_bands, shards // SHARDS_PER_PAIR_TASK))
    return [range(int(g[0]), int(g[-1]) + 1) for g in np.array_split(np.arange(num_bands), k)]


def decisions_path(out_dir: str | Path, source: str) -> Path:
    return Path(out_dir) / DECISIONS / f"{shard_id(source)}.parquet"


def _band_column(band: int) -> str:
    return f"band_{band:02d}"


def plan_signatures(sources: list[str], previous: list[str], out_dir: str, cfg: DedupConfig) -> list[Call]:
    """Phase 1: one task per input shard."""
    return [Call([src], str(signatures_path(out_dir, src))) for src in sources]


def plan_pairs(sources: list[str], previous: list[str], out_dir: str, cfg: DedupConfig) -> list[Call]:
    """Phase 2: one task per group of bands (``band_groups``), each reading its bands' columns of every signature
    shard."""
    return [Call(list(previous), str(pairs_path(out_dir, g))) for g in band_groups(len(sources), cfg.num_bands)]


def plan_clusters(sources: list[str], previous: list[str], out_dir: str, cfg: DedupConfig) -> list[Call]:
    """Phase 3: one task over every band's pairs, the signatures (keys) and the shards (exact check, examples)."""
    inputs = [*previous, *(str(signatures_path(out_dir, s)) for s in sources), *sources]
    decisions = [str(decisions_path(out_dir, s)) for s in sources]
    return [Call(inputs, str(Path(out_dir) / DECISIONS), decisions)]


def plan_apply(sources: list[str], previous: list[str], out_dir: str, cfg: DedupConfig) -> list[Call]:
    """Phase 4: one task per input shard, reading the shard and its decisions."""
    return [
        Call([src, str(decisions_path(out_dir, src))], str(Path(out_dir) / f"{shard_id(src)}.parquet"))
        for src in sources
    ]


def clusters_outputs(inputs: list[str], output: str) -> list[Path]:
    """The decision shards of phase 3, one per input shard (the inputs after the pairs and signatures)."""
    return [Path(output) / Path(p).name for p in inputs if Path(p).parent.name == SIGNATURES]


def run_signatures(inputs: list[str], output: str, cfg: DedupConfig, *, limit: int | None = None) -> StageStats:
    """Phase 1, per shard: keys (id, fetch time, crawl) and each document's band hashes, texts streamed."""
    (path,) = inputs
    ids, times, crawl = _shard_keys(path, limit)
    batches = [
        band_hashes(minhash_signatures(texts, cfg, threads=cfg.workers or None), cfg.num_bands, cfg.rows_per_band)
        for texts in _texts(path, len(ids), cfg.batch_docs)
    ]
    bands = np.concatenate(batches) if batches else np.empty((0, cfg.num_bands), dtype=np.uint64)
    table = pa.table(
        {"id": ids, "fetch_time": times, **{_band_column(b): bands[:, b] for b in range(cfg.num_bands)}},
        metadata={CRAWL_KEY: crawl or ""},
    )
    stats = StageStats(stage="dedup_signatures", shard=shard_id(path), docs_in=len(ids), docs_kept=len(ids))
    return write_shard(table, output, stats, cfg, inputs)


def _bands_of(output: str) -> range:
    name = Path(output).name
    lo, _, hi = name.removeprefix("bands_").removesuffix(".npy").partition("-")
    if not (name.startswith("bands_") and name.endswith(".npy") and lo.isdigit() and hi.isdigit()):
        raise ValueError(f"{output}: a pairs output is named bands_LO-HI.npy")
    return range(int(lo), int(hi) + 1)


def run_pairs(inputs: list[str], output: str, cfg: DedupConfig, *, limit: int | None = None) -> StageStats:
    """Phase 2, per group of bands: the pairs of documents (rows of the run, in input order) whose hash of one of
    these bands agree."""
    bands = _bands_of(output)
    edges, n = [], 0
    for band in bands:
        columns = [read_table(p, columns=[_band_column(band)], required=()).column(0) for p in inputs]
        values = np.concatenate([c.to_numpy() for c in columns]) if columns else np.empty(0, dtype=np.uint64)
        edges.append(equal_runs(values.astype(np.uint64, copy=False)))
        n = len(values)
    pairs = union_edges(edges, n)
    buf = io.BytesIO()
    np.save(buf, pairs)
    atomic_write_bytes(output, buf.getvalue())
    facts = {"rows": len(pairs), "bytes": len(buf.getvalue()), "sha256": hashlib.sha256(buf.getvalue()).hexdigest()}
    Manifest(Path(output).parent).record(output, facts, config_hash(cfg), inputs)
    stats = StageStats(stage="dedup_pairs", shard=Path(output).stem, docs_in=n, docs_kept=n)
    stats.extra["pairs"] = len(pairs)
    return stats


def _split_inputs(inputs: list[str]) -> tuple[list[str], list[str], list[str]]:
    """Phase 3's inputs by kind: pair files, signature shards, input shards."""
    kind = {PAIRS: 0, SIGNATURES: 1}
    out: tuple[list[str], list[str], list[str]] = ([], [], [])
    for p in inputs:
        out[kind.get(Path(p).parent.name, 2)].append(p)
    return out


def run_keys(signatures: list[str]) -> RunKeys:
    """ids, fetch times and crawl of every document of the run, from the signature shards, in input order."""
    tables = [read_table(p, columns=["id", "fetch_time"], required=("id",)) for p in signatures]
    crawls = [pq.read_schema(p).metadata.get(CRAWL_KEY, b"").decode() or None for p in signatures]
    offsets = np.r_[0, np.cumsum([t.num_rows for t in tables])].astype(np.int64)
    if not int(offsets[-1]):
        return RunKeys(pa.array([], pa.string()), np.empty(0, dtype=np.int64), crawls, offsets)
    ids = pa.chunked_array([t.column("id") for t in tables], type=pa.string()).combine_chunks()
    times = np.concatenate([t.column("fetch_time").to_numpy() for t in tables])
    return RunKeys(ids=ids, times=times, crawls=crawls, offsets=offsets)


def band_partitions(signatures: list[str], directory: Path, cfg: DedupConfig) -> BandPartitions:
    """The run's band hashes as band files (what the cross-crawl index reads and stores)."""
    parts = BandPartitions(directory, cfg.num_bands, reset=True)
    for p in signatures:
        table = read_table(p, columns=[_band_column(b) for b in range(cfg.num_bands)], required=())
        if table.num_rows:
            parts.append(np.stack([c.to_numpy() for c in table.columns], axis=1))
    return parts


def band_index(cfg: DedupConfig) -> BandIndex | None:
    """The cross-crawl index of ``cfg.index_dir`` (None without one), checked against this run's MinHash params."""
    if not cfg.index_dir:
        return None
    params = {"ngram": cfg.ngram, "num_bands": cfg.num_bands, "rows_per_band": cfg.rows_per_band, "seed": cfg.seed}
    return BandIndex(cfg.index_dir, params)


def decide_duplicates(
    parts: BandPartitions, keys: RunKeys, candidates: int, edges: np.ndarray, index: BandIndex | None, cfg: DedupConfig
) -> DedupDecisions:
    """Phase 3: connected components over ``edges`` and their survivors; with ``scope=global``, a cluster with any
    member in an earlier crawl of ``index`` goes entirely."""
    n = keys.n
    labels = components(n, edges)
    rep = survivors(labels, keys.times, keys.ids)
    is_dup = rep != np.arange(n)

    earlier = np.zeros(n, dtype=bool)
    if cfg.scope == "global":
        if index is None:
            raise ValueError("dedup scope=global needs index_dir (the band-hash index of earlier crawls)")
        hit = index.matches(parts, index.earlier(_crawl_of(keys.crawls)))
        seen = np.zeros(labels.max() + 1 if n else 0, dtype=bool)
        seen[labels[hit]] = True
        earlier = seen[labels] if n else earlier
    is_dup_cluster = is_dup & ~earlier
    sizes = np.bincount(labels) if n else np.empty(0, dtype=np.int64)
    return DedupDecisions(candidates, edges, labels, sizes, rep, is_dup_cluster, earlier, is_dup_cluster | earlier)


def _examples(sources: list[str], keys: RunKeys, dec: DedupDecisions) -> dict[int, list[dict]]:
    """The first few members (id, url, start of text) of each of the largest clusters, by cluster label."""
    sizes = dec.sizes
    largest = [int(c) for c in np.argsort(-sizes, kind="stable")[:_REPORT_CLUSTERS] if sizes[c] > 1]
    examples: dict[int, list[dict]] = {c: [] for c in largest}
    taken: Counter[int] = Counter()
    picked = []
    for r in np.flatnonzero(np.isin(dec.labels, largest)).tolist():
        if taken[int(dec.labels[r])] < _REPORT_MEMBERS:
            taken[int(dec.labels[r])] += 1
            picked.append(r)
    rows = np.asarray(picked, dtype=np.int64)
    for s, path in enumerate(sources):
        lo, hi = int(keys.offsets[s]), int(keys.offsets[s + 1])
        mine = rows[(rows >= lo) & (rows < hi)]
        if not len(mine):
            continue
        table = read_table(path).slice(0, hi - lo).take(pa.array(mine - lo))
        for r, row in zip(mine.tolist(), table.to_pylist(), strict=True):
            examples[int(dec.labels[r])].append(
                {"id": row["id"], "url": row.get("url"), "text": (row["text"] or "")[:160]}
            )
    return examples


def write_decisions(
    sources: list[str], out_dir: Path, keys: RunKeys, dec: DedupDecisions, cfg: DedupConfig, inputs: list[str]
) -> None:
    """One decision shard per input shard: each row's cluster survivor id, and whether (and why) it goes."""
    cluster_id = keys.ids.take(pa.array(dec.rep)) if keys.n else pa.array([], pa.string())
    for s, src in enumerate(sources):
        lo, hi = int(keys.offsets[s]), int(keys.offsets[s + 1])
        table = pa.table(
            {
                "minhash_cluster": cluster_id.slice(lo, hi - lo),
                "duplicate": pa.array(dec.is_dup_cluster[lo:hi], pa.bool_()),
                "earlier_crawl": pa.array(dec.earlier[lo:hi], pa.bool_()),
            }
        )
        facts = write_table(table, decisions_path(out_dir, src))
        Manifest(out_dir / DECISIONS).record(decisions_path(out_dir, src), facts, config_hash(cfg), inputs)


def update_index(
    index: BandIndex | None, parts: BandPartitions, crawls: list[str | None], cfg: DedupConfig
) -> str | None:
    """Add this run's crawl to the cross-crawl index (with ``update_index``); the crawl added, or None."""
    if index is None or not cfg.update_index:
        return None
    if any(crawls):
        indexed = _crawl_of(crawls)
        index.add(indexed, parts)
        return indexed
    log.warning("dedup index: no crawl_id column in the inputs, %s not updated", cfg.index_dir)
    return None


def cluster_report(
    keys: RunKeys, dec: DedupDecisions, examples: dict[int, list[dict]], indexed: str | None, cfg: DedupConfig
) -> dict:
    """Cluster statistics of the run: size histogram and the largest clusters with example members
    (``seconds`` is the caller's to add)."""
    sizes = dec.sizes
    multi = sizes[sizes > 1]
    histogram = Counter("2" if s == 2 else "3-9" if s < 10 else "10-99" if s < 100 else "100+" for s in multi.tolist())
    rep, labels, ids = dec.rep, dec.labels, keys.ids
    return {
        "documents": keys.n,
        "candidate_pairs": int(dec.candidates),
        "edges_after_check": int(len(dec.edges)),
        "clusters_with_duplicates": int(len(multi)),
        "duplicates_in_clusters": int(dec.is_dup_cluster.sum()),
        "dropped_earlier_crawl": int(dec.earlier.sum()),
        "cluster_size_histogram": {k: histogram.get(k, 0) for k in ("2", "3-9", "10-99", "100+")},
        "largest_clusters": [
            {"size": int(sizes[c]), "survivor": ids[int(rep[np.flatnonzero(labels == c)[0]])].as_py(), "members": m}
            for c, m in examples.items()
        ],
        "index": {"dir": cfg.index_dir, "crawl_added": indexed},
    }


def _cluster_stats(keys: RunKeys, dec: DedupDecisions, report: dict) -> StageStats:
    """Phase 3's stats: the cluster figures (every document passes through; phase 4 counts the drops)."""
    multi = dec.sizes[dec.sizes > 1]
    stats = StageStats(stage="dedup_clusters", shard="all", docs_in=keys.n, docs_kept=keys.n)
    stats.extra.update(
        {
            "candidate_pairs": int(dec.candidates),
            "clusters_with_duplicates": int(len(multi)),
            "duplicates": int(dec.drop.sum()),
            "cluster_size_max": int(multi.max()) if len(multi) else 1,
            "cluster_size_mean": float(multi.mean()) if len(multi) else 1.0,
            **{f"clusters_size_{k}": v for k, v in report["cluster_size_histogram"].items()},
        }
    )
    return stats


def run_clusters(inputs: list[str], output: str, cfg: DedupConfig, *, limit: int | None = None) -> StageStats:
    """Phase 3 (reduce): connected components of the candidate pairs, survivors, earlier-crawl drops; writes the
    decision shards into ``output``, the cluster report beside it, and adds the crawl to the index."""
    t0 = time.monotonic()
    pair_files, signatures, sources = _split_inputs(inputs)
    out_dir = Path(output).parent
    keys = run_keys(signatures)
    edges = union_edges([np.load(p) for p in pair_files], keys.n)
    candidates = len(edges)
    if cfg.jaccard_check and len(edges):
        edges = verified_edges(edges, sources, keys.offsets, cfg)
    index = band_index(cfg)
    parts = band_partitions(signatures, out_dir / "_bands", cfg) if index is not None else None
    dec = decide_duplicates(parts, keys, candidates, edges, index, cfg)
    write_decisions(sources, out_dir, keys, dec, cfg, inputs)
    indexed = update_index(index, parts, keys.crawls, cfg)

    report = cluster_report(keys, dec, _examples(sources, keys, dec), indexed, cfg)
    report["seconds"] = {"clusters": time.monotonic() - t0}
    atomic_write_bytes(out_dir / "_clusters.json", json.dumps(report, indent=2).encode())
    atomic_write_bytes(out_dir / "_clusters.md", _report_markdown(report).encode())
    log.info(
        "dedup: %d docs, %d candidate pairs, %d clusters with duplicates, %d duplicates, %d from earlier crawls",
        keys.n,
        dec.candidates,
        report["clusters_with_duplicates"],
        report["duplicates_in_clusters"],
        report["dropped_earlier_crawl"],
    )
    stats = _cluster_stats(keys, dec, report)
    stats.seconds = time.monotonic() - t0
    return stats


APPLY_COLUMNS = pa.schema([("minhash_cluster", pa.string()), ("is_duplicate", pa.bool_())])
DROP_REASONS = ("minhash_duplicate", "minhash_earlier_crawl")


def run_apply(inputs: list[str], output: str, cfg: DedupConfig, *, limit: int | None = None) -> StageStats:
    """Phase 4, per shard: annotate (``minhash_cluster``, ``is_duplicate``), drop unless ``annotate_only``, write
    (the streaming document runner, pipelines/documents.py)."""
    path, decisions = inputs
    dec = read_table(decisions, required=("minhash_cluster",))
    cluster = dec.column("minhash_cluster").combine_chunks()
    duplicate, earlier = (dec.column(c).to_numpy(zero_copy_only=False) for c in ("duplicate", "earlier_crawl"))
    reasons = np.where(duplicate, DROP_REASONS[0], np.where(earlier, DROP_REASONS[1], None)).tolist()
    done = 0

    def transform(batch: pa.RecordBatch) -> BatchResult:
        nonlocal done
        lo, done = done, done + batch.num_rows
        flags = pa.array(duplicate[lo:done] | earlier[lo:done], pa.bool_())
        return BatchResult({"minhash_cluster": cluster.slice(lo, done - lo), "is_duplicate": flags}, reasons[lo:done])

    def finish(stats: StageStats) -> None:
        if cfg.annotate_only:  # both counters, also when zero
            for reason in DROP_REASONS:
                stats.extra.setdefault(f"would_drop_{reason}", 0)

    return run_documents(
        [path], output, cfg, "dedup", transform, columns=APPLY_COLUMNS, drops=True,
        annotate_only=cfg.annotate_only, limit=dec.num_rows, finish=finish, made_from=list(inputs),
    )  # fmt: skip


def run_dedup(inputs: list[str], output: str, cfg: DedupConfig, *, limit: int | None = None) -> StageStats:
    """Deduplicate all ``inputs`` together, one phase after the other in this process (the refresh flow runs the
    phases as tasks); one output shard per input into the directory ``output``."""
    from pipelines import registry

    return registry.run_phases(registry.get("dedup"), list(inputs), output, cfg, limit=limit)


def clusters_complete(inputs: list[str], output: str, cfg: DedupConfig | None) -> bool:
    """Phase 3's completeness check in the registry: the crawl's entry in the cross-crawl index is still there
    (else the phase reruns and rebuilds it)."""
    return cfg is None or index_up_to_date(str(Path(output).parent), cfg)


def index_up_to_date(output: str, cfg: DedupConfig) -> bool:
    """False when the run in ``output`` added its crawl to ``cfg.index_dir`` and that entry is gone (the index was
    deleted or moved): a cached result would then leave the index without this crawl."""
    report = Path(output) / "_clusters.json"
    if not (cfg.index_dir and cfg.update_index) or not report.exists():
        return True
    crawl = json.loads(report.read_text()).get("index", {}).get("crawl_added")
    if crawl is None:
        return True
    meta = Path(cfg.index_dir) / "index.json"
    return meta.exists() and crawl in json.loads(meta.read_text())["crawls"] and (Path(cfg.index_dir) / crawl).is_dir()


def _report_markdown(report: dict) -> str:
    lines = [
        "# Dedup clusters",
        "",
        f"{report['documents']} documents, {report['candidate_pairs']} candidate pairs, "
        f"{report['clusters_with_duplicates']} clusters with duplicates, "
        f"{report['duplicates_in_clusters']} duplicates dropped within the run, "
        f"{report['dropped_earlier_crawl']} as seen in an earlier crawl.",
        "",
        "| cluster size | clusters |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in report["cluster_size_histogram"].items()],
        "",
        "## Largest clusters",
    ]
    for c in report["largest_clusters"]:
        lines += ["", f"### {c['size']} documents, survivor `{c['survivor']}`", ""]
        lines += [f"- `{m['id']}` {m['url'] or ''}: {m['text'][:100]!r}" for m in c["members"]]
    return "\n".join(lines) + "\n"
