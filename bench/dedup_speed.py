"""MinHash signature speed: lmpipe vs datasketch (per-document MinHash) vs rensa, same documents, one run.

    .venv/bin/pip install -e '.[bench]'     # rensa
    nice -n 5 .venv/bin/python -m bench.dedup_speed --rounds 3 --write bench/RESULTS.md

Workload: the 1,116 real documents of bench/dedup_corpus.py (``--copies`` times), 112 permutations, word 5-grams.
Every system starts from the raw texts and pays for the same normalisation; the peers get their shingle sets from
lmpipe's ``shingle_sets`` (normalisation batched, n-grams cut in Python: the sets datasketch and rensa take):

- datasketch: ``MinHash(112, seed=1, scheme="affine64").update_batch(shingles)`` per document (its documented use).
- rensa: ``RMinHash.digest_matrix_from_token_byte_sets`` (its bulk API, the fastest it offers).
- lmpipe: ``minhash_signatures`` (numba kernels, batches on all cores) and the same with one thread.

The systems alternate within each round (order rotated per round), so a busy machine slows all of them alike; the
report gives each round's ratio and the median. lmpipe's signatures are checked equal to datasketch's.
Benchmarks are not tests: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import date
from pathlib import Path

import numpy as np

from bench.dedup_corpus import real_documents, write_section
from pipelines.config import DedupConfig
from pipelines.minhash import minhash_signatures, shingle_sets

CFG = DedupConfig()


def run_datasketch(texts: list[str]) -> np.ndarray:
    from datasketch import MinHash

    out = np.empty((len(texts), CFG.num_perm), dtype=np.uint64)
    for i, grams in enumerate(shingle_sets(texts, CFG.ngram)):
        m = MinHash(num_perm=CFG.num_perm, seed=CFG.seed, scheme="affine64")
        m.update_batch(grams)
        out[i] = m.hashvalues
    return out


def run_rensa(texts: list[str]) -> object:
    from rensa import RMinHash

    return RMinHash.digest_matrix_from_token_byte_sets(shingle_sets(texts, CFG.ngram), CFG.num_perm, CFG.seed)


SYSTEMS = {
    "lmpipe": lambda t: minhash_signatures(t, CFG),
    "lmpipe-1-thread": lambda t: minhash_signatures(t, CFG, threads=1),
    "datasketch": run_datasketch,
    "rensa": run_rensa,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--copies", type=int, default=1, help="repeat the 1,116 documents this many times")
    parser.add_argument("--write", type=Path, help="append/replace the section in this RESULTS.md")
    args = parser.parse_args()

    texts = real_documents() * args.copies
    words = sum(len(t.split()) for t in texts)
    # Warm-up (numba's compile, imports) and the equality check, outside the timings.
    assert (minhash_signatures(texts[:200], CFG) == run_datasketch(texts[:200])).all()
    run_rensa(texts[:10])

    seconds: dict[str, list[float]] = {name: [] for name in SYSTEMS}
    cpu: dict[str, list[float]] = {name: [] for name in SYSTEMS}
    names = list(SYSTEMS)
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0, c0 = time.perf_counter(), time.process_time()
            SYSTEMS[name](texts)
            seconds[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
            print(f"round {r + 1} {name}: {seconds[name][-1]:.2f} s, CPU {cpu[name][-1]:.2f} s", flush=True)

    def ratios(peer: str, system: str, of: dict[str, list[float]]) -> list[float]:
        return [p / s for p, s in zip(of[peer], of[system], strict=True)]

    lines = [
        "# Dedup: MinHash signature speed (lmpipe vs datasketch vs rensa)",
        "",
        f"Produced by `nice -n 5 .venv/bin/python -m bench.dedup_speed --rounds {args.rounds} --copies {args.copies} "
        f"--write bench/RESULTS.md` on {os.cpu_count()} cores ({date.today()}); see the script's docstring for the "
        f"method. Workload: {len(texts)} real documents, {words:,} words, 112 permutations, word 5-grams; every "
        "system from raw text (normalisation and shingling included).",
        "",
        "| system | median wall s | docs/s | per-round wall s | median CPU s |",
        "|---|---:|---:|---|---:|",
    ]
    for name in names:
        med = statistics.median(seconds[name])
        per = " ".join(f"{s:.2f}" for s in seconds[name])
        lines.append(f"| {name} | {med:.2f} | {len(texts) / med:,.0f} | {per} | {statistics.median(cpu[name]):.2f} |")
    lines += [
        "",
        "Ratios: wall time (signatures/s on the machine as it was) and CPU time (work per signature, which other "
        "processes on a shared machine disturb less).",
        "",
        "| ratio | per round (wall) | median (wall) | median (CPU) |",
        "|---|---|---:|---:|",
    ]
    for system, peer in [("lmpipe", "datasketch"), ("lmpipe", "rensa"), ("lmpipe-1-thread", "datasketch"),
                         ("lmpipe-1-thread", "rensa")]:  # fmt: skip
        rs = ratios(peer, system, seconds)
        rc = statistics.median(ratios(peer, system, cpu))
        lines.append(
            f"| {system} / {peer} | {' '.join(f'{x:.1f}' for x in rs)} | {statistics.median(rs):.1f} | {rc:.1f} |"
        )
    report = "\n".join(lines)
    print(report)
    if args.write:
        write_section(args.write, "speed", report)


if __name__ == "__main__":
    main()
