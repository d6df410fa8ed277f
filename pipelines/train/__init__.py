"""The train stage: a GPT trained with Lightning on the tokenize stage's shards, in a subprocess.

    lmpipe task train --data TOKENS_DIR --output RUN_DIR [--max-steps N] [--preset tiny|gpt2-124m]

``run_train`` launches ``python -m pipelines.train.run`` (Lightning's DDP re-launches the command line, so training
never runs inside the caller's process) and streams its output to the ``pipelines.train`` logger.
``generate_text`` samples from a finished (or stopped) run directory. Torch and Lightning are imported lazily, so
importing this package stays cheap.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

from pipelines.config import TrainConfig
from pipelines.stats import StageStats
from pipelines.tokenizer import TokenShardError

logger = logging.getLogger(__name__)

_CHILD_LEVELS = {"WARNING": logging.WARNING, "ERROR": logging.ERROR, "CRITICAL": logging.CRITICAL}
# Exit code of pipelines.train.run when its input is unusable (its last ERROR line names the file).
BAD_INPUT_EXIT_CODE = 3
# summary.json entries copied into StageStats.extra
SUMMARY_EXTRAS = (
    "final_val_loss",
    "final_train_loss",
    "unigram_entropy",
    "tokens_per_sec",
    "mfu",
    "steps",
    "params",
    "sample",
)


class TrainingFailedError(RuntimeError):
    """The training subprocess exited with an error; carries its last output lines."""

    def __init__(self, output_dir: str | Path, returncode: int, last_lines: list[str]) -> None:
        self.output_dir = Path(output_dir)
        self.returncode = returncode
        self.last_lines = last_lines
        tail = "\n".join(last_lines)
        super().__init__(f"{output_dir}: training exited with code {returncode}; last output:\n{tail}")


class TrainingInputError(TrainingFailedError, TokenShardError):
    """The training subprocess rejected its input (a token shard or tokenizer.json); the message names the file."""

    def __init__(self, output_dir: str | Path, returncode: int, last_lines: list[str]) -> None:
        super().__init__(output_dir, returncode, last_lines)
        errors = [line.split(": ", 1)[-1] for line in last_lines if line.startswith("ERROR ")]
        self.args = (errors[-1] if errors else self.args[0],)


def train_command(
    data_dir: str | Path, output_dir: str | Path, cfg: TrainConfig, limit: int | None = None
) -> list[str]:
    """The command line of the training subprocess."""
    cmd = [sys.executable, "-m", "pipelines.train.run", "--data", str(data_dir), "--output", str(output_dir)]
    cmd += ["--config-json", cfg.model_dump_json()]
    if limit is not None:
        cmd += ["--stop-step", str(limit)]
    return cmd


def run_train(
    data_dir: str | Path, output_dir: str | Path, cfg: TrainConfig, *, limit: int | None = None
) -> StageStats:
    """Train (or resume training) on DATA_DIR's token shards into OUTPUT_DIR; stats from its summary.json.

    ``limit`` stops at that step (at most max_steps) while the LR schedule stays laid out over ``cfg.max_steps``;
    calling again without it resumes from OUTPUT_DIR/checkpoints/last.ckpt exactly where the run stopped.
    """
    data_dir, output_dir = Path(data_dir), Path(output_dir)
    if not (data_dir / "tokenizer.json").is_file() or not any(data_dir.glob("train_*.bin")):
        raise FileNotFoundError(f"{data_dir}: expected tokenizer.json and train_*.bin / val_*.bin token shards")
    output_dir.mkdir(parents=True, exist_ok=True)
    cmd = train_command(data_dir, output_dir, cfg, limit)
    logger.info("launching %s", " ".join(cmd[:7]) + (f" --stop-step {limit}" if limit is not None else ""))
    started = time.perf_counter()
    tail: deque[str] = deque(maxlen=40)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env)
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip()
            tail.append(line)
            logger.log(_CHILD_LEVELS.get(line.split(" ", 1)[0], logging.INFO), "%s", line)
        returncode = proc.wait()
    finally:
        if proc.poll() is None:  # the caller was interrupted: do not leave training running
            proc.terminate()
            proc.wait(timeout=30)
    if returncode == BAD_INPUT_EXIT_CODE:
        raise TrainingInputError(output_dir, returncode, list(tail))
    if returncode != 0:
        raise TrainingFailedError(output_dir, returncode, list(tail))
    summary = json.loads((output_dir / "summary.json").read_text())
    return StageStats(
        stage="train",
        shard="all",
        tokens=int(summary["tokens"]),
        seconds=time.perf_counter() - started,
        extra={k: summary[k] for k in SUMMARY_EXTRAS},
    )


def generate_text(
    run_dir: str | Path,
    prompt: str,
    max_new_tokens: int = 60,
    temperature: float = 0.8,
    top_k: int | None = 50,
    seed: int = 0,
) -> str:
    """The prompt and a sampled continuation from RUN_DIR's last checkpoint (CPU, or the first GPU)."""
    import torch

    from pipelines.train.generation import complete, load_model

    model, tokenizer = load_model(run_dir, device="cuda" if torch.cuda.is_available() else "cpu")
    return complete(model, tokenizer, prompt, max_new_tokens, temperature, top_k, seed)
