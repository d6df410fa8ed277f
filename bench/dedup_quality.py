"""Dedup quality: detection of near-duplicate pairs made from real text by controlled edits, against the S-curve.

    nice -n 5 .venv/bin/python -m bench.dedup_quality --write bench/RESULTS.md   # + bench/dedup_quality.png

Pairs: each AEB gold article of at least 100 words (real news/blog text, bench/dedup_corpus.py) against copies of
itself edited at ``--rates`` word-edit probabilities up to ``--max-rate`` (spaced quadratically, so pairs spread
over the whole Jaccard range; a word is replaced, deleted, or followed by an inserted word), ``--reps`` seeds each.
The similarity of a pair is measured exactly: Jaccard of the two sets of word 5-gram shingles of lmpipe's
normalised text. A pair is detected when lmpipe's LSH makes it a candidate (equal hash in at least one of the 14
bands of 8 rows of the 112-permutation signature), and, with the exact check on, when its Jaccard also reaches
``jaccard_threshold`` (DedupConfig.jaccard_check). Theory for one pair of similarity s: 1 - (1 - s**8)**14.

Reports recall over pairs with Jaccard >= 0.8, the false-positive rate over pairs with Jaccard <= 0.5, the measured
detection rate per 0.05 Jaccard bin beside the S-curve, and a plot. Benchmarks are not tests: nothing asserts.
"""

from __future__ import annotations

import argparse
import random
from datetime import date
from pathlib import Path

import numpy as np

from bench.dedup_corpus import edit, real_documents, write_section
from pipelines.config import DedupConfig
from pipelines.lsh import band_hashes
from pipelines.minhash import jaccard, minhash_signatures, shingle_sets

CFG = DedupConfig()
PNG = Path(__file__).with_name("dedup_quality.png")


def s_curve(s: np.ndarray, bands: int = CFG.num_bands, rows: int = CFG.rows_per_band) -> np.ndarray:
    return 1 - (1 - s**rows) ** bands


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=int, default=50, help="edit rates from 0 to --max-rate, quadratic spacing")
    parser.add_argument("--max-rate", type=float, default=0.45)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--write", type=Path, help="append/replace the section in this RESULTS.md")
    args = parser.parse_args()

    originals = [t for t in real_documents(gold_only=True) if len(t.split()) >= 100]
    rng = random.Random(0)
    pairs, edited = [], []
    for i, text in enumerate(originals):
        for rate in args.max_rate * np.linspace(0, 1, args.rates + 1)[1:] ** 2:  # denser at small edits
            for _ in range(args.reps):
                pairs.append(i)
                edited.append(edit(text, float(rate), rng))
    texts = originals + edited
    bands = band_hashes(minhash_signatures(texts, CFG), CFG.num_bands, CFG.rows_per_band)
    sets = shingle_sets(texts, CFG.ngram)
    sim = np.array([jaccard(sets[i], sets[len(originals) + k]) for k, i in enumerate(pairs)])
    candidate = np.array([(bands[i] == bands[len(originals) + k]).any() for k, i in enumerate(pairs)])
    checked = candidate & (sim >= CFG.jaccard_threshold)

    high, low = sim >= 0.8, sim <= 0.5
    lines = [
        "# Dedup: near-duplicate detection on real text (controlled edits, exact Jaccard)",
        "",
        f"Produced by `nice -n 5 .venv/bin/python -m bench.dedup_quality --rates {args.rates} --max-rate "
        f"{args.max_rate} --reps {args.reps} --write bench/RESULTS.md` ({date.today()}); see the script's docstring. "
        f"{len(originals)} AEB articles x {len(pairs) // len(originals)} edited copies = {len(pairs)} pairs; "
        f"LSH {CFG.num_bands} bands x {CFG.rows_per_band} rows, word {CFG.ngram}-grams.",
        "",
        "| measure | pairs | LSH only | LSH + exact Jaccard check (>= "
        f"{CFG.jaccard_threshold}) | S-curve expectation for these pairs |",
        "|---|---:|---:|---:|---:|",
        f"| recall, Jaccard >= 0.8 | {high.sum()} | {candidate[high].mean():.4f} | {checked[high].mean():.4f} | "
        f"{s_curve(sim[high]).mean():.4f} |",
        f"| false-positive rate, Jaccard <= 0.5 | {low.sum()} | {candidate[low].mean():.4f} | "
        f"{checked[low].mean():.4f} | {s_curve(sim[low]).mean():.4f} |",
        "",
        "Detection rate per Jaccard bin (LSH only) against the S-curve at the bin's mean Jaccard:",
        "",
        "| Jaccard bin | pairs | detected | S-curve |",
        "|---|---:|---:|---:|",
    ]
    edges = np.round(np.arange(0, 1.0001, 0.05), 2)
    centers, rates = [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (sim >= lo) & ((sim < hi) if hi < 1 else (sim <= hi))
        if inside.sum() == 0:
            continue
        centers.append(sim[inside].mean())
        rates.append(candidate[inside].mean())
        lines.append(f"| {lo:.2f}–{hi:.2f} | {inside.sum()} | {rates[-1]:.3f} | {s_curve(np.array(centers[-1])):.3f} |")
    lines += ["", f"![detection curve]({PNG.name})"]
    _plot(sim, candidate, np.array(centers), np.array(rates))
    report = "\n".join(lines)
    print(report)
    if args.write:
        write_section(args.write, "quality", report)


def _plot(sim: np.ndarray, candidate: np.ndarray, centers: np.ndarray, rates: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = np.linspace(0, 1, 201)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(s, s_curve(s), label=f"theory 1-(1-s^{CFG.rows_per_band})^{CFG.num_bands}", color="black")
    jitter = np.random.default_rng(0).uniform(-0.03, 0.03, len(sim))
    ax.scatter(sim, candidate + jitter, s=2, alpha=0.15, color="tab:blue", label="pairs (detected = 1)")
    ax.plot(centers, rates, "o-", color="tab:red", label="measured, per 0.05 bin")
    ax.axvline(0.8, ls=":", color="gray")
    ax.axvline(0.5, ls=":", color="gray")
    ax.set_xlabel("exact Jaccard of 5-gram shingle sets")
    ax.set_ylabel("P(candidate pair)")
    ax.set_title("lmpipe MinHash LSH on edited AEB articles")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(PNG)


if __name__ == "__main__":
    main()
