"""Data-refresh flow: WARC files → extract → filter → dedup → pii → tokenize, one task per shard per stage.

lmpipe run                       # the whole pipeline on the built-in sample (this flow + training)
python -m flows.refresh          # this flow alone on the built-in sample
lmpipe refresh --crawl CC-MAIN-2024-10 --max-warcs 2   # this flow alone on WARC files of a Common Crawl crawl
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prefect import flow, get_run_logger
from prefect import runtime as prefect_runtime
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.client.orchestration import get_client
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from pydantic import BaseModel

from flows.paths import stage_dir
from flows.plots import funnel_png, markdown_image
from pipelines import registry
from pipelines.accounting import PhaseRun, check_chain
from pipelines.config import PipelineConfig, RunnerConfig
from pipelines.crawl import LATEST, crawl_warc_paths, newest_unprocessed, refresh_marker
from pipelines.errors import ConfigError
from pipelines.explore import stage_histograms
from pipelines.runlock import data_root_lock
from pipelines.sample import generate_sample
from pipelines.stats import StageStats, funnel_markdown, funnel_rows
from pipelines.warc import expand_inputs
from tasks.stages import submit_stage


def resolve_latest_crawl(config: PipelineConfig) -> PipelineConfig:
    """``crawl.crawl_id = latest`` → the newest crawl of the index without a completed refresh of this slice."""
    if not config.crawl or config.crawl.crawl_id != LATEST:
        return config
    crawl_id = newest_unprocessed(config.data_root, config.crawl.selection(), config.crawl.index_url)
    get_run_logger().info("crawl 'latest' is %s", crawl_id)
    return config.model_copy(
        update={
            "crawl": config.crawl.model_copy(update={"crawl_id": crawl_id}),
            "extract": config.extract.model_copy(update={"crawl_id": crawl_id}),
        }
    )


def resolve_inputs(config: PipelineConfig) -> list[str]:
    """The WARC files of this run: a slice of a Common Crawl crawl, the configured paths/globs/URLs, or the
    built-in sample (made on demand). With a crawl, config.extract.crawl_id is already the crawl's id."""
    if config.crawl:
        c = config.crawl
        return crawl_warc_paths(
            c.crawl_id, max_warcs=c.max_warcs, offset=c.offset, stride=c.stride, base_url=c.base_url
        )
    if config.inputs:
        files = expand_inputs(config.inputs)
        if not files:
            raise FileNotFoundError(f"no WARC file matches {config.inputs}")
        return files
    sample_dir = os.path.join(config.data_root, "sample-warc")
    return [str(p) for p in generate_sample(sample_dir, config.sample)]


def _track(futures: list[PrefectFuture], progress_id: object) -> None:
    """Advance the progress artifact as each shard task finishes (in completion order, not submission order), so
    a user watching a long refresh in the UI sees it move. Failures are left for ``result()`` to raise."""
    for done, _ in enumerate(as_completed(futures), start=1):
        update_progress_artifact(progress_id, progress=100.0 * done / len(futures))


@dataclass(frozen=True)
class StageStep:
    """One stage (or one phase of a composite stage) of a refresh: its spec, its config, its tasks, and the chain
    stage it belongs to."""

    spec: registry.StageSpec
    cfg: BaseModel
    calls: list[registry.Call]
    stage: str


def plan_chain(config: PipelineConfig, warcs: list[str]) -> list[StageStep]:
    """Every stage of the data chain (pipelines.registry), composites expanded into their phases, with the tasks
    each plans: a map stage one per shard (dedup's pairs: one per band group), a reduce stage one over all shards."""
    root, crawl = config.data_root, config.extract.crawl_id
    previous, steps = list(warcs), []
    for spec in registry.data_chain():
        cfg = registry.stage_config(config, spec.name)
        for phase, calls in registry.plan_phases(spec, previous, str(stage_dir(root, crawl, spec.directory)), cfg):
            steps.append(StageStep(phase, cfg, calls, spec.name))
        previous = [f for call in steps[-1].calls for f in call.produces]
    return steps


@contextmanager
def task_runner(cfg: RunnerConfig) -> Iterator[TaskRunner | None]:
    """The task runner the chain's tasks go to: None for the flow's own thread pool (``local``), or a started
    prefect-ray RayTaskRunner on ``cfg.address`` with each task's Ray resources (``ray``)."""
    if cfg.kind == "local":
        yield None
        return
    try:
        from prefect_ray import RayTaskRunner
        from prefect_ray.context import remote_options
    except ImportError as e:
        raise ConfigError("runner.kind=ray needs prefect-ray and ray: pip install 'lmpipe[ray]'") from e
    runtime_env = {"env_vars": _prefect_api_env()}
    with (
        RayTaskRunner(address=cfg.address, init_kwargs={"runtime_env": runtime_env}) as runner,
        remote_options(**cfg.ray_options()),
    ):
        yield runner


def _prefect_api_env() -> dict[str, str]:
    """What a Ray worker needs to report to the Prefect API this flow uses: its URL (also the temporary server of
    an ephemeral run, which workers would otherwise replace by one of their own) and the auth string when set."""
    with get_client(sync_client=True) as client:
        env = {"PREFECT_API_URL": str(client.api_url).rstrip("/")}
    if auth := os.environ.get("PREFECT_API_AUTH_STRING"):
        env["PREFECT_API_AUTH_STRING"] = auth
    return env


def submit_chain(steps: list[StageStep], runner: TaskRunner | None = None) -> list[list[PrefectFuture]]:
    """Submit the planned tasks, each waiting for exactly the tasks that write its inputs (shard i of a map stage
    for shard i of the map stage before; a reduce task for all of them)."""
    producers: dict[str, PrefectFuture] = {}
    submitted = []
    for step in steps:
        futures = []
        for call in step.calls:
            upstream = list({id(f): f for f in (producers.get(p) for p in call.inputs) if f is not None}.values())
            futures.append(
                submit_stage(step.spec.name, call.inputs, call.output, step.cfg, wait_for=upstream, runner=runner)
            )
        for call, future in zip(step.calls, futures, strict=True):
            producers.update(dict.fromkeys(call.produces, future))
        submitted.append(futures)
    return submitted


def chain_stats(steps: list[StageStep], submitted: list[list[PrefectFuture]]) -> list[StageStats]:
    """One StageStats per stage of the chain (a composite's phases combined, pipelines.registry.stage_stats), once
    the books balance: every shard's documents from stage to stage, the published rows, the token counts
    (pipelines.accounting; a violation fails the run naming the stage and the shard)."""
    runs = [
        PhaseRun(step.stage, step.spec, step.calls, [f.result() for f in futures])
        for step, futures in zip(steps, submitted, strict=True)
    ]
    books = check_chain(runs)
    get_run_logger().info(
        "accounting: %s", "; ".join(f"{stage} {b['docs_in']} → {b['docs_kept']}" for stage, b in books.items())
    )
    per_stage: dict[str, list[list[StageStats]]] = {}
    for run in runs:
        per_stage.setdefault(run.stage, []).append(list(run.results))
    return [registry.stage_stats(registry.get(name), results) for name, results in per_stage.items()]


@flow(name="data-refresh", task_runner=ThreadPoolTaskRunner(max_workers=os.cpu_count() or 2))
def data_refresh(config: PipelineConfig = PipelineConfig()) -> list[StageStats]:  # noqa: B008
    """Process every WARC file of the run through the data stages; return one merged StageStats per stage.

    With ``crawl.crawl_id = latest`` (the scheduled refresh) the run takes the newest crawl not yet refreshed with
    this slice; WARC files processed before are cache hits, so a refresh only pays for what is new. The run holds
    its data root (pipelines.runlock): a second run on the same root waits ``lock_wait_seconds``, then refuses."""
    with data_root_lock(config.data_root, config.lock_wait_seconds, run_label()):
        return _refresh(config)


def run_label() -> str:
    """This flow run, as a refused run names the one holding the data root."""
    return f"flow run {prefect_runtime.flow_run.name!r} ({prefect_runtime.flow_run.id})"


def _refresh(config: PipelineConfig) -> list[StageStats]:
    log = get_run_logger()
    config = resolve_latest_crawl(config)
    warcs = resolve_inputs(config)
    root, crawl = config.data_root, config.extract.crawl_id
    log.info("data-refresh: %d WARC file(s) → %s", len(warcs), stage_dir(root, crawl, ""))
    progress = create_progress_artifact(progress=0.0, description="data-refresh: shard tasks completed")
    steps = plan_chain(config, warcs)
    with task_runner(config.runner) as runner:
        submitted = submit_chain(steps, runner)
        _track([f for futures in submitted for f in futures], progress)
        stats = chain_stats(steps, submitted)
    create_markdown_artifact(
        key="funnel",
        markdown="# Data funnel\n\n" + funnel_markdown(stats) + "\n\n" + markdown_image(funnel_png(stats), "funnel"),
        description="Documents per stage",
    )
    create_table_artifact(key="funnel-table", table=funnel_rows(stats), description="Documents per stage and reason")
    histograms = stage_histograms(stage_dir(root, crawl, "filter"))
    if histograms is not None:
        create_markdown_artifact(
            key="filter-scores",
            markdown="# Filter scores\n\nEvery score the filter stage stored, its threshold in red "
            "(`lmpipe explore --input DIR --set KEY=VALUE` re-applies others).\n\n"
            + markdown_image(histograms, "filter score histograms"),
            description="Histograms of the filter scores with their thresholds",
        )
    if config.crawl:
        marker = refresh_marker(root, crawl)
        marker.write_text(
            json.dumps({"selection": config.crawl.selection(), "warcs": warcs, "finished": time.time()}, indent=2)
        )
    return stats


if __name__ == "__main__":
    for s in data_refresh():
        print(s.model_dump_json())
