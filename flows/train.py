"""Train flow: one training task (a subprocess, as Lightning's DDP re-launches the command line).

lmpipe task train --data TOKENS_DIR --output RUN_DIR [--max-steps N] [--preset tiny|gpt2-124m]
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.plots import markdown_image
from pipelines.config import TrainConfig
from pipelines.stats import StageStats
from tasks.stages import submit_stage


@flow(name="train")
def train_flow(data_dir: str, run_dir: str, cfg: TrainConfig = TrainConfig()) -> StageStats:  # noqa: B008
    """Train a GPT on the token shards in ``data_dir``; checkpoints, metrics and a sample land in ``run_dir``."""
    stats = submit_stage("train", [data_dir], run_dir, cfg).result()
    x = stats.extra
    curve = Path(run_dir) / "loss_curve.png"
    create_markdown_artifact(
        key="training",
        markdown=(
            "# Training\n\n| metric | value |\n|---|---|\n"
            + "".join(f"| {k} | {v} |\n" for k, v in x.items() if k != "sample")
            + f"\n**Sample:** {x.get('sample', '')}\n"
            + (
                f"\n{markdown_image(curve, 'loss curve')}\n"
                if (curve := Path(run_dir) / "loss_curve.png").is_file()
                else ""
            )
        ),
        description="Final losses and a generated sample",
    )
    return stats
