"""Article Extraction Benchmark (AEB) scorer: word 4-gram shingle precision / recall / F1 of extracted main text.

    .venv/bin/python bench/aeb_score.py --reference-outputs          # the published extractors' table
    .venv/bin/python bench/aeb_score.py --parquet OUT.parquet [...]  # an lmpipe extract shard (joined by URL)

Scoring is that of scrapinghub/article-extraction-benchmark's evaluate.py: tokens are ``\\w+`` matches (case kept);
each text becomes a multiset of word 4-gram shingles (a text of 1-3 tokens is one shorter shingle); per page
tp = Σ min(true, pred), fp = Σ max(0, pred - true), fn = Σ max(0, true - pred), normalised by their sum; per-page
precision tp / (tp + fp) and recall tp / (tp + fn), both 1.0 when fp = fn = 0; corpus P and R are the means over
pages and F1 = 2PR / (P + R). One convention the data README leaves out matters: a page with an empty prediction
(tp = fp = 0) has no precision and is left out of the precision mean (it still counts 0 in the recall mean).
Without it justext scores 0.738 instead of its published 0.804; the ``empty`` column shows how many pages it hits.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# The benchmark beside the checkout (tests/conftest.py's ../shared/data).
DEFAULT_AEB = Path(__file__).resolve().parents[2] / "shared" / "data" / "extraction" / "aeb"
_TOKEN = re.compile(r"\w+")


@dataclass(frozen=True)
class AebScore:
    """Corpus-level scores over every page of the benchmark."""

    name: str
    precision: float
    recall: float
    f1: float
    pages: int
    empty: int  # pages with no prediction (excluded from the precision mean, recall 0)


def shingles(text: str, n: int = 4) -> Counter[tuple[str, ...]]:
    """Multiset of word n-gram shingles; a text shorter than n tokens is a single shorter shingle."""
    tokens = _TOKEN.findall(text or "")
    return Counter(tuple(tokens[i : i + n]) for i in range(max(1, len(tokens) - n + 1)) if tokens[i : i + n])


def page_counts(true: str, pred: str) -> tuple[float, float, float]:
    """(tp, fp, fn) of one page over shingle multisets, normalised to sum to 1 (so long pages weigh the same)."""
    t, p = shingles(true), shingles(pred)
    tp, fp, fn = sum((t & p).values()), sum((p - t).values()), sum((t - p).values())
    total = tp + fp + fn
    return (tp / total, fp / total, fn / total) if total else (0.0, 0.0, 0.0)


def _precision(tp: float, fp: float, fn: float) -> float:
    return 1.0 if fp == fn == 0 else tp / (tp + fp)


def _recall(tp: float, fp: float, fn: float) -> float:
    return 1.0 if fp == fn == 0 else (0.0 if tp == fn == 0 else tp / (tp + fn))


def score(name: str, truth: dict[str, dict], predictions: dict[str, str]) -> AebScore:
    """Score predictions (page id → text; a missing id is an empty prediction) against ground-truth.json."""
    counts = [page_counts(page.get("articleBody", ""), predictions.get(pid) or "") for pid, page in truth.items()]
    precision = statistics.mean(_precision(*c) for c in counts if c[0] + c[1] > 0)
    recall = statistics.mean(_recall(*c) for c in counts if c[0] + c[2] > 0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    empty = sum(1 for c in counts if c[0] + c[1] == 0)
    return AebScore(name, precision, recall, f1, len(counts), empty)


def load_truth(aeb_dir: Path = DEFAULT_AEB) -> dict[str, dict]:
    """ground-truth.json: ``{page id: {"articleBody": …, "url": …}}``."""
    path = aeb_dir / "ground-truth.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: AEB ground truth not found (expected ../shared/data beside the checkout)")
    return json.loads(path.read_text(encoding="utf-8"))


def reference_predictions(path: Path) -> dict[str, str]:
    """A published output file: ``{id: {"articleBody": …}}``, optionally wrapped as ``{"output": …, "version": …}``."""
    data = json.loads(path.read_text(encoding="utf-8"))
    data = data.get("output", data) if isinstance(data.get("output"), dict) else data
    return {pid: (page or {}).get("articleBody") or "" for pid, page in data.items()}


def parquet_predictions(path: str | Path, truth: dict[str, dict]) -> dict[str, str]:
    """An lmpipe extract shard joined to the benchmark by URL (``url`` and ``text`` columns)."""
    import pyarrow.parquet as pq

    table = pq.read_table(str(path), columns=["url", "text"])
    by_url = dict(zip(table.column("url").to_pylist(), table.column("text").to_pylist(), strict=True))
    return {pid: by_url.get(page["url"]) or "" for pid, page in truth.items()}


def jsonl_predictions(paths: list[Path], truth: dict[str, dict]) -> dict[str, str]:
    """datatrove JsonlWriter output (``.jsonl[.gz]``, url in ``metadata.url``) joined to the benchmark by URL."""
    by_url: dict[str, str] = {}
    for path in paths:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            for line in f:
                doc = json.loads(line)
                by_url[doc.get("metadata", {}).get("url") or doc.get("url")] = doc.get("text") or ""
    return {pid: by_url.get(page["url"], "") for pid, page in truth.items()}


def markdown_table(scores: list[AebScore]) -> str:
    lines = ["| extractor | F1 | precision | recall | empty pages |", "|---|---:|---:|---:|---:|"]
    for s in scores:
        lines.append(f"| {s.name} | {s.f1:.3f} | {s.precision:.3f} | {s.recall:.3f} | {s.empty}/{s.pages} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--aeb", type=Path, default=DEFAULT_AEB, help="benchmark folder (ground-truth.json)")
    parser.add_argument("--parquet", nargs="*", default=[], help="lmpipe extract shards to score")
    parser.add_argument(
        "--reference-outputs", nargs="?", const="", default=None, help="score the published outputs (default folder)"
    )
    args = parser.parse_args(argv)
    truth = load_truth(args.aeb)
    scores = []
    if args.reference_outputs is not None:
        folder = Path(args.reference_outputs) if args.reference_outputs else args.aeb / "reference-outputs"
        for path in sorted(folder.glob("*.json")):
            scores.append(score(path.stem, truth, reference_predictions(path)))
        scores.sort(key=lambda s: -s.f1)
    for path in args.parquet:
        scores.append(score(Path(path).name, truth, parquet_predictions(path, truth)))
    if not scores:
        parser.error("nothing to score: give --parquet and/or --reference-outputs")
    print(markdown_table(scores))
    return 0


if __name__ == "__main__":
    sys.exit(main())
