"""Dedup quality: detection of near-duplicate pairs made from real text by controlled edits, against the S-curve.

    nice -n 5 .venv/bin/python -m bench.dedup_quality --write bench/RESULTS.md   # + bench/dedup_quality.png

Pairs: each AEB gold article of at least 100 words (real news/blog text, bench/dedup_corpus.py) against copies of
itself edited at ``--rates`` word-edit probabilities up to ``--max-rate`` (spaced quadratically, so pairs spread
over the whole Jaccard range; a word is replaced, deleted, or followed by an inserted word), ``--reps`` seeds each.
The similarity of a pair is measured exactly: Jaccard of the two sets of word 5-gram shingles of lmpipe's
normalised text. A pair is detected by a preset when its LSH makes it a candidate (equal hash in at least one band:
fineweb 14 bands x 8 rows, verified 18 x 6), and, with the exact check on, when its Jaccard also reaches
``jaccard_threshold`` (DedupConfig.jaccard_check; verified's decision). Theory for one pair of similarity s:
1 - (1 - s**rows)**bands.

Reports, per preset, recall over pairs with Jaccard >= 0.8, the false-positive rate over pairs with Jaccard <= 0.5,
the measured detection rate per 0.05 Jaccard bin beside the S-curve, and a plot. The same on a fresh set of text
nobody tuned on: bench/dedup_fresh_set.py. Benchmarks are not tests: nothing asserts.
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
PRESETS = {name: DedupConfig(preset=name) for name in DedupConfig.presets()}
PNG = Path(__file__).with_name("dedup_quality.png")


def s_curve(s: np.ndarray, bands: int = CFG.num_bands, rows: int = CFG.rows_per_band) -> np.ndarray:
    return 1 - (1 - s**rows) ** bands


def _candidates(texts: list[str], pairs: list[int], originals: int, cfg: DedupConfig) -> np.ndarray:
    """Per pair (original ``pairs[k]``, copy ``originals + k``): some band hash of the two agrees."""
    bands = band_hashes(minhash_signatures(texts, cfg), cfg.num_bands, cfg.rows_per_band)
    return np.array([(bands[i] == bands[originals + k]).any() for k, i in enumerate(pairs)])


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
    sets = shingle_sets(texts, CFG.ngram)
    sim = np.array([jaccard(sets[i], sets[len(originals) + k]) for k, i in enumerate(pairs)])
    found = {name: _candidates(texts, pairs, len(originals), cfg) for name, cfg in PRESETS.items()}
    high, low = sim >= 0.8, sim <= 0.5
    lines = [
        "# Dedup: near-duplicate detection on real text (controlled edits, exact Jaccard)",
        "",
        f"Produced by `nice -n 5 .venv/bin/python -m bench.dedup_quality --rates {args.rates} --max-rate "
        f"{args.max_rate} --reps {args.reps} --write bench/RESULTS.md` ({date.today()}); see the script's docstring. "
        f"{len(originals)} AEB articles x {len(pairs) // len(originals)} edited copies = {len(pairs)} pairs; "
        f"word {CFG.ngram}-grams. Default preset: `{CFG.preset}`.",
        "",
        "| preset | measure | pairs | LSH only | LSH + exact Jaccard check (>= "
        f"{CFG.jaccard_threshold}) | S-curve expectation for these pairs |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, cfg in PRESETS.items():
        shape = f"`{name}` {cfg.num_bands}x{cfg.rows_per_band}" + (" (check on)" if cfg.jaccard_check else "")
        cand, checked = found[name], found[name] & (sim >= CFG.jaccard_threshold)
        for label, mask in (("recall, Jaccard >= 0.8", high), ("false-positive rate, Jaccard <= 0.5", low)):
            lines.append(f"| {shape} | {label} | {mask.sum()} | {cand[mask].mean():.4f} | {checked[mask].mean():.4f} "
                         f"| {s_curve(sim[mask], cfg.num_bands, cfg.rows_per_band).mean():.4f} |")  # fmt: skip
    bin_lines, centers, rates = _bin_rows(sim, found)
    lines += bin_lines
    lines += ["", f"![detection curve]({PNG.name})"]
    _plot(sim, found[CFG.preset], centers, rates)
    report = "\n".join(lines)
    print(report)
    if args.write:
        write_section(args.write, "quality", report)


def _bin_rows(sim: np.ndarray, found: dict[str, np.ndarray]) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    """The per-bin table (each preset's detection rate beside its S-curve), the bins' mean Jaccard, the rates."""
    lines = [
        "",
        "Detection rate per Jaccard bin (LSH only) against the S-curve at the bin's mean Jaccard:",
        "",
        "| Jaccard bin | pairs | " + " | ".join(f"{n} detected | {n} S-curve" for n in PRESETS) + " |",
        "|---|---:|" + "---:|---:|" * len(PRESETS),
    ]
    edges = np.round(np.arange(0, 1.0001, 0.05), 2)
    centers, rates = [], {n: [] for n in PRESETS}
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (sim >= lo) & ((sim < hi) if hi < 1 else (sim <= hi))
        if inside.sum() == 0:
            continue
        centers.append(sim[inside].mean())
        cells = []
        for name, cfg in PRESETS.items():
            rates[name].append(found[name][inside].mean())
            cells.append(
                f"{rates[name][-1]:.3f} | {s_curve(np.array(centers[-1]), cfg.num_bands, cfg.rows_per_band):.3f}"
            )
        lines.append(f"| {lo:.2f}–{hi:.2f} | {inside.sum()} | " + " | ".join(cells) + " |")
    return lines, np.array(centers), {n: np.array(r) for n, r in rates.items()}


def _plot(sim: np.ndarray, candidate: np.ndarray, centers: np.ndarray, rates: dict[str, np.ndarray]) -> None:
    """Each preset's S-curve and measured rate per bin; the pairs as the default preset decides them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = np.linspace(0, 1, 201)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for (name, cfg), color in zip(PRESETS.items(), ("tab:red", "tab:green"), strict=False):
        b, r = cfg.num_bands, cfg.rows_per_band
        ax.plot(s, s_curve(s, b, r), color=color, lw=0.8, label=f"{name}: theory 1-(1-s^{r})^{b}")
        ax.plot(centers, rates[name], "o", ms=3, color=color, label=f"{name}: measured, per 0.05 bin")
    jitter = np.random.default_rng(0).uniform(-0.03, 0.03, len(sim))
    ax.scatter(sim, candidate + jitter, s=2, alpha=0.15, color="tab:blue", label=f"pairs, {CFG.preset} (candidate = 1)")
    ax.axvline(0.8, ls=":", color="gray")
    ax.axvline(0.5, ls=":", color="gray")
    ax.set_xlabel("exact Jaccard of 5-gram shingle sets")
    ax.set_ylabel("P(candidate pair)")
    ax.set_title("lmpipe MinHash LSH on edited AEB articles")
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(PNG)


if __name__ == "__main__":
    main()
