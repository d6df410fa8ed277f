"""The train stage: a GPT trained with Lightning on the tokenize stage's shards, in a subprocess.

    lmpipe task train --data TOKENS_DIR --output RUN_DIR [--max-steps N] [--preset tiny|gpt2-124m]

``run_train`` launches ``python -m pipelines.train.run`` (Lightning's DDP re-launches the command line, so training
never runs inside the caller's process) and streams its output to the ``pipelines.train`` logger.
``generate_text`` samples from a finished (or stopped) run directory. Torch and Lightning are imported lazily, so
importing this package stays cheap.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from pipelines.config import TrainConfig
from pipelines.errors import ConfigError, LmpipeError
from pipelines.shards import Manifest, sha256_file
from pipelines.stats import StageStats
from pipelines.tokenizer import TokenShardError

logger = logging.getLogger(__name__)

_CHILD_LEVELS = {"WARNING": logging.WARNING, "ERROR": logging.ERROR, "CRITICAL": logging.CRITICAL}
# Exit code of pipelines.train.run when its input is unusable (its last ERROR line names the file).
BAD_INPUT_EXIT_CODE = 3
NONFINITE_LOSS_EXIT_CODE = 4  # the loss (or the weights to checkpoint) became NaN/inf: NonFiniteLossError
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


class TrainingFailedError(LmpipeError, RuntimeError):
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
        self.args = (_last_error(last_lines) or self.args[0],)


class TrainingDivergedError(TrainingFailedError, ConfigError):
    """The training stopped on a NaN/inf loss (pipelines.errors.NonFiniteLossError in the subprocess); the message
    is its one line (step, value, what to change); the last good checkpoint is kept. Deterministic: not retried."""

    def __init__(self, output_dir: str | Path, returncode: int, last_lines: list[str]) -> None:
        super().__init__(output_dir, returncode, last_lines)
        self.args = (_last_error(last_lines) or self.args[0],)


def _last_error(lines: list[str]) -> str | None:
    """The message of the subprocess's last ERROR log line (its explained failure), if any."""
    errors = [line.split(": ", 1)[-1] for line in lines if line.startswith("ERROR ")]
    return errors[-1] if errors else None


def _failure(output_dir: Path, returncode: int, tail: list[str]) -> TrainingFailedError:
    kind = {BAD_INPUT_EXIT_CODE: TrainingInputError, NONFINITE_LOSS_EXIT_CODE: TrainingDivergedError}
    return kind.get(returncode, TrainingFailedError)(output_dir, returncode, tail)


@contextlib.contextmanager
def _slurm_requeue_signal() -> Iterator[None]:
    """While the training runs, SIGUSR1 (Slurm's warning before a time limit, ``#SBATCH --signal=SIGUSR1@90``, sent
    to every process of the step) does not kill this parent: the training child handles it (Lightning's
    SLURMEnvironment checkpoints and requeues). A handler, not SIG_IGN, so the child starts with the default and
    Lightning installs its own. Only in the main thread (where Python allows handlers; a Prefect task thread is not)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR1, previous)


# TrainConfig fields a run may change and still resume: how far it goes and on what hardware.
RESUMABLE_FIELDS = frozenset(
    {"max_steps", "devices", "num_nodes", "strategy", "compile", "val_every", "val_batches", "peak_flops"}
    | {"sample_prompt", "sample_tokens", "activation_checkpointing", "launcher", "rdzv_endpoint", "slurm"}
    # the global batch is devices × num_nodes × accumulate_grad_batches × batch_size: a run moved from 2 processes
    # to 1 keeps it by doubling accumulate_grad_batches (the data position is counted in global batches)
    | {"accumulate_grad_batches"}
)
IDENTITY_FILE = "run_identity.json"
# What a run directory holds of one trajectory; removed when the data or the model/optimizer config changed.
RUN_STATE = ("checkpoints", "logs", "metrics.csv", "summary.json", "loss_curve.png")


def run_identity(data_dir: Path, cfg: TrainConfig) -> dict[str, object]:
    """What a checkpoint in a run directory was trained on: the token files' sha256 and the non-resumable config.

    Digests come from the tokenize stage's manifest when its entry still matches the file, else are computed.
    """
    manifest = Manifest(data_dir)
    entries = manifest.load()
    files = {}
    for path in sorted([data_dir / "tokenizer.json", *data_dir.glob("train_*.bin"), *data_dir.glob("val_*.bin")]):
        entry = entries.get(path.name)
        files[path.name] = entry["sha256"] if entry and manifest.valid(path) else sha256_file(path)
    config = cfg.model_dump(mode="json", exclude=set(RESUMABLE_FIELDS))
    digest = hashlib.sha256(json.dumps({"files": files, "config": config}, sort_keys=True).encode()).hexdigest()
    return {"digest": digest, "files": files, "config": config}


def reset_if_stale(data_dir: Path, output_dir: Path, cfg: TrainConfig) -> bool:
    """Clear OUTPUT_DIR's trajectory when it was trained on other data or another config; True if cleared.

    Resuming a checkpoint on changed token shards would silently skip training on the new data (or mix two
    datasets in one run); a changed max_steps or device count still resumes.
    """
    identity = run_identity(data_dir, cfg)
    marker = output_dir / IDENTITY_FILE
    previous = json.loads(marker.read_text())["digest"] if marker.is_file() else None
    has_state = (output_dir / "checkpoints").exists()
    stale = has_state and previous != identity["digest"]
    if stale:
        logger.warning(
            "%s: trained on other token shards or another config (%s); starting a fresh run",
            output_dir,
            "no identity recorded" if previous is None else f"identity {previous[:12]} ≠ {identity['digest'][:12]}",
        )
        for name in RUN_STATE:
            path = output_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    output_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(identity, indent=2, sort_keys=True))
    return stale


def train_command(
    data_dir: str | Path, output_dir: str | Path, cfg: TrainConfig, limit: int | None = None
) -> list[str]:
    """The command line of the training subprocess."""
    cmd = [sys.executable, "-m", "pipelines.train.run", "--data", str(data_dir), "--output", str(output_dir)]
    cmd += ["--config-json", cfg.model_dump_json(), "--exit-with-parent"]
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
    reset_if_stale(data_dir, output_dir, cfg)
    cmd = train_command(data_dir, output_dir, cfg, limit)
    logger.info("launching %s", " ".join(cmd[:7]) + (f" --stop-step {limit}" if limit is not None else ""))
    started = time.perf_counter()
    tail: deque[str] = deque(maxlen=40)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # stdin: a pipe only this process writes to (never does): it closes when this process dies, even by kill -9,
    # and the training (--exit-with-parent) then stops instead of writing on beside a rerun
    with _slurm_requeue_signal():
        proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env
        )
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
            proc.stdin.close()
    if returncode != 0:
        raise _failure(output_dir, returncode, list(tail))
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
