"""Near-dup S-curves on a fresh evaluation set built from text that is not in ../shared: dev and held-back splits.

    nice -n 19 .venv/bin/python -m bench.dedup_fresh_set --split dev          # tuning: every LSH shape tried
    nice -n 19 .venv/bin/python -m bench.dedup_fresh_set --split both --write bench/RESULTS.md

Why a second set: the 14x8 figures in RESULTS.md were measured on the AEB text the choices were tuned on. The
originals here are real text that ships with the interpreter and the installed packages, split by source:

- dev (seed 1): the docstrings of each Python standard-library module (``ast``, nothing imported), one document
  per module — Python's own documentation.
- held-back (seed 2): the long descriptions (README text) in the METADATA of the installed packages, plus Faker's
  lorem paragraphs in eight locales (de, fr, ru, pl, en, it, nl, cs: non-English normalisation). Evaluated only
  once the default was chosen on dev.

Each original gets ``--copies`` edited copies; a copy's recipe mixes paragraph moves, a boilerplate block taken
from another original (a sidebar, a footer), and word substitutions / deletions / insertions at a random rate. The
similarity of a pair is its exact Jaccard on the shingles the signatures use (``pipelines.minhash.shingle_sets``:
word 5-grams of the normalised text); pairs are stratified to at most ``--per-bin`` per 0.05 bin over 0.30-1.00.
Nothing is written to disk but the report: the set is rebuilt, deterministically, on every run.

A pair is detected by an LSH shape when one of its band hashes agrees (pipelines.lsh.band_hashes), and with the
exact check when its Jaccard also reaches the threshold (what ``DedupConfig.jaccard_check`` does in phase 3). The
peer is datasketch's MinHashLSH with the same bands and rows (its own MinHash; originals inserted, copies queried).
"same cluster" is the pipeline's view: the share of pairs of Jaccard >= 0.8 whose two documents end in one connected
component of the checked candidate edges of the whole split (phase 3 links each document to the first of its run of
equal band hashes, so a rejected link can cost a pair). Cost, on all documents of the split together: signature
time (CPU seconds, one thread, best of 3), candidate pairs from the bands over the whole corpus (not only the scored
pairs), and the exact check of those candidates as phase 3 runs it (parquet read, shingling, Jaccard; CPU seconds,
best of 3). Benchmarks are not tests: nothing asserts.
"""

from __future__ import annotations

import argparse
import ast
import email
import random
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.dedup_corpus import real_documents, write_section
from pipelines.config import DedupConfig
from pipelines.dedup import verified_edges
from pipelines.lsh import band_hashes, components, equal_runs, union_edges
from pipelines.minhash import jaccard, minhash_signatures, shingle_sets

SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])
LOCALES = ("de_DE", "fr_FR", "ru_RU", "pl_PL", "en_US", "it_IT", "nl_NL", "cs_CZ")
MIN_WORDS = 150
BINS = np.round(np.arange(0.30, 1.0001, 0.05), 2)
# (bands, rows, check threshold or None): FineWeb's shape, then the shapes tried on dev
SHAPES = [(14, 8, None), (14, 8, 0.7), (16, 7, 0.7), (16, 6, 0.7), (18, 6, 0.7), (20, 5, 0.7), (25, 4, 0.7)]


def stdlib_documents() -> list[str]:
    """Per standard-library module (tests and idlelib left out): its docstrings (module, classes, functions), one
    paragraph each, when they reach ``MIN_WORDS`` words."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "test", "tests", "idlelib"}
    docs = []
    for path in sorted(root.glob("**/*.py")):
        if skip & set(path.relative_to(root).parts):
            continue
        try:
            tree = ast.parse(path.read_text(errors="replace"))
        except SyntaxError:  # lib2to3 test data and the like
            continue
        kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
        parts = [ast.get_docstring(node) for node in ast.walk(tree) if isinstance(node, kinds)]
        text = "\n\n".join(p for p in parts if p)
        if len(text.split()) >= MIN_WORDS:
            docs.append(text)
    return docs


def package_descriptions() -> list[str]:
    """The long description (README) of each installed distribution's METADATA, distinct ones of ``MIN_WORDS``
    words or more."""
    docs, seen = [], set()
    for meta in sorted(SITE_PACKAGES.glob("*.dist-info/METADATA")):
        msg = email.message_from_string(meta.read_text(errors="replace"))
        body = msg.get_payload() or msg.get("Description") or ""
        if isinstance(body, str) and len(body.split()) >= MIN_WORDS and body not in seen:
            seen.add(body)
            docs.append(body)
    return docs


def faker_documents(seed: int, per_locale: int = 15) -> list[str]:
    """``per_locale`` documents of 6-14 lorem paragraphs in each of ``LOCALES`` (Faker's word lists)."""
    from faker import Faker

    docs = []
    for k, locale in enumerate(LOCALES):
        fake = Faker(locale)
        fake.seed_instance(seed * 1000 + k)
        for _ in range(per_locale):
            paragraphs = fake.paragraphs(nb=fake.random_int(6, 14))
            docs.append("\n\n".join(p for p in paragraphs))
    return docs


def originals(split: str) -> list[str]:
    """The original documents of a split (dev: stdlib docstrings; heldout: package READMEs + Faker locales)."""
    if split == "dev":
        return stdlib_documents()
    return package_descriptions() + faker_documents(seed=2)


def _paragraphs(text: str, rng: random.Random) -> list[list[str]]:
    """The words of each paragraph (blank-line separated); a text of fewer than 4 is cut into 30-60 word chunks."""
    paragraphs = [p.split() for p in text.split("\n\n") if p.split()]
    if len(paragraphs) >= 4:
        return paragraphs
    words, out = text.split(), []
    while words:
        n = rng.randint(30, 60)
        out.append(words[:n])
        words = words[n:]
    return out


def edited_copy(text: str, donor: str, rng: random.Random) -> str:
    """One near-duplicate of ``text``: maybe paragraphs moved, maybe a boilerplate block of ``donor``'s words, and
    words replaced (by a donor word), deleted or followed by an inserted one at a random rate."""
    paragraphs = _paragraphs(text, rng)
    donor_words = donor.split()
    if rng.random() < 0.3:  # move 1-3 paragraphs elsewhere
        for _ in range(rng.randint(1, 3)):
            paragraphs.insert(rng.randrange(len(paragraphs)), paragraphs.pop(rng.randrange(len(paragraphs))))
    if rng.random() < 0.3:  # a sidebar / footer of another document's text, 5-60 % of this one's length
        size = max(5, int(sum(map(len, paragraphs)) * rng.uniform(0.05, 0.6)))
        start = rng.randrange(max(1, len(donor_words) - size))
        block = donor_words[start : start + size]
        paragraphs.insert(rng.choice([0, len(paragraphs)]), block)
    rate = 0.0 if rng.random() < 0.1 else rng.uniform(0, 0.16)
    out = []
    for words in paragraphs:
        kept: list[str] = []
        for w in words:
            if rng.random() >= rate:
                kept.append(w)
                continue
            op = rng.randrange(3)
            if op == 0:
                kept.append(rng.choice(donor_words))
            elif op == 2:
                kept += [w, rng.choice(donor_words)]
        out.append(" ".join(kept))
    return "\n\n".join(out)


@dataclass(frozen=True)
class FreshSet:
    """Documents (the originals, then the kept copies) and the scored pairs (original row, copy row, Jaccard)."""

    split: str
    texts: list[str]
    originals: int
    first: np.ndarray  # (P,) row of the original
    second: np.ndarray  # (P,) row of the copy
    sim: np.ndarray  # (P,) exact shingle Jaccard


def build_set(split: str, copies: int, per_bin: int, seed: int) -> FreshSet:
    """The split's originals, ``copies`` edited copies of each, stratified to ``per_bin`` pairs per Jaccard bin."""
    docs = originals(split)
    rng = random.Random(seed)
    ngram = DedupConfig().ngram
    base = shingle_sets(docs, ngram)
    made, who = [], []
    for i, text in enumerate(docs):
        for _ in range(copies):
            donor = docs[(i + rng.randrange(1, len(docs))) % len(docs)]
            made.append(edited_copy(text, donor, rng))
            who.append(i)
    sims = np.array([jaccard(base[i], s) for i, s in zip(who, shingle_sets(made, ngram), strict=True)])
    keep = []
    for lo, hi in zip(BINS[:-1], BINS[1:], strict=True):
        inside = np.flatnonzero((sims >= lo) & ((sims < hi) if hi < 1 else (sims <= hi)))
        keep += sorted(rng.sample(inside.tolist(), min(per_bin, len(inside))))
    keep_arr = np.array(sorted(keep), dtype=np.int64)
    texts = docs + [made[k] for k in keep_arr]
    first = np.array([who[k] for k in keep_arr], dtype=np.int64)
    second = len(docs) + np.arange(len(keep_arr), dtype=np.int64)
    return FreshSet(split, texts, len(docs), first, second, sims[keep_arr])


def shape_config(bands: int, rows: int, threshold: float | None) -> DedupConfig:
    """The DedupConfig of one LSH shape (with the exact check when ``threshold`` is set)."""
    check = threshold is not None
    return DedupConfig(
        preset="fineweb", num_bands=bands, rows_per_band=rows, jaccard_check=check, jaccard_threshold=threshold or 0.7
    )


def detected(fresh: FreshSet, cfg: DedupConfig, sigs: np.ndarray) -> np.ndarray:
    """Per scored pair: lmpipe's decision (a band agrees, and with the check the Jaccard reaches the threshold)."""
    bands = band_hashes(sigs, cfg.num_bands, cfg.rows_per_band)
    hit = (bands[fresh.first] == bands[fresh.second]).any(axis=1)
    return hit & (fresh.sim >= cfg.jaccard_threshold) if cfg.jaccard_check else hit


def datasketch_detected(fresh: FreshSet, bands: int, rows: int) -> tuple[np.ndarray, float]:
    """Per scored pair: datasketch MinHashLSH (same bands x rows, its own MinHash) finds the original when the copy
    is queried; and the seconds its MinHash took."""
    from datasketch import MinHash, MinHashLSH

    from pipelines.minhash import shingles

    t0 = time.process_time()
    hashes = []
    for text in fresh.texts:
        m = MinHash(num_perm=bands * rows, seed=1, scheme="affine64")
        m.update_batch(list(shingles(text, 5)))
        hashes.append(m)
    seconds = time.process_time() - t0
    lsh = MinHashLSH(num_perm=bands * rows, params=(bands, rows))
    for i in range(fresh.originals):
        lsh.insert(i, hashes[i])
    found = np.array([int(a) in lsh.query(hashes[b]) for a, b in zip(fresh.first, fresh.second, strict=True)])
    return found, seconds


def cost(texts: list[str], cfg: DedupConfig, workdir: Path, repeat: int = 3) -> dict:
    """Signature seconds (one thread, best of ``repeat``), the candidate pairs of the whole corpus, and the exact
    check's seconds (best of ``repeat``: phase 3's ``verified_edges`` on a parquet shard of the texts) with the
    edges it keeps (all candidates without the check)."""
    sig_s = min(_seconds(lambda: minhash_signatures(texts, cfg, threads=1)) for _ in range(repeat))
    bands = band_hashes(minhash_signatures(texts, cfg), cfg.num_bands, cfg.rows_per_band)
    edges = union_edges([equal_runs(bands[:, b]) for b in range(cfg.num_bands)], len(texts))
    shard = workdir / "corpus.parquet"
    if not shard.exists():
        pq.write_table(pa.table({"text": texts}), shard)
    kept, check_s = edges, 0.0
    if cfg.jaccard_check and len(edges):
        offsets = np.array([0, len(texts)])
        check_s = min(_seconds(lambda: verified_edges(edges, [str(shard)], offsets, cfg)) for _ in range(repeat))
        kept = verified_edges(edges, [str(shard)], offsets, cfg)
    return {"signature_s": sig_s, "candidates": len(edges), "check_s": check_s, "kept": kept}


def _seconds(work) -> float:  # noqa: ANN001  (a callable without arguments)
    """CPU seconds of this process for ``work()``: on a machine shared with other jobs, wall time measures them."""
    t0 = time.process_time()
    work()
    return time.process_time() - t0


def _rates(found: np.ndarray, sim: np.ndarray) -> tuple[float, float]:
    """Recall over pairs with Jaccard >= 0.8, false-positive rate over pairs with Jaccard <= 0.5."""
    return float(found[sim >= 0.8].mean()), float(found[sim <= 0.5].mean())


def evaluate(fresh: FreshSet, shapes: list[tuple[int, int, float | None]], peer: bool) -> tuple[list[str], dict]:
    """Table rows (shape, recall, FP, cost) for each shape on one split, and the detections by shape name."""
    rows, found_by = [], {}
    sigs_by: dict[tuple[int, int], np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for bands, rows_per_band, threshold in shapes:
            cfg = shape_config(bands, rows_per_band, threshold)
            if (bands, rows_per_band) not in sigs_by:
                sigs_by[bands, rows_per_band] = minhash_signatures(fresh.texts, cfg)
            found = detected(fresh, cfg, sigs_by[bands, rows_per_band])
            name = f"{bands}x{rows_per_band}" + (f" + check {threshold}" if threshold else "")
            found_by[name] = found
            r, fp = _rates(found, fresh.sim)
            c = cost(fresh.texts, cfg, Path(tmp))
            labels = components(len(fresh.texts), c["kept"])
            high = fresh.sim >= 0.8
            clustered = (labels[fresh.first[high]] == labels[fresh.second[high]]).mean()
            check = f"{c['check_s']:.2f}" if threshold else "—"
            rows.append(
                f"| {fresh.split} | lmpipe {name} | {r:.4f} | {fp:.4%} | {clustered:.4f} | {c['signature_s']:.2f} | "
                f"{c['candidates']} | {check} |"
            )
        if peer:
            for bands, rows_per_band in sorted({(b, r) for b, r, _ in shapes[:1]} | {_default_shape()}):
                found, seconds = datasketch_detected(fresh, bands, rows_per_band)
                r, fp = _rates(found, fresh.sim)
                rows.append(f"| {fresh.split} | datasketch MinHashLSH {bands}x{rows_per_band} | {r:.4f} | {fp:.4%} "
                            f"| — | {seconds:.2f} | — | — |")  # fmt: skip
    return rows, found_by


def _default_shape() -> tuple[int, int]:
    cfg = DedupConfig()
    return cfg.num_bands, cfg.rows_per_band


def bin_table(fresh: FreshSet, found_by: dict[str, np.ndarray]) -> list[str]:
    """Detection rate per 0.05 Jaccard bin for each shape."""
    names = list(found_by)
    lines = ["| split | Jaccard bin | pairs | " + " | ".join(names) + " |", "|---|---|---:|" + "---:|" * len(names)]
    for lo, hi in zip(BINS[:-1], BINS[1:], strict=True):
        inside = (fresh.sim >= lo) & ((fresh.sim < hi) if hi < 1 else (fresh.sim <= hi))
        if inside.any():
            rates = " | ".join(f"{found_by[n][inside].mean():.3f}" for n in names)
            lines.append(f"| {fresh.split} | {lo:.2f}–{hi:.2f} | {inside.sum()} | {rates} |")
    return lines


def real_corpus_cost(shapes: list[tuple[int, int, float | None]]) -> list[str]:
    """Candidate pairs and the exact check's cost of each LSH shape (check on) on the 1,116 real documents of
    ../shared (AEB gold, its extractions, dolma)."""
    texts = real_documents()
    lines = ["| shape | signature CPU s | candidate pairs | check CPU s | pairs kept |", "|---|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        for bands, rows in dict.fromkeys((b, r) for b, r, _ in shapes):
            c = cost(texts, shape_config(bands, rows, DedupConfig().jaccard_threshold), Path(tmp))
            lines.append(
                f"| {bands}x{rows} | {c['signature_s']:.2f} | {c['candidates']} | {c['check_s']:.2f} | "
                f"{len(c['kept'])} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=["dev", "heldout", "both"], default="dev")
    parser.add_argument("--copies", type=int, default=40, help="edited copies made of each original")
    parser.add_argument("--per-bin", type=int, default=600, help="pairs kept per 0.05 Jaccard bin")
    parser.add_argument("--write", type=Path, help="replace the fresh-set section of this RESULTS.md")
    args = parser.parse_args()

    splits = ["dev", "heldout"] if args.split == "both" else [args.split]
    default = DedupConfig()
    final = [(14, 8, None), (14, 8, 0.7), (default.num_bands, default.rows_per_band, None),
             (default.num_bands, default.rows_per_band, default.jaccard_threshold)]  # fmt: skip
    table = ["| split | detector | recall J>=0.8 | FP J<=0.5 | same cluster J>=0.8 | signature CPU s | candidate pairs "
             "| check CPU s |", "|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    bins, sizes = [], []
    for split in splits:
        fresh = build_set(split, args.copies, args.per_bin, seed=1 if split == "dev" else 2)
        high, low = int((fresh.sim >= 0.8).sum()), int((fresh.sim <= 0.5).sum())
        sizes.append(
            f"{split}: {fresh.originals} originals, {len(fresh.sim)} pairs ({high} at J>=0.8, {low} at J<=0.5)"
        )
        rows, found_by = evaluate(fresh, SHAPES if args.split == "dev" else final, peer=True)
        table += rows
        bins += bin_table(fresh, found_by) + [""]
    report = _report(args, sizes, table, bins, real_corpus_cost(final))
    print(report)
    if args.write:
        write_section(args.write, "fresh", report)


def _report(args: argparse.Namespace, sizes: list[str], table: list[str], bins: list[str], real: list[str]) -> str:
    """The RESULTS.md section."""
    presets = ", ".join(f"`{k}` {v['num_bands']}x{v['rows_per_band']}" for k, v in DedupConfig.presets().items())
    return "\n".join(
        [
            "# Dedup: near-duplicate S-curves on a fresh set (dev and held-back splits)",
            "",
            f"Produced by `nice -n 19 .venv/bin/python -m bench.dedup_fresh_set --split {args.split} --copies "
            f"{args.copies} --per-bin {args.per_bin}{' --write bench/RESULTS.md' if args.write else ''}` "
            f"({date.today()}, 2 busy cores); the set and the method are in the script's docstring. "
            f"Presets: {presets}; default `{DedupConfig().preset}`. Sets: " + "; ".join(sizes) + ".",
            "",
            *table,
            "",
            "Detection rate per Jaccard bin:",
            "",
            *bins,
            "Cost on the 1,116 real documents of ../shared (near-duplicates among the extractor outputs of the same "
            "pages):",
            "",
            *real,
        ]
    )


if __name__ == "__main__":
    main()
