"""One Prefect task per registered stage (pipelines.registry), each a thin wrapper of the stage's function.

    lmpipe task <stage> …            # through the task (cache, retries, logs in the UI when a server is set)
    lmpipe task <stage> … --direct   # straight through the pipelines function, no Prefect

Each task takes ``(inputs, output, cfg, limit)``, returns the stage's StageStats, is cached by STAGE_CACHE and
retried on transient faults. ``submit_stage`` checks the outputs against their manifest before trusting a hit.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

from prefect import Task
from prefect.futures import PrefectFuture
from prefect.runtime import task_run
from prefect.task_runners import TaskRunner

from pipelines import registry
from pipelines.stats import StageStats
from tasks.caching import STAGE_CACHE, outputs_valid
from tasks.retries import RETRY_OPTIONS, maybe_inject_fault


class StageTask(Task):
    """A stage's Prefect task whose cache refresh is decided when a run starts, not when it is submitted.

    ``submit_stage`` submits a whole chain at once, before any of it ran: at submission time a task's inputs may
    still be missing (their producer reruns) and would mark it stale. Prefect reads ``refresh_cache`` when the
    run opens its cache transaction — after its upstream tasks finished — so the manifest check runs then.
    """

    outputs_stale: Callable[[], bool] | None = None

    @property  # type: ignore[override]
    def refresh_cache(self) -> bool | None:
        return self.outputs_stale() if self.outputs_stale is not None else self._refresh_cache

    @refresh_cache.setter
    def refresh_cache(self, value: bool | None) -> None:
        self._refresh_cache = value


def _make_task(spec: registry.StageSpec) -> StageTask:
    def run(inputs: list[str], output: str, cfg: Any, limit: int | None = None, after: Any = None) -> StageStats:
        # ``after``: the upstream tasks' futures on a Ray runner (their results are not used: a future passed as a
        # parameter makes Ray schedule this task once they are done, instead of starting it to wait)
        maybe_inject_fault(spec.name, task_run.run_count - 1, spec.part_of)
        return spec.run(inputs, output, cfg, limit=limit)

    run.__name__ = f"{spec.name}_task"
    run.__doc__ = f"Prefect task of stage {spec.name}: {spec.summary}."
    return StageTask(
        run,
        name=spec.name,
        task_run_name=f"{spec.name}-{{output}}",
        cache_policy=STAGE_CACHE,
        persist_result=True,
        result_serializer="json",  # a cache hit reads JSON back, never unpickles what someone could have written
        # No tags: a tagged task asks the API for tag concurrency slots before it runs, and on the ephemeral
        # SQLite API parallel shard tasks make that call fail with "database is locked" (503) and a 2 s client
        # back-off, which was most of a fully cached run's time. Limit concurrency per flow/deployment instead.
        **RETRY_OPTIONS,
    )


def _outputs_stale(stage: str, inputs: list[str], output: str, cfg: Any) -> bool:
    return not outputs_valid(stage, inputs, output, cfg)


_TASKS: dict[registry.StageSpec, StageTask] = {}


def stage_task(stage: str, inputs: list[str], output: str, cfg: Any = None) -> StageTask:
    """The stage's task (made once per registered spec), set to recompute when — at the start of its run — its
    outputs are missing, differ from the manifest, or were made from other inputs or another config than ``cfg``."""
    spec = registry.get(stage)
    if spec not in _TASKS:
        _TASKS[spec] = _make_task(spec)
    bound = copy.copy(_TASKS[spec])
    bound.outputs_stale = functools.partial(_outputs_stale, stage, list(inputs), output, cfg)
    return bound


def submit_stage(
    stage: str,
    inputs: list[str],
    output: str,
    cfg: Any,
    *,
    limit: int | None = None,
    wait_for: list[PrefectFuture] | None = None,
    runner: TaskRunner | None = None,
) -> PrefectFuture:
    """Submit the stage's task, after the ``wait_for`` tasks: to the flow's task runner, or to ``runner`` (a Ray
    task runner, where the upstream futures go in as the ``after`` parameter, so Ray itself orders the tasks)."""
    task = stage_task(stage, inputs, output, cfg)
    if runner is None:
        return task.submit(inputs, output, cfg, limit, wait_for=wait_for)
    parameters = {"inputs": inputs, "output": output, "cfg": cfg, "limit": limit, "after": list(wait_for or [])}
    return runner.submit(task, parameters)
