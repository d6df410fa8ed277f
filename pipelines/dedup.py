"""MinHash near-duplicate removal across shards: signatures, LSH bands on disk, connected components, index.

    lmpipe task dedup --input A.parquet B.parquet --output OUT_DIR [--annotate-only]
    lmpipe task dedup --input … --output OUT_DIR --set scope=global --set index_dir=data/_dedup_index

FineWeb's recipe: word 5-gram shingles of normalised text, 112 hash functions as 14 bands x 8 rows. Two documents
are candidates when all 8 values of any band agree (optionally confirmed by exact shingle Jaccard); candidates are
joined into clusters (connected components) and one survivor per cluster is kept. The rule: the earliest
``fetch_time`` (a missing time counts as latest), then the smallest ``id`` — deterministic, whatever the order of
the inputs.

Memory stays bounded: texts are read in batches of ``batch_docs`` and only their band hashes are kept, on disk
(``OUT_DIR/_bands/band_XX.u64``, pipelines/lsh.py); grouping reads one band at a time.

With ``scope=global`` a document is also dropped when one of its band hashes is in the index entry of a crawl added
before this run's crawl (``minhash_earlier_crawl``), together with its whole cluster. With ``index_dir`` set and
``update_index`` on, the run adds its own crawl (the inputs' ``crawl_id``) to the index afterwards; the refresh
flow does this, so each refreshed crawl becomes part of the index.

Outputs: one shard per input with ``minhash_cluster`` (id of the cluster's survivor; the row's own id when unique)
and ``is_duplicate``; ``_clusters.json`` / ``_clusters.md``: cluster-size histogram and the largest clusters with
example members.
"""

from __future__ import annotations

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
from pipelines.lsh import BandIndex, BandPartitions, band_hashes, candidate_pairs, components
from pipelines.minhash import jaccard, minhash_signatures, shingle_sets
from pipelines.shards import ShardSchemaError, atomic_write_bytes, read_table, shard_id, write_shard
from pipelines.stats import StageStats, merge

log = logging.getLogger(__name__)

_NO_TIME = np.iinfo(np.int64).max
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


def _verified(edges: np.ndarray, inputs: list[str], offsets: np.ndarray, cfg: DedupConfig) -> np.ndarray:
    """Keep the candidate pairs whose exact shingle Jaccard reaches ``cfg.jaccard_threshold``."""
    needed = np.unique(edges)
    sets: dict[int, set[bytes]] = {}
    for s, path in enumerate(inputs):
        lo, hi = offsets[s], offsets[s + 1]
        rows = needed[(needed >= lo) & (needed < hi)]
        if not len(rows):
            continue
        table = read_table(path, columns=["text"], required=("text",)).slice(0, hi - lo)
        texts = table.column("text").take(pa.array(rows - lo)).to_pylist()
        sets.update(zip(rows.tolist(), shingle_sets(texts, cfg.ngram), strict=True))
    keep = np.array([jaccard(sets[int(a)], sets[int(b)]) >= cfg.jaccard_threshold for a, b in edges], dtype=bool)
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


def signature_bands(inputs: list[str], parts: BandPartitions, cfg: DedupConfig, limit: int | None) -> RunKeys:
    """Phase 1, per shard: keys (id, fetch_time) in memory, texts streamed: signatures → band hashes → band files."""
    ids_list, times_list, crawls, rows = [], [], [], []
    for path in inputs:
        ids, times, crawl = _shard_keys(path, limit)
        ids_list.append(ids)
        times_list.append(times)
        crawls.append(crawl)
        rows.append(len(ids))
        for texts in _texts(path, len(ids), cfg.batch_docs):
            sigs = minhash_signatures(texts, cfg, threads=cfg.workers or None)
            parts.append(band_hashes(sigs, cfg.num_bands, cfg.rows_per_band))
    offsets = np.r_[0, np.cumsum(rows)].astype(np.int64)
    n = int(offsets[-1])
    assert parts.count == n, (parts.count, n)
    ids = pa.chunked_array(ids_list, type=pa.string()).combine_chunks() if n else pa.array([], pa.string())
    times = np.concatenate(times_list) if n else np.empty(0, dtype=np.int64)
    return RunKeys(ids=ids, times=times, crawls=crawls, offsets=offsets)


def band_index(cfg: DedupConfig) -> BandIndex | None:
    """The cross-crawl index of ``cfg.index_dir`` (None without one), checked against this run's MinHash params."""
    if not cfg.index_dir:
        return None
    params = {"ngram": cfg.ngram, "num_bands": cfg.num_bands, "rows_per_band": cfg.rows_per_band, "seed": cfg.seed}
    return BandIndex(cfg.index_dir, params)


def candidate_edges(
    parts: BandPartitions, inputs: list[str], keys: RunKeys, cfg: DedupConfig
) -> tuple[int, np.ndarray]:
    """Phase 2: candidate pairs per band (process pool on big runs), optionally confirmed by exact shingle Jaccard;
    the number of candidates and the pairs that passed."""
    edges = candidate_pairs(parts, cfg.workers)
    candidates = len(edges)
    if cfg.jaccard_check and len(edges):
        edges = _verified(edges, inputs, keys.offsets, cfg)
    return candidates, edges


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


def _collect_examples(table: pa.Table, labels: np.ndarray, examples: dict[int, list[dict]]) -> None:
    """Add this shard's members of the largest clusters (``examples``' keys) to their examples, up to a few each."""
    for r in np.flatnonzero(np.isin(labels, list(examples))):
        members = examples[int(labels[r])]
        if len(members) < _REPORT_MEMBERS:
            row = table.slice(int(r), 1).to_pylist()[0]
            members.append({"id": row["id"], "url": row.get("url"), "text": (row["text"] or "")[:160]})


def _shard_decision_stats(path: str, lo: int, hi: int, dec: DedupDecisions, cfg: DedupConfig) -> StageStats:
    """One shard's counts: its drops by reason, or only the would-be drops with ``annotate_only``."""
    st = StageStats(stage="dedup", shard=shard_id(path), docs_in=hi - lo)
    n_cluster, n_earlier = int(dec.is_dup_cluster[lo:hi].sum()), int(dec.earlier[lo:hi].sum())
    if cfg.annotate_only:
        st.docs_kept = hi - lo
        st.extra["would_drop_minhash_duplicate"] = n_cluster
        st.extra["would_drop_minhash_earlier_crawl"] = n_earlier
    else:
        st.docs_kept = hi - lo - n_cluster - n_earlier
        if n_cluster:
            st.drop("minhash_duplicate", n_cluster)
        if n_earlier:
            st.drop("minhash_earlier_crawl", n_earlier)
    return st


def apply_decisions(
    inputs: list[str], out_dir: Path, keys: RunKeys, dec: DedupDecisions, cfg: DedupConfig, t0: float
) -> tuple[list[StageStats], dict[int, list[dict]]]:
    """Phase 4, per shard: annotate (``minhash_cluster``, ``is_duplicate``), drop unless ``annotate_only``, write;
    the shards' stats and example members of the largest clusters (by cluster label) for the report."""
    n, sizes = keys.n, dec.sizes
    largest = [int(c) for c in np.argsort(-sizes, kind="stable")[:_REPORT_CLUSTERS] if sizes[c] > 1]
    examples: dict[int, list[dict]] = {c: [] for c in largest}
    cluster_id = keys.ids.take(pa.array(dec.rep)) if n else pa.array([], pa.string())
    shard_stats = []
    for s, path in enumerate(inputs):
        lo, hi = int(keys.offsets[s]), int(keys.offsets[s + 1])
        table = read_table(path)
        table = table.slice(0, hi - lo)
        dup = pa.array(dec.drop[lo:hi], pa.bool_())
        t2 = table.append_column("minhash_cluster", cluster_id.slice(lo, hi - lo)).append_column("is_duplicate", dup)
        _collect_examples(table, dec.labels[lo:hi], examples)
        st = _shard_decision_stats(path, lo, hi, dec, cfg)
        if not cfg.annotate_only:
            t2 = t2.filter(pc.invert(dup))
        st.seconds = time.monotonic() - t0
        shard_stats.append(write_shard(t2, out_dir / f"{shard_id(path)}.parquet", st, cfg, inputs))
    return shard_stats, examples


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


def _total_stats(shard_stats: list[StageStats], dec: DedupDecisions, report: dict) -> StageStats:
    """The run's stats: the shards' merged, plus the cluster figures."""
    multi = dec.sizes[dec.sizes > 1]
    total = merge(shard_stats, "dedup")
    total.extra.update(
        {
            "candidate_pairs": int(dec.candidates),
            "clusters_with_duplicates": int(len(multi)),
            "duplicates": int(dec.drop.sum()),
            "cluster_size_max": int(multi.max()) if len(multi) else 1,
            "cluster_size_mean": float(multi.mean()) if len(multi) else 1.0,
            **{f"clusters_size_{k}": v for k, v in report["cluster_size_histogram"].items()},
        }
    )
    return total


def run_dedup(inputs: list[str], output: str, cfg: DedupConfig, *, limit: int | None = None) -> StageStats:
    """Deduplicate all ``inputs`` together; write one output shard per input into the directory ``output``."""
    t0 = time.monotonic()
    out_dir = Path(output)
    parts = BandPartitions(out_dir / "_bands", cfg.num_bands, reset=True)
    keys = signature_bands(inputs, parts, cfg, limit)
    t_sig = time.monotonic()
    candidates, edges = candidate_edges(parts, inputs, keys, cfg)
    index = band_index(cfg)
    dec = decide_duplicates(parts, keys, candidates, edges, index, cfg)
    t_cluster = time.monotonic()
    shard_stats, examples = apply_decisions(inputs, out_dir, keys, dec, cfg, t0)
    indexed = update_index(index, parts, keys.crawls, cfg)

    report = cluster_report(keys, dec, examples, indexed, cfg)
    report["seconds"] = {"signatures": t_sig - t0, "clusters": t_cluster - t_sig, "total": time.monotonic() - t0}
    atomic_write_bytes(out_dir / "_clusters.json", json.dumps(report, indent=2).encode())
    atomic_write_bytes(out_dir / "_clusters.md", _report_markdown(report).encode())

    total = _total_stats(shard_stats, dec, report)
    total.seconds = time.monotonic() - t0
    log.info(
        "dedup: %d docs, %d candidate pairs, %d clusters with duplicates, %d duplicates, %d from earlier crawls",
        keys.n,
        dec.candidates,
        report["clusters_with_duplicates"],
        report["duplicates_in_clusters"],
        report["dropped_earlier_crawl"],
    )
    return total


def index_complete(inputs: list[str], output: str, cfg: DedupConfig | None) -> bool:
    """The stage registry's completeness check: the crawl's entry in the cross-crawl index is still there
    (else dedup reruns and rebuilds it)."""
    return cfg is None or index_up_to_date(output, cfg)


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
