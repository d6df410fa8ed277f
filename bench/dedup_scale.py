"""Dedup at scale: peak memory and time of the cluster stage (and of the whole stage) at 10^4 .. 10^6 documents.

    nice -n 5 .venv/bin/python -m bench.dedup_scale --sizes 10000 100000 1000000 --write bench/RESULTS.md

Each measurement runs in a fresh child process; peak RSS is the child's ru_maxrss, and that of its own children
(the band-grouping process pool) when larger.

- cluster: synthetic signatures (the issue allows it) streamed in batches of 50,000 into lmpipe's on-disk band
  partitions, then the cluster stage exactly as run_dedup runs it: candidate pairs per band (a process pool on all
  cores from 200,000 documents), connected components, survivors (earliest fetch time, then smallest id). Planted:
  20 % of the documents are near copies (10 % of their 112 values changed) of 20,000 heads drawn Zipf-like, so
  there are clusters of 2 to thousands; the check counts documents put into the right cluster.
- pipeline: ``run_dedup`` end to end on synthetic text shards (100,000 documents each; 60 words from a
  5,000-word vocabulary, 10 % near copies of another, original document of the shard with one word changed): read,
  signatures, bands, clusters, output shards.

Benchmarks are not tests: nothing here asserts a timing or a memory figure.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

from bench.dedup_corpus import write_section

BATCH = 50_000


def _peak_mib() -> float:
    self_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(self_kib, children_kib) / 1024


def cluster_child(n: int, workdir: Path) -> dict:
    import pyarrow as pa

    from pipelines.config import DedupConfig
    from pipelines.dedup import survivors
    from pipelines.lsh import BandPartitions, band_hashes, candidate_pairs, components

    cfg = DedupConfig()
    rng = np.random.default_rng(0)
    heads = rng.integers(0, 2**64, size=(20_000, cfg.num_perm), dtype=np.uint64)
    parts = BandPartitions(workdir / "bands", cfg.num_bands, reset=True)
    truth = np.empty(n, dtype=np.int64)  # planted cluster (head index) or -1
    t0 = time.monotonic()
    for start in range(0, n, BATCH):
        m = min(BATCH, n - start)
        sig = rng.integers(0, 2**64, size=(m, cfg.num_perm), dtype=np.uint64)
        copy = rng.random(m) < 0.2
        head = np.minimum(rng.zipf(1.3, size=m) - 1, len(heads) - 1)
        changed = rng.random((m, cfg.num_perm)) < 0.1
        near = np.where(changed, sig, heads[head])
        sig[copy] = near[copy]
        truth[start : start + m] = np.where(copy, head, -1)
        parts.append(band_hashes(sig, cfg.num_bands, cfg.rows_per_band))
    t_bands = time.monotonic() - t0

    t1 = time.monotonic()
    edges = candidate_pairs(parts, workers=0)
    labels = components(n, edges)
    ids = pa.array([f"doc-{i:09d}" for i in range(n)], pa.string())
    times = rng.integers(1_600_000_000, 1_700_000_000, size=n)
    rep = survivors(labels, times, ids)
    t_cluster = time.monotonic() - t1

    # Check: copies of one head share one label; random documents are alone.
    planted = truth >= 0
    label_of_head = {}
    right = 0
    for i in np.flatnonzero(planted):
        right += label_of_head.setdefault(int(truth[i]), int(labels[i])) == labels[i]
    sizes = np.bincount(labels)
    alone = int((sizes[labels[~planted]] == 1).sum())
    return {
        "mode": "cluster",
        "docs": n,
        "band_files_s": round(t_bands, 2),
        "cluster_s": round(t_cluster, 2),
        "edges": len(edges),
        "clusters_with_duplicates": int((sizes > 1).sum()),
        "largest_cluster": int(sizes.max()),
        "duplicates": int((rep != np.arange(n)).sum()),
        "planted_in_right_cluster": round(right / max(1, planted.sum()), 4),
        "unplanted_alone": round(alone / max(1, (~planted).sum()), 4),
        "peak_rss_mib": round(_peak_mib(), 1),
    }


def pipeline_child(n: int, workdir: Path) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.config import DedupConfig
    from pipelines.dedup import run_dedup

    rng = np.random.default_rng(1)
    vocab = np.array([f"w{i}" for i in range(5000)])
    shards = []
    per_shard = 100_000
    planted = 0
    t0 = time.monotonic()
    for s, start in enumerate(range(0, n, per_shard)):
        m = min(per_shard, n - start)
        words = vocab[rng.integers(0, len(vocab), size=(m, 60))]
        is_copy = rng.random(m) < 0.1
        copy, originals = np.flatnonzero(is_copy), np.flatnonzero(~is_copy)
        src = originals[rng.integers(0, len(originals), size=len(copy))]
        words[copy] = words[src]
        words[copy, rng.integers(0, 60, size=len(copy))] = "changed"  # Jaccard ~0.85 to the source
        planted += len(copy)
        texts = [" ".join(row) for row in words]
        del words
        path = workdir / f"in-{s:03d}.parquet"
        ids = [f"doc-{start + i:09d}" for i in range(m)]
        pq.write_table(pa.table({"id": ids, "text": texts}), path)
        shards.append(str(path))
        del texts, ids
    t_gen = time.monotonic() - t0
    base = _peak_mib()
    t1 = time.monotonic()
    stats = run_dedup(shards, str(workdir / "out"), DedupConfig())
    report = json.loads((workdir / "out" / "_clusters.json").read_text())
    return {
        "mode": "pipeline",
        "docs": n,
        "generate_s": round(t_gen, 1),
        "run_dedup_s": round(time.monotonic() - t1, 1),
        "signatures_s": round(report["seconds"]["signatures"], 1),
        "cluster_s": round(report["seconds"]["clusters"], 1),
        "duplicates": sum(stats.dropped.values()),
        "planted_copies": planted,
        "peak_rss_mib": round(_peak_mib(), 1),
        "peak_rss_before_run_mib": round(base, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--pipeline-sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--write", type=Path, help="append/replace the section in this RESULTS.md")
    parser.add_argument("--child", choices=["cluster", "pipeline"], help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        fn = cluster_child if args.child == "cluster" else pipeline_child
        print(json.dumps(fn(args.n, args.workdir)))
        return

    rows = []
    jobs = [("cluster", n) for n in args.sizes] + [("pipeline", n) for n in args.pipeline_sizes]
    for mode, n in jobs:
        with tempfile.TemporaryDirectory(prefix="dedup-scale-") as tmp:
            cmd = [sys.executable, "-m", "bench.dedup_scale", "--child", mode, "--n", str(n), "--workdir", tmp]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)

    sizes = " ".join(map(str, args.sizes))
    psizes = " ".join(map(str, args.pipeline_sizes))
    lines = [
        "# Dedup: memory and time at scale",
        "",
        f"Produced by `nice -n 5 .venv/bin/python -m bench.dedup_scale --sizes {sizes} --pipeline-sizes {psizes} "
        f"--write bench/RESULTS.md` on 2 cores ({date.today()}); see the script's docstring. Peak RSS per child "
        "process (max of the process and its pool workers).",
        "",
        "Cluster stage, synthetic signatures (112 values, 20 % planted near copies of Zipf-drawn heads):",
        "",
        "| documents | peak RSS MiB | cluster stage s | band files s | candidate edges | clusters | largest | "
        "planted in right cluster | unplanted alone |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["mode"] == "cluster":
            lines.append(
                f"| {r['docs']:,} | {r['peak_rss_mib']:,.0f} | {r['cluster_s']} | {r['band_files_s']} | "
                f"{r['edges']:,} | {r['clusters_with_duplicates']:,} | {r['largest_cluster']:,} | "
                f"{r['planted_in_right_cluster']} | {r['unplanted_alone']} |"
            )
    lines += [
        "",
        "Whole stage, `run_dedup` on synthetic text shards (60 words per document, 10 % near copies):",
        "",
        "| documents | peak RSS MiB | run_dedup s | of which signatures s | of which clusters s | dropped | planted |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["mode"] == "pipeline":
            lines.append(
                f"| {r['docs']:,} | {r['peak_rss_mib']:,.0f} | {r['run_dedup_s']} | {r['signatures_s']} | "
                f"{r['cluster_s']} | {r['duplicates']:,} | {r['planted_copies']:,} |"
            )
    report = "\n".join(lines)
    print(report)
    if args.write:
        write_section(args.write, "scale", report)


if __name__ == "__main__":
    main()
