"""The AEB scorer reproduces the benchmark's published figures and scores lmpipe's own extraction of the same pages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.aeb_score import load_truth, page_counts, parquet_predictions, reference_predictions, score, shingles
from pipelines.config import ExtractConfig
from pipelines.extract import run_extract

# Published in scrapinghub/article-extraction-benchmark's README: (F1, precision, recall).
PUBLISHED = {
    "trafilatura": (0.958, 0.938, 0.978),
    "readability": (0.922, None, None),
    "boilerpipe": (0.860, None, None),
    "justext": (0.804, None, None),
    "html-text": (0.665, None, None),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_reference_outputs_reproduce_published_figures(shared_data: Path, name: str) -> None:
    aeb = shared_data / "extraction/aeb"
    s = score(name, load_truth(aeb), reference_predictions(aeb / "reference-outputs" / f"{name}.json"))
    f1, precision, recall = PUBLISHED[name]
    assert round(s.f1, 3) == f1
    if precision is not None:
        assert (round(s.precision, 3), round(s.recall, 3)) == (precision, recall)


def test_empty_predictions_leave_the_precision_mean(shared_data: Path) -> None:
    # justext returns nothing on 29 pages; counting them as precision 0 would give 0.738, not the published 0.804.
    aeb = shared_data / "extraction/aeb"
    s = score("justext", load_truth(aeb), reference_predictions(aeb / "reference-outputs/justext.json"))
    assert s.empty == 29 and round(s.recall, 3) == 0.756


def test_shingle_counts_follow_the_benchmark() -> None:
    assert shingles("One two three") == {("One", "two", "three"): 1}  # shorter than 4 tokens: one shingle
    assert sum(shingles("a b c d e a b c d").values()) == 6
    assert page_counts("The cat sat on the mat", "The cat sat on the mat") == (1.0, 0.0, 0.0)
    tp, fp, fn = page_counts("a b c d e", "a b c d x y")  # true {abcd, bcde}, pred {abcd, bcdx, cdxy}
    assert (tp, fp, fn) == (0.25, 0.5, 0.25)
    assert "the" not in {w for s in shingles("The end of it") for w in s}  # case is kept


def test_lmpipe_extraction_of_aeb_warc_scores_high(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "aeb.parquet"
    stats = run_extract([str(shared_data / "warc/aeb-articles.warc.gz")], str(out), ExtractConfig())
    assert stats.docs_in == 181 == stats.docs_kept + sum(stats.dropped.values())
    truth = load_truth(shared_data / "extraction/aeb")
    s = score("lmpipe", truth, parquet_predictions(out, truth))
    assert s.f1 >= 0.95, s
    assert s.empty <= 2


def test_cli_prints_reference_table(shared_data: Path) -> None:
    script = Path(__file__).resolve().parents[2] / "bench" / "aeb_score.py"
    res = subprocess.run(
        [sys.executable, str(script), "--aeb", str(shared_data / "extraction/aeb"), "--reference-outputs"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "| trafilatura | 0.958 | 0.938 | 0.978 |" in res.stdout
    assert "| justext | 0.804 |" in res.stdout
