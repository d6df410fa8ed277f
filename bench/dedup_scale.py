"""Dedup at scale: peak memory and time of the cluster stage (10^4 .. 10^7 documents) and of each dedup phase.

    nice -n 5 .venv/bin/python -m bench.dedup_scale --sizes 10000 100000 1000000 --write bench/RESULTS.md

Each measurement runs in a fresh child process; peak RSS is the child's ru_maxrss, and that of its own children
(the band-grouping process pool) when larger.

- cluster: synthetic signatures (the issue allows it) streamed in batches of 50,000 into lmpipe's on-disk band
  partitions, then the cluster stage exactly as run_dedup runs it: candidate pairs per band (a process pool on all
  cores from 200,000 documents), connected components, survivors (earliest fetch time, then smallest id). Planted:
  20 % of the documents are near copies (10 % of their 112 values changed) of 20,000 heads drawn Zipf-like, so
  there are clusters of 2 to thousands; the check counts documents put into the right cluster.
- pipeline: the dedup stage's phases (signatures per shard, candidate pairs per band group, clusters, apply per
  shard: ``registry.plan_phases``, the tasks the refresh flow submits), each phase in a fresh process, on synthetic
  text shards (100,000 documents each; 60 words from a 5,000-word vocabulary, 10 % near copies of another, original
  document of the shard with one word changed).

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
    phases = []
    for k in range(len(_dedup_phases(shards, workdir))):
        cmd = [sys.executable, "-m", "bench.dedup_scale", "--child", "phase", "--n", str(k), "--workdir", str(workdir)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        phases.append(json.loads(out.stdout.strip().splitlines()[-1]))
    dropped = sum(json.loads(p.read_text())["docs_in"] - json.loads(p.read_text())["docs_kept"]
                  for p in (workdir / "out" / "_stats").glob("*.json"))  # fmt: skip
    return {
        "mode": "pipeline",
        "docs": n,
        "generate_s": round(t_gen, 1),
        "phases": phases,
        "duplicates": dropped,
        "planted_copies": planted,
    }


def _dedup_phases(shards: list[str], workdir: Path) -> list:
    from pipelines import registry
    from pipelines.config import DedupConfig

    return registry.plan_phases(registry.get("dedup"), shards, str(workdir / "out"), DedupConfig())


def phase_child(k: int, workdir: Path) -> dict:
    """One phase of the dedup stage (its tasks one after the other) in a fresh process, on the shards and the
    earlier phases' outputs in ``workdir``: what one cluster worker per task would see, summed."""
    from pipelines.config import DedupConfig

    shards = sorted(str(p) for p in workdir.glob("in-*.parquet"))
    phase, calls = _dedup_phases(shards, workdir)[k]
    cfg, task_s = DedupConfig(), []
    for call in calls:
        t0 = time.monotonic()
        phase.run(call.inputs, call.output, cfg)
        task_s.append(time.monotonic() - t0)
    return {
        "phase": phase.name,
        "shape": phase.shape,
        "tasks": len(calls),
        "seconds": round(sum(task_s), 2),
        "slowest_task_s": round(max(task_s), 2),
        "peak_rss_mib": round(_peak_mib(), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--pipeline-sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--write", type=Path, help="append/replace the section in this RESULTS.md")
    parser.add_argument("--child", choices=["cluster", "pipeline", "phase"], help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        fn = {"cluster": cluster_child, "pipeline": pipeline_child, "phase": phase_child}[args.child]
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
        "Whole stage, phase by phase as the refresh flow runs its tasks (each phase in a fresh process, its tasks "
        "one after the other), on synthetic text shards of 100,000 documents (60 words per document, 10 % near "
        "copies):",
        "",
        "| documents | phase | shape | tasks | seconds (all tasks) | slowest task s | peak RSS MiB |",
        "|---:|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["mode"] == "pipeline":
            for ph in r["phases"]:
                lines.append(
                    f"| {r['docs']:,} | {ph['phase']} | {ph['shape']} | {ph['tasks']} | {ph['seconds']} | "
                    f"{ph['slowest_task_s']} | {ph['peak_rss_mib']:,.0f} |"
                )
    lines.append("")
    for r in rows:
        if r["mode"] == "pipeline":
            lines.append(
                f"- {r['docs']:,} documents: {r['duplicates']:,} dropped, {r['planted_copies']:,} planted copies"
            )
    report = "\n".join(lines)
    print(report)
    if args.write:
        write_section(args.write, "scale", report)


if __name__ == "__main__":
    main()
