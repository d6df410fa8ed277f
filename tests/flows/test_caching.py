"""Caching and retries of the data-refresh flow (DESIGN.md: stage + code version + config hash + input fingerprints,
validated against the manifest), on copies of the sample's four WARC files, under Prefect's ephemeral API.

The tests run in order on one data root: each changes one thing and checks exactly which task runs recompute.

pytest -m slow tests/flows/test_caching.py
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

from flows.refresh import data_refresh, plan_chain, resolve_inputs
from pipelines.config import PipelineConfig, load_config
from pipelines.dedup import band_groups
from pipelines.sample import generate_sample

pytestmark = pytest.mark.slow

SHARDS = [f"sample-{i:05d}" for i in range(4)]
BANDS = [f"bands_{g.start:02d}-{g.stop - 1:02d}" for g in band_groups(len(SHARDS), PipelineConfig().dedup.num_bands)]
# Every task of a refresh, as ``task:output-stem``: the per-shard stages, and dedup's and tokenize's phases.
ALL_TASKS = [f"{stage}:{s}" for stage in ("extract", "filter", "dedup_signatures") for s in SHARDS]
ALL_TASKS += [f"dedup_pairs:{b}" for b in BANDS] + ["dedup_clusters:_decisions"]
ALL_TASKS += [f"{stage}:{s}" for stage in ("dedup_apply", "pii", "tokenize_encode") for s in SHARDS]
ALL_TASKS += ["tokenize_tokenizer:tokenizer", "tokenize_index:tokens"]


def task_runs_since(since: datetime) -> list[Any]:
    runs: list[Any] = []
    with get_client(sync_client=True) as client:
        while page := client.read_task_runs(limit=200, offset=len(runs)):
            runs += page
    return [r for r in runs if r.created and r.created >= since]


def task_states(since: datetime) -> dict[str, str]:
    """``stage:output-stem`` → state name of the stage task runs created since ``since``."""
    out = {}
    for r in task_runs_since(since):
        if "-/" in r.name:
            stage, output = r.name.split("-/", 1)
            out[f"{stage}:{Path(output).stem}"] = r.state_name
    return out


def recomputed(states: dict[str, str]) -> list[str]:
    return sorted(k for k, v in states.items() if v != "Cached")


def outputs(root: Path) -> dict[str, str]:
    """sha256 of every data file the stages wrote (Parquet shards, token shards, tokenizer), by relative path."""
    files = [
        p
        for p in (root / "sample").rglob("*")
        if p.suffix in (".parquet", ".bin", ".npy") or p.name == "tokenizer.json"
    ]
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(files)}


def config(root: Path, warcs: Path, *overrides: str) -> PipelineConfig:
    base = [f"data_root={root}", f'inputs=["{warcs}/*.warc.gz"]', "tokenize.vocab_size=1024"]
    return load_config(PipelineConfig, None, base + list(overrides))


def run(cfg: PipelineConfig) -> dict[str, str]:
    since = datetime.now(UTC)
    data_refresh(cfg)
    return task_states(since)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    warcs = tmp_path_factory.mktemp("warcs")
    generate_sample(warcs)
    root = tmp_path_factory.mktemp("root")
    states = run(config(root, warcs))
    tasks = plan_chain(config(root, warcs), resolve_inputs(config(root, warcs)))
    return {"warcs": warcs, "root": root, "first": states, "outputs": outputs(root), "tasks": tasks}


def test_first_run_computes_everything_then_a_rerun_nothing(world: dict[str, Any]) -> None:
    assert sorted(world["first"]) == sorted(ALL_TASKS) and recomputed(world["first"]) == sorted(ALL_TASKS)
    states = run(config(world["root"], world["warcs"]))
    assert recomputed(states) == [] and len(states) == len(ALL_TASKS)
    assert outputs(world["root"]) == world["outputs"]


def after_filter(world: dict[str, Any], prev: dict[str, str], now: dict[str, str]) -> list[str]:
    """The tasks after filter that rerun when the outputs go from ``prev`` to ``now``: a file is known by its
    content (the sha256 its manifest records), so exactly the tasks with an input whose bytes changed rerun."""
    root = Path(world["root"])

    def changed(path: str) -> bool:
        rel = str(Path(path).relative_to(root)) if Path(path).is_relative_to(root) else path
        return prev.get(rel) != now.get(rel)

    return [
        f"{step.spec.name}:{Path(call.output).stem}"
        for step in world["tasks"]
        if step.stage not in ("extract", "filter")
        for call in step.calls
        if any(changed(p) for p in call.inputs)
    ]


def test_changed_filter_threshold_reruns_filter_and_what_follows_not_extraction(world: dict[str, Any]) -> None:
    states = run(config(world["root"], world["warcs"], "filter.gopher_quality.min_stop_words=3"))
    changed = outputs(world["root"])
    assert changed != world["outputs"]  # the threshold drops documents
    assert recomputed(states) == sorted(
        [f"filter:{s}" for s in SHARDS] + after_filter(world, world["outputs"], changed)
    )

    # Back to the first threshold: its cache entries exist, but the files on disk were made with the other
    # one, so the manifest refuses the hit; the outputs come back byte-identical to the first run's.
    states = run(config(world["root"], world["warcs"]))
    assert outputs(world["root"]) == world["outputs"]
    assert recomputed(states) == sorted(
        [f"filter:{s}" for s in SHARDS] + after_filter(world, changed, world["outputs"])
    )


def test_changed_input_file_reruns_only_its_shard(world: dict[str, Any], shared_data: Path) -> None:
    warc = world["warcs"] / "sample-00003.warc.gz"
    original = warc.read_bytes()
    before = outputs(world["root"])
    # Append real records (gzip members concatenate): the file now holds 15 more pages.
    warc.write_bytes(original + (shared_data / "warc" / "dolma" / "sample-0001.warc.gz").read_bytes())
    try:
        states = run(config(world["root"], world["warcs"]))
    finally:
        warc.write_bytes(original)
    # Per-shard tasks rerun only shard 3; dedup's pairs and clusters read every shard, so they rerun, and after them
    # the tasks whose inputs changed (shard 3's, and any shard holding a duplicate of the new pages), then tokenize.
    now = outputs(world["root"])
    assert now["sample/dedup/sample-00003.parquet"] != before["sample/dedup/sample-00003.parquet"]
    assert recomputed(states) == sorted(
        ["extract:sample-00003", "filter:sample-00003"] + after_filter(world, before, now)
    )


def test_deleted_output_reruns_its_producer(world: dict[str, Any]) -> None:
    run(config(world["root"], world["warcs"]))  # back to the original input
    victim = world["root"] / "sample" / "pii" / "sample-00001.parquet"
    victim.unlink()
    states = run(config(world["root"], world["warcs"]))
    # pii writes the same bytes again, and a shard is known by the sha256 its manifest records: tokenize stays cached
    assert recomputed(states) == ["pii:sample-00001"]
    assert victim.is_file() and outputs(world["root"]) == world["outputs"]


def test_injected_faults_are_retried_and_outputs_are_byte_identical(
    world: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LMPIPE_FAIL_FIRST_ATTEMPT", "extract,filter,dedup,pii,tokenize")
    root = tmp_path / "root"
    since = datetime.now(UTC)
    state = data_refresh(config(root, world["warcs"]), return_state=True)
    assert state.is_completed()
    assert recomputed(task_states(since)) == sorted(ALL_TASKS)
    relocated = {k.replace(str(root), ""): v for k, v in outputs(root).items()}
    assert relocated == {k.replace(str(world["root"]), ""): v for k, v in world["outputs"].items()}

    retried = [r for r in task_runs_since(since) if "-/" in r.name and r.run_count == 2]
    logs: list[Any] = []
    log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id]))
    with get_client(sync_client=True) as client:
        while page := client.read_logs(log_filter, limit=200, offset=len(logs)):
            logs += page
    assert len(retried) == len(ALL_TASKS)
    messages = [(log.name, log.message) for log in logs]
    assert any(name.startswith("pipelines.") for name, _ in messages), "library logs belong in the run's logs"
    assert any("injected transient fault" in m for _, m in messages)


def test_invalid_parameter_is_rejected_before_any_work(world: dict[str, Any], tmp_path: Path) -> None:
    since = datetime.now(UTC)
    state = data_refresh({"data_root": str(tmp_path), "filter": {"language": {"threshold": 1.5}}}, return_state=True)
    assert state.is_failed()
    assert "threshold" in str(state.message) + repr(state.data)
    assert task_states(since) == {} and not any(tmp_path.iterdir())
