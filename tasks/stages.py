"""One Prefect task per registered stage (pipelines.registry), each a thin wrapper of the stage's function.

    lmpipe task <stage> …            # through the task (cache, retries, logs in the UI when a server is set)
    lmpipe task <stage> … --direct   # straight through the pipelines function, no Prefect

Each task takes ``(inputs, output, cfg, limit)``, returns the stage's StageStats, is cached by STAGE_CACHE and
retried on transient faults. ``submit_stage`` checks the outputs against their manifest before trusting a hit.
"""

from __future__ import annotations

from typing import Any

from prefect import Task, task
from prefect.futures import PrefectFuture
from prefect.runtime import task_run

from pipelines import registry
from pipelines.stats import StageStats
from tasks.caching import STAGE_CACHE, outputs_valid
from tasks.retries import RETRY_OPTIONS, maybe_inject_fault


def _make_task(spec: registry.StageSpec) -> Task:
    def run(inputs: list[str], output: str, cfg: Any, limit: int | None = None) -> StageStats:
        maybe_inject_fault(spec.name, task_run.run_count - 1)
        return spec.run(inputs, output, cfg, limit=limit)

    run.__name__ = f"{spec.name}_task"
    run.__doc__ = f"Prefect task of stage {spec.name}: {spec.summary}."
    return task(
        run,
        name=spec.name,
        task_run_name=f"{spec.name}-{{output}}",
        cache_policy=STAGE_CACHE,
        persist_result=True,
        # No tags: a tagged task asks the API for tag concurrency slots before it runs, and on the ephemeral
        # SQLite API parallel shard tasks make that call fail with "database is locked" (503) and a 2 s client
        # back-off, which was most of a fully cached run's time. Limit concurrency per flow/deployment instead.
        **RETRY_OPTIONS,
    )


_TASKS: dict[registry.StageSpec, Task] = {}


def stage_task(stage: str, inputs: list[str], output: str, cfg: Any = None) -> Task:
    """The stage's task (made once per registered spec), set to recompute when its outputs are missing, differ
    from the manifest, or were made from other inputs or another config than ``cfg``."""
    spec = registry.get(stage)
    if spec not in _TASKS:
        _TASKS[spec] = _make_task(spec)
    return _TASKS[spec].with_options(refresh_cache=not outputs_valid(stage, inputs, output, cfg))


def submit_stage(
    stage: str,
    inputs: list[str],
    output: str,
    cfg: Any,
    *,
    limit: int | None = None,
    wait_for: list[PrefectFuture] | None = None,
) -> PrefectFuture:
    return stage_task(stage, inputs, output, cfg).submit(inputs, output, cfg, limit, wait_for=wait_for)
