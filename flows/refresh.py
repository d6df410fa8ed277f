"""Data-refresh flow: WARC files → extract → filter → dedup → pii → tokenize, one task per shard per stage.

lmpipe run                       # the whole pipeline on the built-in sample (this flow + training)
python -m flows.refresh          # this flow alone on the built-in sample
lmpipe refresh --crawl CC-MAIN-2024-10 --max-warcs 2   # this flow alone on WARC files of a Common Crawl crawl
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel

from flows.paths import shard_output, stage_dir
from flows.plots import funnel_png, markdown_image
from pipelines import registry
from pipelines.config import PipelineConfig
from pipelines.crawl import LATEST, crawl_warc_paths, newest_unprocessed, refresh_marker
from pipelines.explore import stage_histograms
from pipelines.sample import generate_sample
from pipelines.stats import StageStats, funnel_markdown, funnel_rows, merge
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
    """One stage of a refresh: its spec, its config, and each of its task calls as (inputs, output)."""

    spec: registry.StageSpec
    cfg: BaseModel
    calls: list[tuple[list[str], str]]


def plan_chain(config: PipelineConfig, warcs: list[str]) -> list[StageStep]:
    """Every stage of the data chain (pipelines.registry) with its task calls: a map stage one per shard, reading
    its own shard upstream; a reduce stage one over all shards."""
    root, crawl = config.data_root, config.extract.crawl_id
    sources, steps = list(warcs), []
    for spec in registry.data_chain():
        if spec.shape == "map":
            calls = [
                ([src], shard_output(root, crawl, spec.directory, w)) for src, w in zip(sources, warcs, strict=True)
            ]
            sources = [out for _, out in calls]
        else:
            out_dir = str(stage_dir(root, crawl, spec.directory))
            calls = [(sources, out_dir)]
            sources = spec.downstream(sources, out_dir)
        steps.append(StageStep(spec, registry.stage_config(config, spec.name), calls))
    return steps


def submit_chain(steps: list[StageStep]) -> list[list[PrefectFuture]]:
    """Submit the planned stages: a map task waits only for its own shard's task upstream (when the stage before
    is a map too), every other task for all tasks of the stage before."""
    upstream: list[PrefectFuture] = []
    previous, submitted = None, []
    for step in steps:
        per_shard = step.spec.shape == "map" and previous == "map"  # shard i waits for shard i only
        futures = [
            submit_stage(step.spec.name, ins, out, step.cfg, wait_for=[upstream[i]] if per_shard else upstream)
            for i, (ins, out) in enumerate(step.calls)
        ]
        upstream, previous = futures, step.spec.shape
        submitted.append(futures)
    return submitted


@flow(name="data-refresh", task_runner=ThreadPoolTaskRunner(max_workers=os.cpu_count() or 2))
def data_refresh(config: PipelineConfig = PipelineConfig()) -> list[StageStats]:  # noqa: B008
    """Process every WARC file of the run through the data stages; return one merged StageStats per stage.

    With ``crawl.crawl_id = latest`` (the scheduled refresh) the run takes the newest crawl not yet refreshed with
    this slice; WARC files processed before are cache hits, so a refresh only pays for what is new."""
    log = get_run_logger()
    config = resolve_latest_crawl(config)
    warcs = resolve_inputs(config)
    root, crawl = config.data_root, config.extract.crawl_id
    log.info("data-refresh: %d WARC file(s) → %s", len(warcs), stage_dir(root, crawl, ""))
    progress = create_progress_artifact(progress=0.0, description="data-refresh: shard tasks completed")
    steps = plan_chain(config, warcs)
    submitted = submit_chain(steps)
    _track([f for futures in submitted for f in futures], progress)
    stats = [
        futures[0].result() if step.spec.shape == "reduce" else merge([f.result() for f in futures], step.spec.name)
        for step, futures in zip(steps, submitted, strict=True)
    ]
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
