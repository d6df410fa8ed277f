"""A diverging training run (a learning rate far too high for the tiny GPT) stops at its first NaN/inf with an error
naming the step and the value, keeps its last good checkpoint, is not retried by its Prefect task, and a rerun
resumes from that checkpoint (and, with the same config, diverges again at the same step).

pytest tests/pipelines/test_train_nonfinite.py
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from pipelines.errors import NonFiniteLossError
from pipelines.train import TrainingDivergedError
from pipelines.train.data import TokenDataModule
from pipelines.train.generation import load_model
from pipelines.train.module import GPTModule
from pipelines.train.run import NONFINITE_LOSS_EXIT_CODE, build_gpt_config, build_trainer, load_tokenizer
from tasks.stages import stage_task
from tests.pipelines.test_train import metrics_rows, small_config, tokens_dir  # noqa: F401 (a fixture)
from tests.tasks.test_stage_cache import _run_count

# Warmup to lr 30 over 30 steps: the loss is finite (if huge) for the first steps, then NaN/inf around step 10.
DIVERGING = dict(max_steps=40, warmup_steps=30, learning_rate=30.0, val_every=3, val_batches=1)
FIRST_LIMIT = 3  # a first, stopped run: its metrics.csv and summary.json exist before the divergence
DIVERGED = re.compile(r"(train_loss|a weight) is (nan|inf|-inf) at step (\d+): training diverged")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _all_finite(tensors: object) -> bool:
    """True when every floating-point tensor in a (nested) checkpoint structure is finite."""
    if torch.is_tensor(tensors):
        return not tensors.is_floating_point() or bool(torch.isfinite(tensors).all())
    if isinstance(tensors, dict):
        return all(_all_finite(v) for v in tensors.values())
    if isinstance(tensors, list | tuple):
        return all(_all_finite(v) for v in tensors)
    return True


def _run_task(data: str, run_dir: str, cfg: object, limit: int | None):
    task = stage_task("train", [data], run_dir, cfg).with_options(retry_delay_seconds=0)
    return task([data], run_dir, cfg, limit, return_state=True)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_diverging_run_stops_with_clear_error_and_keeps_last_good_checkpoint(
    tokens_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    cfg = small_config(**DIVERGING)
    data, run_dir = str(tokens_dir), tmp_path / "run"
    last_ckpt = run_dir / "checkpoints" / "last.ckpt"

    stopped = _run_task(data, str(run_dir), cfg, FIRST_LIMIT)
    assert stopped.is_completed(), stopped
    lineage = metrics_rows(run_dir)
    assert max(int(r["step"]) for r in lineage) == FIRST_LIMIT

    # The same run, on to max_steps: it diverges. One attempt only (deterministic), the message names step and value.
    state = _run_task(data, str(run_dir), cfg, None)
    assert state.is_failed()
    assert _run_count(state) == 1
    with pytest.raises(TrainingDivergedError) as err:  # a ConfigError: deterministic, one line
        state.result()
    assert err.value.returncode == NONFINITE_LOSS_EXIT_CODE and "\n" not in str(err.value)
    found = DIVERGED.search(str(err.value))
    assert found, str(err.value)
    step = int(found[3])
    assert re.match(r"ERROR \S+: " + re.escape(found[0]), err.value.last_lines[-1])  # no traceback after it

    # last.ckpt: the last periodic checkpoint before the bad step, with finite weights and optimizer state
    good = (step - 1) // cfg.val_every * cfg.val_every
    assert good > FIRST_LIMIT, f"diverged at step {step}: too early for this test's checkpoints"
    ckpt = torch.load(last_ckpt, weights_only=True)
    assert ckpt["global_step"] == good
    assert _all_finite(ckpt["state_dict"]) and _all_finite(ckpt["optimizer_states"])
    model, tokenizer = load_model(run_dir)
    idx = torch.tensor([tokenizer.encode("The farmer walked to the red house").ids])  # (1, T)
    _, loss = model(idx, targets=idx)
    assert math.isfinite(loss.item())

    # No NaN/inf was logged: Lightning's CSV log of the failed run stops before the bad step, the run's metrics.csv
    # is still the lineage the stopped run wrote.
    with (run_dir / "logs" / "version_1" / "metrics.csv").open(newline="") as f:
        logged = list(csv.DictReader(f))
    assert logged and all(math.isfinite(float(v)) for row in logged for v in row.values() if v)
    assert max(int(r["step"]) + 1 for r in logged) < step  # Lightning logs step k as k - 1
    assert metrics_rows(run_dir) == lineage

    # `lmpipe task train` again: resumes from that checkpoint, diverges at the same step, exits non-zero with the
    # message; last.ckpt is untouched.
    digest = _sha256(last_ckpt)
    config = tmp_path / "train.yaml"
    config.write_text(cfg.model_dump_json())  # JSON is YAML: exactly this config, so the run resumes
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "flows.cli", "task", "train", "--data", data, "--output", str(run_dir)]
    proc = subprocess.run([*cmd, "--config", str(config)], capture_output=True, text=True, env=env, timeout=400)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert f"resuming at step {good}" in out
    assert found[0] in out and "Traceback" not in out, out[-3000:]  # the one-line error, no traceback
    assert _sha256(last_ckpt) == digest


class PoisonWeight(Callback):
    """Sets one weight to ``value`` (NaN or inf) after optimizer step ``at``, as an optimizer step on an inf gradient
    would (Lightning runs ModelCheckpoint after the other callbacks, so this comes before that step's checkpoint)."""

    def __init__(self, at: int, value: float = math.nan) -> None:
        self.at, self.value = at, value

    def on_train_batch_end(self, trainer, pl_module, *args: object) -> None:
        if trainer.global_step == self.at:
            with torch.no_grad():
                next(pl_module.model.parameters()).view(-1)[0] = self.value


@pytest.mark.parametrize(
    ("poisoned_at", "value", "error"),
    [
        (4, math.nan, "a weight is nan at step 4"),
        (3, math.nan, "train_loss is nan at step 4"),
        (4, math.inf, "a weight is inf at step 4"),
        (3, math.inf, "train_loss is (nan|inf) at step 4"),  # an inf weight makes the next loss inf or NaN
    ],
    ids=["nan-at-a-checkpoint-step", "nan-between-checkpoints", "inf-at-a-checkpoint-step", "inf-between-checkpoints"],
)
def test_nonfinite_weights_never_reach_a_checkpoint(
    tokens_dir: Path,  # noqa: F811
    tmp_path: Path,
    poisoned_at: int,
    value: float,
    error: str,
) -> None:
    """NaN or inf weights right before a checkpoint: the save refuses them; in between: the next step's loss is not
    finite. Either way the error names the step and last.ckpt stays the good checkpoint of step 2."""
    cfg = small_config(max_steps=6, val_every=2, warmup_steps=2)
    gpt_config = build_gpt_config(cfg, load_tokenizer(tokens_dir / "tokenizer.json").get_vocab_size())
    data = TokenDataModule(tokens_dir, gpt_config.block_size, cfg.batch_size, gpt_config.vocab_size, cfg.seed)
    checkpoint = ModelCheckpoint(
        dirpath=tmp_path / "checkpoints", save_last=True, save_top_k=0, every_n_train_steps=cfg.val_every
    )  # as pipelines.train.run.train sets it up
    trainer = build_trainer(cfg, tmp_path, cfg.max_steps, [checkpoint, PoisonWeight(poisoned_at, value)])
    with pytest.raises(NonFiniteLossError, match=f"^{error}: training diverged") as err:
        trainer.fit(GPTModule(gpt_config, cfg), datamodule=data)
    assert err.value.step == 4
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2 and _all_finite(ckpt["state_dict"])
