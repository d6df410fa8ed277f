"""The stage contract, checked on every stage of the registry, and a stage added from outside lmpipe.

One data-refresh on two real WARC files (../shared/data/warc), under Prefect's ephemeral API; then, per data stage:
counts reconcile (in = kept + Σ dropped), ``annotate_only`` keeps every row, a rerun is a cache hit, and a
deleted output makes the stage incomplete and reruns only that task. A word-count annotator registered here (no
other module edited) runs through the same flow, ``lmpipe task``, the cache and the retries.

pytest -m slow tests/flows/test_stage_contract.py
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from pydantic import BaseModel, ConfigDict, Field

from flows.cli import app
from flows.paths import stage_dir
from flows.refresh import StageStep, data_refresh, plan_chain
from pipelines import registry
from pipelines.accounting import AccountingError
from pipelines.config import PipelineConfig
from pipelines.dedup import band_groups
from pipelines.shards import read_tables, shard_id, write_shard
from pipelines.stats import StageStats
from tasks.stages import stage_task
from tests.flows.test_caching import recomputed, task_runs_since, task_states

pytestmark = pytest.mark.slow

WARCS = ("warc/dolma/sample-0001.warc.gz", "warc/cc-whirlwind/whirlwind.warc.gz")
DATA_STAGES = [s.name for s in registry.data_chain()]
ANNOTATING = [s.name for s in registry.data_chain() if s.annotates]


# ---- a plugin stage, declared only here -------------------------------------------------------------------------
class WordCountConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    min_words: int = Field(default=0, ge=0, description="Drop documents with fewer whitespace-separated words.")
    annotate_only: bool = Field(default=False, description="Count words, drop nothing.")


def run_wordcount(inputs: list[str], output: str, cfg: WordCountConfig, *, limit: int | None = None) -> StageStats:
    """Add a ``word_count`` column; drop documents under ``min_words`` (reason ``too_few_words``)."""
    table = read_tables(list(inputs))
    table = table.slice(0, limit) if limit is not None else table
    counts = [len((t or "").split()) for t in table.column("text").to_pylist()]
    table = table.append_column("word_count", pa.array(counts, pa.int32()))
    stats = StageStats(stage="wordcount", shard=shard_id(output), docs_in=table.num_rows)
    if not cfg.annotate_only:
        keep = pa.array([n >= cfg.min_words for n in counts], pa.bool_())
        stats.drop("too_few_words", table.num_rows - sum(keep.to_pylist()))
        table = table.filter(keep)
    stats.docs_kept = table.num_rows
    return write_shard(table, output, stats, cfg, list(inputs))


WORDCOUNT = registry.StageSpec(
    name="wordcount",
    summary="words per document (a plugin stage of the tests)",
    config=WordCountConfig,
    entry=run_wordcount,
    shape="map",
    order=45,  # after pii, before tokenize
    annotates=True,
)


def run_silent_drop(inputs: list[str], output: str, cfg: WordCountConfig, *, limit: int | None = None) -> StageStats:
    """A buggy plugin: it leaves out the last document of each shard but reports every document kept."""
    table = read_tables(list(inputs))
    stats = StageStats(stage="silentdrop", shard=shard_id(output), docs_in=table.num_rows, docs_kept=table.num_rows)
    return write_shard(table.slice(0, max(table.num_rows - 1, 0)), output, stats, cfg, list(inputs))


SILENT_DROP = registry.StageSpec(
    name="silentdrop",
    summary="loses a document per shard without counting it (a plugin stage of the tests)",
    config=WordCountConfig,
    entry=run_silent_drop,
    shape="map",
    order=45,
)


# ---- fixtures ---------------------------------------------------------------------------------------------------
def _config(root: Path, warcs: Path, **extra: Any) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {"data_root": str(root), "inputs": [f"{warcs}/*.warc.gz"], "tokenize": {"vocab_size": 512}, **extra}
    )


def _sha(paths: list[Path]) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def _tasks(cfg: PipelineConfig) -> list[StageStep]:
    """Every planned step of the refresh: the stages, composites (dedup, tokenize) expanded into their phases."""
    from flows.refresh import resolve_inputs

    return plan_chain(cfg, resolve_inputs(cfg))


def _steps(cfg: PipelineConfig) -> dict[str, StageStep]:
    """Each chain stage as one step: a composite's calls are one call over its sources into its directory."""
    steps: dict[str, StageStep] = {}
    for step in _tasks(cfg):
        spec = registry.get(step.stage)
        if step.stage in steps:
            continue
        if spec.phases:
            sources = [p for call in step.calls for p in call.inputs]
            out = str(stage_dir(cfg.data_root, cfg.extract.crawl_id, spec.directory))
            step = StageStep(spec, step.cfg, [registry.Call(sources, out)], step.stage)
        steps[step.stage] = step
    return steps


def _producer(world: dict[str, Any], path: Path) -> str:
    """``task:output-stem`` of the task that writes ``path``."""
    for step in world["tasks"]:
        for call in step.calls:
            if str(path) in call.produces or str(path) == call.output or Path(call.output) in path.parents:
                return f"{step.spec.name}:{Path(call.output).stem}"
    raise AssertionError(f"no task writes {path}")


@pytest.fixture(scope="module")
def warcs(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    out = tmp_path_factory.mktemp("warcs")
    for rel in WARCS:
        shutil.copy(shared_data / rel, out / Path(rel).name)
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, warcs: Path) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("root")
    cfg = _config(root, warcs)
    since = datetime.now(UTC)
    stats = {s.stage: s for s in data_refresh(cfg)}
    runs = task_runs_since(since)
    return {
        "cfg": cfg,
        "stats": stats,
        "first": task_states(since),
        "runs": runs,
        "steps": _steps(cfg),
        "tasks": _tasks(cfg),
    }


@pytest.fixture
def wordcount() -> Iterator[registry.StageSpec]:
    registry.register(WORDCOUNT)
    yield WORDCOUNT
    registry.unregister(WORDCOUNT.name)


def _final_states(since: datetime, n: int) -> list[str]:
    """State names of the task runs created since ``since``, oldest first, once the API has recorded ``n`` final
    states (a task run outside a flow reports its states as events, recorded a moment later)."""
    deadline = time.monotonic() + 30
    while True:
        runs = sorted(task_runs_since(since), key=lambda r: r.created)
        if sum(r.state is not None and r.state.is_final() for r in runs) >= n or time.monotonic() > deadline:
            return [r.state_name for r in runs]
        time.sleep(0.2)


def _rows(paths: list[str]) -> int:
    return sum(pq.read_metadata(p).num_rows for p in paths)


# ---- the contract, per registered data stage --------------------------------------------------------------------
@pytest.mark.parametrize("stage", DATA_STAGES)
def test_counts_reconcile(world: dict[str, Any], stage: str) -> None:
    stats, step = world["stats"][stage], world["steps"][stage]
    assert stats.docs_in > 0 and stats.docs_in == stats.docs_kept + sum(stats.dropped.values()), stats
    if step.spec.takes == "parquet":  # every input row is counted in
        assert stats.docs_in == _rows([p for call in step.calls for p in call.inputs])
    if stage != "tokenize":  # every kept row is written (tokenize writes tokens, not rows)
        written = [str(p) for call in step.calls for p in step.spec.output_files(call.inputs, call.output)]
        assert stats.docs_kept == _rows(written)


def test_each_task_waits_for_the_tasks_that_write_its_inputs(world: dict[str, Any]) -> None:
    """The DAG derived from the registry: each task run waits for exactly the task runs that write its inputs — a
    map task for its own shard's task, dedup's pairs for every signature shard, its clusters for every band."""
    by_output = {r.name.split("-", 1)[1]: r for r in world["runs"] if "-/" in r.name}
    producer: dict[str, Any] = {}
    waits: dict[str, list[set]] = {}
    for step in world["tasks"]:
        runs = [by_output[call.output] for call in step.calls]
        for call, run in zip(step.calls, runs, strict=True):
            got = {dep.id for dep in run.task_inputs.get("wait_for", [])}
            expected = {producer[p].id for p in call.inputs if p in producer}
            assert got == expected, f"{run.name} waits for {got}, not {expected}"
            waits.setdefault(step.spec.name, []).append(got)
            producer.update(dict.fromkeys(call.produces, run))
    groups = len(band_groups(len(WARCS), world["cfg"].dedup.num_bands))
    assert [len(w) for w in waits["filter"]] == [1] * len(WARCS)  # its own shard's extract
    assert [len(w) for w in waits["dedup_pairs"]] == [len(WARCS)] * groups  # every signature shard
    assert [len(w) for w in waits["dedup_clusters"]] == [groups + 2 * len(WARCS)]  # pairs, signatures, filter shards
    assert [len(w) for w in waits["dedup_apply"]] == [2] * len(WARCS)  # its filter shard and the clusters
    assert [len(w) for w in waits["pii"]] == [1] * len(WARCS)  # its own dedup shard, not all of them
    assert [len(w) for w in waits["tokenize_encode"]] == [2] * len(WARCS)  # its pii shard and the tokenizer


@pytest.mark.parametrize("stage", ANNOTATING)
def test_annotate_only_keeps_every_row(world: dict[str, Any], stage: str, tmp_path: Path) -> None:
    step = world["steps"][stage]
    # dedup without the cross-crawl index: this side run must not add to the index the refresh's run uses
    cfg = step.cfg.model_copy(update={"annotate_only": True, **({"index_dir": None} if stage == "dedup" else {})})
    for n, (ins, out) in enumerate((call.inputs, call.output) for call in step.calls):
        target = str(tmp_path / str(n) / Path(out).name)
        stats = stage_task(stage, ins, target, cfg)(ins, target, cfg, None)
        assert stats.dropped == {} and stats.docs_kept == stats.docs_in == _rows(ins)
        assert _rows([str(p) for p in step.spec.output_files(ins, target)]) == _rows(ins)


@pytest.mark.parametrize("stage", DATA_STAGES)
def test_rerun_is_a_cache_hit_and_a_deleted_output_reruns_only_its_task(world: dict[str, Any], stage: str) -> None:
    assert set(world["first"].values()) == {"Completed"}, world["first"]
    step = world["steps"][stage]
    ins, out = step.calls[-1].inputs, step.calls[-1].output
    files = step.spec.output_files(ins, out)
    before = _sha(files)
    since = datetime.now(UTC)
    data_refresh(world["cfg"])
    assert recomputed(task_states(since)) == [], "an unchanged rerun must be all cache hits"

    files[0].unlink()
    assert not step.spec.complete(ins, out, step.cfg)
    since = datetime.now(UTC)
    data_refresh(world["cfg"])
    # Only the task that writes it reruns (a composite's phase); it writes the same bytes again, and a shard is
    # known by its recorded sha256: nothing after it reruns.
    assert recomputed(task_states(since)) == [_producer(world, files[0])]
    assert _sha(files) == before and step.spec.complete(ins, out, step.cfg)


# ---- a plugin stage ---------------------------------------------------------------------------------------------
def test_a_registered_stage_runs_in_the_flow_with_cache_and_retries(
    wordcount: registry.StageSpec, warcs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _config(tmp_path / "root", warcs, stage_options={"wordcount": {"min_words": 400}})
    stats = data_refresh(cfg)
    assert [s.stage for s in stats] == ["extract", "filter", "dedup", "pii", "wordcount", "tokenize"]
    by_stage = {s.stage: s for s in stats}
    words, step = by_stage["wordcount"], _steps(cfg)["wordcount"]
    pii_rows = read_tables([call.inputs[0] for call in step.calls])
    short = sum(len(t.split()) < 400 for t in pii_rows.column("text").to_pylist())
    assert 0 < short < pii_rows.num_rows  # the threshold really splits these documents
    assert words.docs_in == pii_rows.num_rows and words.dropped == {"too_few_words": short}
    assert by_stage["tokenize"].docs_in == words.docs_kept  # tokenize reads the plugin's shards
    written = read_tables([call.output for call in step.calls])
    assert min(written.column("word_count").to_pylist()) >= 400

    since = datetime.now(UTC)
    data_refresh(cfg)
    states = task_states(since)
    assert sum(k.startswith("wordcount:") for k in states) == 2 and recomputed(states) == []

    # A deleted shard reruns its wordcount task only; its first attempt fails with a transient fault and is retried.
    Path(step.calls[0].output).unlink()
    monkeypatch.setenv("LMPIPE_FAIL_FIRST_ATTEMPT", "wordcount")
    since = datetime.now(UTC)
    data_refresh(cfg)
    assert recomputed(task_states(since)) == [f"wordcount:{Path(step.calls[0].output).stem}"]
    runs = [r for r in task_runs_since(since) if r.name.startswith("wordcount-") and r.state_name == "Completed"]
    assert [r.run_count for r in runs] == [2]  # failed once, retried once
    assert pq.read_table(step.calls[0].output).equals(written.slice(0, pq.read_metadata(step.calls[0].output).num_rows))


def test_a_stage_that_loses_documents_fails_the_run_naming_stage_and_shard(warcs: Path, tmp_path: Path) -> None:
    """Accounting enforced by the flow (pipelines/accounting.py): the plugin's counts reconcile on their own
    (in = kept), yet its shards hold a row less than it says it kept: the flow run fails, naming it and the shard."""
    registry.register(SILENT_DROP)
    try:
        state = data_refresh(_config(tmp_path / "root", warcs), return_state=True)
    finally:
        registry.unregister(SILENT_DROP.name)
    assert state.is_failed()
    with pytest.raises(AccountingError, match=r"stage silentdrop, shard (sample-0001|whirlwind): .* holds \d+ rows"):
        state.result()


def test_a_registered_stage_runs_through_lmpipe_task(
    wordcount: registry.StageSpec, world: dict[str, Any], tmp_path: Path
) -> None:
    shard = world["steps"]["pii"].calls[0].output
    out = str(tmp_path / "wc.parquet")
    args = ["task", "wordcount", "--input", shard, "--output", out, "--set", "min_words=400"]
    since = datetime.now(UTC)
    assert not app(args, standalone_mode=False)
    mtime = Path(out).stat().st_mtime_ns
    assert not app(args, standalone_mode=False)  # the same call again: a cache hit, the file untouched
    assert _final_states(since, 2) == ["Completed", "Cached"]
    assert Path(out).stat().st_mtime_ns == mtime
    table = pq.read_table(out)
    assert min(table.column("word_count").to_pylist()) >= 400 and table.num_rows < pq.read_metadata(shard).num_rows

    every = str(tmp_path / "all.parquet")
    assert not app(["task", "wordcount", "--input", shard, "--output", every, "--annotate-only", "--direct"],
                   standalone_mode=False)  # fmt: skip
    assert pq.read_metadata(every).num_rows == pq.read_metadata(shard).num_rows
    with pytest.raises(typer.BadParameter, match="wordcount"):  # a typo: refused, with the list of stages
        app(["task", "wordcont", "--input", shard, "--output", out], standalone_mode=False)
