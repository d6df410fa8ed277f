"""``explore`` re-decides stored filter scores: same thresholds → the stage's decisions, new ones → a real re-run's."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.config import FilterConfig
from pipelines.explore import ExploreError, explore
from pipelines.filters import run_filter


@pytest.fixture(scope="module")
def annotated(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Real Common Crawl text (dolma) and labelled sentences in 5 languages, filtered with --annotate-only."""
    tmp = tmp_path_factory.mktemp("explore")
    rows = []
    for f in sorted((shared_data / "text" / "dolma-cc").glob("*.gz")):
        for line in gzip.open(f, "rt"):
            d = json.loads(line)
            rows.append({"id": d["id"], "url": d["id"], "text": d["text"]})
    for lang in ("en", "de", "fr", "mi", "zu"):
        sents = (shared_data / "langid" / "dev" / f"{lang}.txt").read_text().splitlines()
        for i in range(0, 120, 12):
            rows.append({"id": f"{lang}-{i}", "url": None, "text": "\n".join(sents[i : i + 12])})
    src = tmp / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows), src)
    stage = tmp / "filter"
    stats = run_filter([str(src)], str(stage / "in.parquet"), FilterConfig(annotate_only=True))
    return {"src": src, "stage": stage, "stats": stats, "rows": len(rows), "tmp": tmp}


def rerun(annotated: dict, overrides: dict, name: str) -> Counter:
    cfg = FilterConfig.model_validate({**overrides, "annotate_only": True})
    out = annotated["tmp"] / name / "in.parquet"
    run_filter([str(annotated["src"])], str(out), cfg)
    return Counter(pq.read_table(out).column("drop_reason").to_pylist())


def test_same_thresholds_reproduce_the_stage(annotated: dict) -> None:
    result = explore(annotated["stage"])
    stats = annotated["stats"]
    would_drop = sum(v for k, v in stats.extra.items() if k.startswith("would_drop_"))
    assert result.rows == annotated["rows"]
    assert result.kept_after == result.kept_before == annotated["rows"] - would_drop
    assert all(r.docs_after == r.docs_before == stats.extra[f"would_drop_{r.rule}"] for r in result.rules)
    assert result.kept_before > 0 and len(result.rules) >= 3


@pytest.mark.parametrize(
    "sets",
    [
        {"gopher_quality": {"min_doc_words": 200}, "fineweb": {"line_punct_thr": 0.5}},
        {"language": {"languages": ["en", "de"], "threshold": 0.9}, "c4": {"min_num_sentences": 8}},
        {"gopher_repetition": {"top_n_grams": [[2, 0.05], [3, 0.18], [4, 0.16]]}, "gopher_quality": {"enabled": False}},
    ],
)
def test_new_thresholds_equal_a_real_rerun(annotated: dict, sets: dict) -> None:
    flat = [f"{family}.{k}={json.dumps(v)}" for family, fields in sets.items() for k, v in fields.items()]
    result = explore(annotated["stage"], flat)
    expected = rerun(annotated, sets, "rerun-" + "-".join(sets))
    assert result.kept_after == expected[None]
    assert {r.rule: r.docs_after for r in result.rules if r.docs_after} == {k: v for k, v in expected.items() if k}
    assert result.kept_after != result.kept_before  # the what-if changed something
    assert result.changed


def test_settings_that_change_measurements_are_refused(annotated: dict) -> None:
    for key in ("c4.min_words_per_line=5", "fineweb.short_line_length=10", "language.second_opinion=none"):
        with pytest.raises(ExploreError, match=key.split("=")[0]):
            explore(annotated["stage"], [key])
    with pytest.raises(ExploreError, match="n=\\[2, 3, 4\\]"):
        explore(annotated["stage"], ["gopher_repetition.top_n_grams=[[5, 0.1]]"])


def test_histograms_mark_the_thresholds(annotated: dict, tmp_path: Path) -> None:
    result = explore(annotated["stage"], ["gopher_quality.min_doc_words=200"], plots_dir=tmp_path / "plots")
    names = {Path(p).name for p in result.plots}
    assert {"scores.png", "gopher_words.png", "language_score.png", "fineweb_line_punct_ratio.png"} <= names
    assert all(Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in result.plots)


def test_input_that_is_not_a_filter_output(annotated: dict) -> None:
    with pytest.raises(ExploreError, match="not written by the filter stage"):
        explore(annotated["src"])
