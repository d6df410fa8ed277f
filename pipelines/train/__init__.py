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
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from pipelines.config import TrainConfig
from pipelines.errors import ConfigError, LmpipeError, TransientError
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
    "world_size",
    "num_nodes",
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
RUN_STATE = ("checkpoints", "logs", "data_log", "metrics.csv", "summary.json", "loss_curve.png")


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
    """The command line that starts the training's ranks on this machine (launcher local or torchrun)."""
    from pipelines.train import launchers

    build = launchers.torchrun_command if cfg.launcher == "torchrun" else launchers.local_command
    return build(data_dir, output_dir, cfg, limit)


def _wait_for_rank_zero(data_dir: Path, output_dir: Path, cfg: TrainConfig, timeout: float = 600.0) -> None:
    """On a rank other than 0 (torchrun/srun started ``lmpipe task train --direct`` once per rank): rank 0 alone
    clears a stale run directory; wait until it has (its identity file matches), so this rank neither resumes from a
    checkpoint that is being removed nor removes one itself. A directory with no checkpoint needs no wait."""
    digest = run_identity(data_dir, cfg)["digest"]
    marker = output_dir / IDENTITY_FILE
    deadline = time.monotonic() + timeout
    while (output_dir / "checkpoints").exists():
        if marker.is_file() and json.loads(marker.read_text() or "{}").get("digest") == digest:
            return
        if time.monotonic() > deadline:
            raise ConfigError(f"{output_dir}: rank 0 did not take over this run directory within {timeout:.0f} s")
        time.sleep(0.5)


def _run_process(cmd: list[str], output_dir: Path) -> None:
    """Run the training command, its output streamed to this logger; raise on a non-zero exit."""
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
                _log_child_line(raw.rstrip(), tail)
            returncode = proc.wait()
        finally:
            if proc.poll() is None:  # the caller was interrupted: do not leave training running
                proc.terminate()
                proc.wait(timeout=30)
            proc.stdin.close()
    if returncode != 0:
        raise _failure(output_dir, returncode, list(tail))


def _log_child_line(line: str, tail: deque[str]) -> None:
    tail.append(line)
    logger.log(_CHILD_LEVELS.get(line.split(" ", 1)[0], logging.INFO), "%s", line)


class SlurmJobError(TrainingFailedError):
    """The Slurm job of a training ended in a state other than COMPLETED; the message names the job and state.
    Not retried: a cancelled, failed or timed-out job would end the same way again (a time limit that the run
    needs more of is Lightning's requeue on SIGUSR1, inside the job)."""

    def __init__(self, output_dir: Path, job_id: str, state: str, exit_code: str, log: Path, tail: list[str]):
        super().__init__(output_dir, 1, tail)
        self.job_id, self.state = job_id, state
        self.args = (f"{output_dir}: slurm job {job_id} ended {state} (exit code {exit_code}); its output: {log}",)


class SlurmNodeFailure(SlurmJobError, TransientError):
    """The job's node failed (NODE_FAIL, BOOT_FAIL): retried, and the new job resumes from the last checkpoint."""


SLURM_NODE_FAILURES = frozenset({"NODE_FAIL", "BOOT_FAIL"})


def _run_slurm(data_dir: Path, output_dir: Path, cfg: TrainConfig, limit: int | None) -> None:
    """Submit the run as an sbatch job (or follow the one a previous attempt submitted), stream its output, and
    raise with the job's state unless it ends COMPLETED. An interrupted caller cancels the job."""
    from pipelines.train import launchers

    job_id = launchers.active_slurm_job(output_dir)
    if job_id is None:
        script = output_dir / "slurm" / f"train-{time.strftime('%Y%m%dT%H%M%S')}.sbatch"
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(launchers.render_sbatch(data_dir, output_dir, cfg, limit))
        job_id = launchers.submit_sbatch(script)
        (output_dir / launchers.SLURM_JOB_FILE).write_text(json.dumps({"job_id": job_id, "script": str(script)}))
        logger.info("submitted %s as slurm job %s", script, job_id)
    else:
        logger.info("following slurm job %s, submitted by an earlier attempt", job_id)
    log = output_dir.resolve() / "slurm" / f"slurm-{job_id}.out"
    tail: deque[str] = deque(maxlen=40)
    done = None
    try:
        done = launchers.follow_slurm_job(job_id, log, cfg.slurm.poll_seconds, lambda line: _log_child_line(line, tail))
    finally:
        if done is None:  # interrupted (a cancelled flow, Ctrl-C): the job must not train on alone
            launchers.cancel_slurm_job(job_id)
    if done.state == "COMPLETED":
        return
    if done.state == "FAILED" and done.returncode in (BAD_INPUT_EXIT_CODE, NONFINITE_LOSS_EXIT_CODE):
        raise _failure(output_dir, done.returncode, list(tail))
    error = SlurmNodeFailure if done.state in SLURM_NODE_FAILURES else SlurmJobError
    raise error(output_dir, job_id, done.state, done.exit_code, log, list(tail))


def run_train(
    data_dir: str | Path, output_dir: str | Path, cfg: TrainConfig, *, limit: int | None = None
) -> StageStats:
    """Train (or resume training) on DATA_DIR's token shards into OUTPUT_DIR; stats from its summary.json.

    ``limit`` stops at that step (at most max_steps) while the LR schedule stays laid out over ``cfg.max_steps``;
    calling again without it resumes from OUTPUT_DIR/checkpoints/last.ckpt exactly where the run stopped.
    ``cfg.launcher`` picks how the ranks start (pipelines.train.launchers). Started once per rank itself (torchrun
    or srun running ``lmpipe task train --direct``), rank 0 owns the run directory and reports; the other ranks
    return stats with no figures.
    """
    from pipelines.train.launchers import process_rank
    from pipelines.train.staging import default_cache_root, stage_token_dir

    # s3://… (any fsspec URL): a local copy, each file checked against the sha256 the tokenize stage recorded
    data_dir = stage_token_dir(str(data_dir), default_cache_root())
    data_dir, output_dir = Path(data_dir), Path(output_dir)
    if not (data_dir / "tokenizer.json").is_file() or not any(data_dir.glob("train_*.bin")):
        raise FileNotFoundError(f"{data_dir}: expected tokenizer.json and train_*.bin / val_*.bin token shards")
    rank = process_rank()
    if rank == 0:
        reset_if_stale(data_dir, output_dir, cfg)
    else:
        _wait_for_rank_zero(data_dir, output_dir, cfg)
    started = time.perf_counter()
    if cfg.launcher == "slurm":
        _run_slurm(data_dir, output_dir, cfg, limit)
    else:
        cmd = train_command(data_dir, output_dir, cfg, limit)
        shown = [c for c in cmd if not c.startswith("{")]  # the config JSON is in train_config.json
        logger.info("launching %s", " ".join(shown))
        _run_process(cmd, output_dir)
    if rank != 0:
        return StageStats(stage="train", shard=f"rank{rank}", seconds=time.perf_counter() - started)
    summary = json.loads((output_dir / "summary.json").read_text())
    return StageStats(
        stage="train",
        shard="all",
        tokens=int(summary["tokens"]),
        seconds=time.perf_counter() - started,
        extra={k: summary[k] for k in SUMMARY_EXTRAS if k in summary},
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
