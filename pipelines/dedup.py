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


def run_dedup(inputs: list[str], output: str, cfg: DedupConfig, *, limit: int | None = None) -> StageStats:
    """Deduplicate all ``inputs`` together; write one output shard per input into the directory ``output``."""
    t0 = time.monotonic()
    out_dir = Path(output)
    parts = BandPartitions(out_dir / "_bands", cfg.num_bands, reset=True)

    # 1. Keys (id, fetch_time) in memory, texts streamed: signatures → band hashes → band files.
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
    t_sig = time.monotonic()

    # 2. Candidate pairs per band (process pool on big runs), optional exact check, connected components.
    edges = candidate_pairs(parts, cfg.workers)
    candidates = len(edges)
    if cfg.jaccard_check and len(edges):
        edges = _verified(edges, inputs, offsets, cfg)
    labels = components(n, edges)
    rep = survivors(labels, times, ids)
    is_dup = rep != np.arange(n)

    # 3. Earlier crawls: a cluster with any member in the index goes entirely.
    index = None
    if cfg.index_dir:
        params = {"ngram": cfg.ngram, "num_bands": cfg.num_bands, "rows_per_band": cfg.rows_per_band, "seed": cfg.seed}
        index = BandIndex(cfg.index_dir, params)
    earlier = np.zeros(n, dtype=bool)
    if cfg.scope == "global":
        if index is None:
            raise ValueError("dedup scope=global needs index_dir (the band-hash index of earlier crawls)")
        hit = index.matches(parts, index.earlier(_crawl_of(crawls)))
        seen = np.zeros(labels.max() + 1 if n else 0, dtype=bool)
        seen[labels[hit]] = True
        earlier = seen[labels] if n else earlier
    is_dup_cluster = is_dup & ~earlier
    drop = is_dup_cluster | earlier
    t_cluster = time.monotonic()

    # 4. Outputs, one shard per input; examples of the largest clusters for the report.
    sizes = np.bincount(labels) if n else np.empty(0, dtype=np.int64)
    largest = [int(c) for c in np.argsort(-sizes, kind="stable")[:_REPORT_CLUSTERS] if sizes[c] > 1]
    examples: dict[int, list[dict]] = {c: [] for c in largest}
    cluster_id = ids.take(pa.array(rep)) if n else pa.array([], pa.string())
    shard_stats = []
    for s, path in enumerate(inputs):
        lo, hi = int(offsets[s]), int(offsets[s + 1])
        table = read_table(path)
        table = table.slice(0, hi - lo)
        dup = pa.array(drop[lo:hi], pa.bool_())
        t2 = table.append_column("minhash_cluster", cluster_id.slice(lo, hi - lo)).append_column("is_duplicate", dup)
        for r in np.flatnonzero(np.isin(labels[lo:hi], largest)):
            members = examples[int(labels[lo + r])]
            if len(members) < _REPORT_MEMBERS:
                row = table.slice(int(r), 1).to_pylist()[0]
                members.append({"id": row["id"], "url": row.get("url"), "text": (row["text"] or "")[:160]})
        st = StageStats(stage="dedup", shard=shard_id(path), docs_in=hi - lo)
        n_cluster, n_earlier = int(is_dup_cluster[lo:hi].sum()), int(earlier[lo:hi].sum())
        if cfg.annotate_only:
            st.docs_kept = hi - lo
            st.extra["would_drop_minhash_duplicate"] = n_cluster
            st.extra["would_drop_minhash_earlier_crawl"] = n_earlier
        else:
            t2 = t2.filter(pc.invert(dup))
            st.docs_kept = hi - lo - n_cluster - n_earlier
            if n_cluster:
                st.drop("minhash_duplicate", n_cluster)
            if n_earlier:
                st.drop("minhash_earlier_crawl", n_earlier)
        st.seconds = time.monotonic() - t0
        shard_stats.append(write_shard(t2, out_dir / f"{shard_id(path)}.parquet", st, cfg, inputs))

    indexed = None
    if index is not None and cfg.update_index:
        if any(crawls):
            indexed = _crawl_of(crawls)
            index.add(indexed, parts)
        else:
            log.warning("dedup index: no crawl_id column in the inputs, %s not updated", cfg.index_dir)

    # 5. Cluster statistics and the report.
    multi = sizes[sizes > 1]
    histogram = Counter("2" if s == 2 else "3-9" if s < 10 else "10-99" if s < 100 else "100+" for s in multi.tolist())
    report = {
        "documents": n,
        "candidate_pairs": int(candidates),
        "edges_after_check": int(len(edges)),
        "clusters_with_duplicates": int(len(multi)),
        "duplicates_in_clusters": int(is_dup_cluster.sum()),
        "dropped_earlier_crawl": int(earlier.sum()),
        "cluster_size_histogram": {k: histogram.get(k, 0) for k in ("2", "3-9", "10-99", "100+")},
        "largest_clusters": [
            {"size": int(sizes[c]), "survivor": ids[int(rep[np.flatnonzero(labels == c)[0]])].as_py(), "members": m}
            for c, m in examples.items()
        ],
        "index": {"dir": cfg.index_dir, "crawl_added": indexed},
        "seconds": {"signatures": t_sig - t0, "clusters": t_cluster - t_sig, "total": time.monotonic() - t0},
    }
    atomic_write_bytes(out_dir / "_clusters.json", json.dumps(report, indent=2).encode())
    atomic_write_bytes(out_dir / "_clusters.md", _report_markdown(report).encode())

    total = merge(shard_stats, "dedup")
    total.extra.update(
        {
            "candidate_pairs": int(candidates),
            "clusters_with_duplicates": int(len(multi)),
            "duplicates": int(drop.sum()),
            "cluster_size_max": int(multi.max()) if len(multi) else 1,
            "cluster_size_mean": float(multi.mean()) if len(multi) else 1.0,
            **{f"clusters_size_{k}": v for k, v in report["cluster_size_histogram"].items()},
        }
    )
    total.seconds = time.monotonic() - t0
    log.info(
        "dedup: %d docs, %d candidate pairs, %d clusters with duplicates, %d duplicates, %d from earlier crawls",
        n,
        candidates,
        len(multi),
        int(is_dup_cluster.sum()),
        int(earlier.sum()),
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
