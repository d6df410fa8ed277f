"""End-to-end flow: data refresh on the inputs (default: built-in sample), then training, then a report.

lmpipe run
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.paths import run_dir, tokens_dir
from flows.refresh import data_refresh, run_label
from flows.train import train_flow
from pipelines.config import PipelineConfig
from pipelines.runlock import data_root_lock
from pipelines.stats import StageStats, funnel_markdown


def render_report(stats: list[StageStats], train: StageStats) -> str:
    x = train.extra
    return (
        "# lmpipe report\n\n## Funnel\n\n" + funnel_markdown(stats) + "\n\n## Training\n\n"
        f"- final train loss: {x.get('final_train_loss')}\n- final val loss: {x.get('final_val_loss')}\n"
        f"- unigram-entropy baseline (val tokens): {x.get('unigram_entropy')}\n"
        f"- tokens/s: {x.get('tokens_per_sec')}, MFU: {x.get('mfu')}\n\n## Sample\n\n{x.get('sample', '')}\n"
    )


@flow(name="end-to-end")
def end_to_end(config: PipelineConfig = PipelineConfig()) -> dict:  # noqa: B008
    """Run every stage and return the funnel, training summary and the report's path (holding the data root for the
    whole run, pipelines.runlock)."""
    with data_root_lock(config.data_root, config.lock_wait_seconds, run_label()):
        return _end_to_end(config)


def _end_to_end(config: PipelineConfig) -> dict:
    stats = data_refresh(config)
    crawl = config.extract.crawl_id
    train = train_flow(
        tokens_dir(config.data_root, crawl), run_dir(config.data_root, crawl, config.train.preset), config.train
    )
    report = render_report(stats, train)
    path = Path(config.data_root) / "report.md"
    path.write_text(report)
    create_markdown_artifact(key="report", markdown=report, description="lmpipe end-to-end report")
    return {"stats": [s.model_dump() for s in stats], "train": train.model_dump(), "report": str(path)}
