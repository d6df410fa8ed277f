"""What-if filtering: re-apply other thresholds to a filter stage's stored scores, without re-running anything.

    lmpipe explore --input data/sample/filter --set gopher_quality.min_doc_words=100 --set language.threshold=0.8

The filter stage stores every score it measured (pipelines/filters/) and, in the Parquet metadata, the config it
measured them with. ``explore`` takes that config, applies the ``--set`` overrides, and decides every stored row again
with the same ``FilterRules`` the stage uses, so for unchanged thresholds it reproduces the stage's decisions exactly.
It prints, per rule, the documents and words (whitespace tokens) the new thresholds would remove compared with the
stored run, with a few example documents, and writes a histogram of each score with its threshold marked.

Only thresholds can change: settings that alter what is measured (C4's line rules, which rewrite the text FineWeb
scores; FineWeb's short-line length; the URL lists; the language model and its second opinion; the n of Gopher's
n-gram rules) need a re-run, and ``explore`` says so naming the setting. Each filter family declares both (its
``thresholds`` and ``remeasure_reason``, pipelines/filters/family.py), and explore iterates over the same families.
On an output written without ``--annotate-only`` only the kept rows are stored, so a what-if can tighten thresholds
but not bring dropped documents back.
"""

from __future__ import annotations

import io
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.config import FilterConfig, load_config
from pipelines.errors import ConfigError
from pipelines.filters import CONFIG_METADATA_KEY, FilterRules, score_schema

logger = logging.getLogger(__name__)


class ExploreError(ConfigError):
    """The input cannot answer the what-if (not a filter output, or a setting that needs a re-run)."""


@dataclass
class RuleChange:
    rule: str
    docs_before: int
    docs_after: int
    words_before: int
    words_after: int
    examples: list[dict[str, Any]] = field(default_factory=list)  # documents newly removed by this rule


@dataclass
class ExploreResult:
    files: list[str]
    rows: int
    annotated: bool
    kept_before: int
    kept_after: int
    words_kept_before: int
    words_kept_after: int
    changed: dict[str, tuple[Any, Any]]
    rules: list[RuleChange]
    plots: list[str]


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: data}


def shard_files(path: str | Path) -> list[Path]:
    """The filter output shards under ``path`` (a file or a stage directory; side outputs excluded)."""
    path = Path(path)
    if path.is_file():
        return [path]
    files = sorted(p for p in path.glob("*.parquet") if not p.name.startswith("_"))
    if not files:
        raise ExploreError(f"{path}: no Parquet shards")
    return files


def stored_config(files: list[Path]) -> FilterConfig:
    """The config the scores in ``files`` were measured with (all shards must agree)."""
    configs = set()
    for f in files:
        meta = pq.read_schema(f).metadata or {}
        if CONFIG_METADATA_KEY not in meta:
            raise ExploreError(f"{f}: not written by the filter stage (no {CONFIG_METADATA_KEY.decode()} metadata)")
        configs.add(meta[CONFIG_METADATA_KEY])
    if len(configs) > 1:
        raise ExploreError(f"{files[0].parent}: shards were filtered with different configs; explore one at a time")
    return FilterConfig.model_validate(json.loads(configs.pop()))


def what_if_config(base: FilterConfig, overrides: list[str]) -> tuple[FilterConfig, dict[str, tuple[Any, Any]]]:
    """``base`` with ``dotted.key=value`` overrides (as ``--set`` everywhere: ``load_config``); raises ExploreError
    for a setting that needs a re-run."""
    new = load_config(FilterConfig, overrides=overrides, base=base)
    before, after = _flatten(base.model_dump(mode="json")), _flatten(new.model_dump(mode="json"))
    changed = {k: (before.get(k), after.get(k)) for k in sorted(set(before) | set(after)) if before.get(k) != after[k]}
    rules = FilterRules(base)
    for key, (old, value) in changed.items():
        section, _, setting = key.partition(".")
        family = rules.family(section)  # None: a stage setting (annotate_only)
        if family is not None and (why := family.remeasure_reason(setting, old, value)):
            raise ExploreError(f"{key}: {why}")
    return new, changed


def _words(table: pa.Table) -> list[int]:
    text = pc.fill_null(table.column("text"), "")
    return pc.list_value_length(pc.utf8_split_whitespace(text)).to_pylist()


def _rule_change(
    rule: str, table: pa.Table, before: list[str | None], after: list[str | None], words: list[int], examples: int
) -> RuleChange:
    """What the what-if does to one drop reason: documents and words before/after, newly dropped examples."""
    b = [i for i, r in enumerate(before) if r == rule]
    a = [i for i, r in enumerate(after) if r == rule]
    newly = [i for i in a if before[i] is None][:examples]
    ids, urls, texts = table.column("id"), table.column("url"), table.column("text")
    return RuleChange(
        rule=rule,
        docs_before=len(b),
        docs_after=len(a),
        words_before=sum(words[i] for i in b),
        words_after=sum(words[i] for i in a),
        examples=[
            {"id": ids[i].as_py(), "url": urls[i].as_py(), "text": (texts[i].as_py() or "")[:160].replace("\n", " ")}
            for i in newly
        ],
    )


def explore(
    path: str | Path,
    overrides: list[str] | None = None,
    *,
    examples: int = 3,
    plots_dir: str | Path | None = None,
) -> ExploreResult:
    """Decide the stored rows of a filter output again under ``overrides``; see the module docstring."""
    files = shard_files(path)
    base = stored_config(files)
    new, changed = what_if_config(base, overrides or [])
    columns = [f.name for f in score_schema(base)]
    table = pa.concat_tables(
        [pq.read_table(f, columns=["id", "url", "text", *columns]) for f in files], promote_options="permissive"
    )
    annotated = base.annotate_only
    rows = table.select([c for c in columns if c != "drop_reason"]).to_pylist()
    before = table.column("drop_reason").to_pylist()
    rules = FilterRules(new)
    after = [rules.decide(r) for r in rows]
    words = _words(table)

    result_rules = [
        _rule_change(rule, table, before, after, words, examples)
        for rule in sorted({r for r in before + after if r is not None})
    ]
    plots = []
    if plots_dir is not None:
        plots = [str(p) for p in write_histograms(table, new, Path(plots_dir), base=base)]
    kept_b = [i for i, r in enumerate(before) if r is None]
    kept_a = [i for i, r in enumerate(after) if r is None]
    return ExploreResult(
        files=[str(f) for f in files],
        rows=table.num_rows,
        annotated=annotated,
        kept_before=len(kept_b),
        kept_after=len(kept_a),
        words_kept_before=sum(words[i] for i in kept_b),
        words_kept_after=sum(words[i] for i in kept_a),
        changed=changed,
        rules=result_rules,
        plots=plots,
    )


# --------------------------------------------------------------------------------------------------- histograms
def thresholds(cfg: FilterConfig) -> dict[str, list[float]]:
    """Score column -> the threshold(s) the config compares it with, in chain order."""
    return {name: t for family in FilterRules(cfg).families for name, t in family.thresholds().items()}


def _plot(ax: Any, values: list[float], name: str, lines: list[float], old: list[float] | None) -> None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    top = max(finite + lines) if finite else 1.0
    # a huge maximum (max_doc_words 100,000) would squash the histogram: clip the axis to the data
    limit = max(finite) * 1.05 if finite and max(lines) > 10 * max(finite) else top * 1.05
    ax.hist(finite, bins=40, range=(min(finite + [0]), limit or 1.0), color="#2a7ab9")
    for t in lines:
        if t <= limit:
            ax.axvline(t, color="#d62728", lw=1.5)
    for t in old or []:
        if t not in lines and t <= limit:
            ax.axvline(t, color="#7f7f7f", lw=1, ls="--")
    ax.set_title(f"{name} (n={len(finite)})", fontsize=8)
    ax.tick_params(labelsize=6)


def _figure(names: list[str], table: pa.Table, cfg: FilterConfig, base: FilterConfig | None) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 4
    nrows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(12, 2.2 * nrows), dpi=80, squeeze=False)
    new_t, old_t = thresholds(cfg), thresholds(base) if base else {}
    for ax, name in zip(axes.flat, names, strict=False):
        _plot(ax, table.column(name).to_pylist(), name, new_t[name], old_t.get(name))
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def scored_columns(table: pa.Table, cfg: FilterConfig) -> list[str]:
    return [
        name for name in thresholds(cfg) if name in table.column_names and table.column(name).null_count < len(table)
    ]


def histogram_grid_png(table: pa.Table, cfg: FilterConfig, base: FilterConfig | None = None) -> bytes:
    """All score histograms in one PNG (threshold red; the stored run's, where different, grey dashed)."""
    import matplotlib.pyplot as plt

    fig = _figure(scored_columns(table, cfg), table, cfg, base)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def write_histograms(table: pa.Table, cfg: FilterConfig, out_dir: Path, base: FilterConfig | None = None) -> list[Path]:
    """One PNG per score (``{score}.png``) plus ``scores.png`` with all of them, under ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    new_t, old_t = thresholds(cfg), thresholds(base) if base else {}
    for name in scored_columns(table, cfg):
        fig, ax = plt.subplots(figsize=(5, 3), dpi=80)
        _plot(ax, table.column(name).to_pylist(), name, new_t[name], old_t.get(name))
        fig.tight_layout()
        fig.savefig(out_dir / f"{name}.png")
        plt.close(fig)
        paths.append(out_dir / f"{name}.png")
    (out_dir / "scores.png").write_bytes(histogram_grid_png(table, cfg, base))
    return [*paths, out_dir / "scores.png"]


def stage_histograms(stage_dir: str | Path) -> bytes | None:
    """The histogram grid of a filter stage's outputs (None when it wrote nothing with scores)."""
    try:
        files = shard_files(stage_dir)
        cfg = stored_config(files)
    except ExploreError as e:
        logger.info("no score histograms: %s", e)
        return None
    columns = list(thresholds(cfg))
    table = pa.concat_tables(
        [pq.read_table(f, columns=[c for c in columns if c in pq.read_schema(f).names]) for f in files],
        promote_options="permissive",
    )
    if table.num_rows == 0:
        return None
    return histogram_grid_png(table, cfg)
