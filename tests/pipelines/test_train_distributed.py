"""Training across processes and nodes on CPU (gloo): Lightning's DDP on one node, two "nodes" on 127.0.0.1
started through torchrun as a user starts the nodes of a cluster, and a 2-process run resumed on 1 process.

    pytest tests/pipelines/test_train_distributed.py

One DDP run (1 node × 2 processes, 10 steps) is the reference the other runs are held to: CPU training is
deterministic, so the same global batches give the same losses whatever started the ranks.
"""

# ruff: noqa: F811  (the tokens_dir fixture, imported, is a parameter of the tests)
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.train import run_train
from pipelines.train.data import TokenWindowDataset, find_shards, trajectory_batches
from pipelines.train.generation import load_model
from tests.conftest import _free_port
from tests.pipelines.test_train import expected_digest, metrics_rows, small_config, tokens_dir  # noqa: F401  (a fixture)

pytestmark = pytest.mark.slow
STEPS, VAL_EVERY = 10, 5
BIN = Path(sys.executable).parent


def ddp_config(**overrides: object):
    return small_config(max_steps=STEPS, val_every=VAL_EVERY, warmup_steps=3, **overrides)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def ddp_run(tokens_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The reference: one node, two processes (Lightning re-launches rank 1), 10 steps; its run dir and log lines."""
    run_dir = tmp_path_factory.mktemp("ddp") / "run"
    records = _Records()
    log = logging.getLogger("pipelines.train")
    log.addHandler(records)
    level = log.level
    log.setLevel(logging.INFO)
    try:
        run_train(tokens_dir, run_dir, ddp_config(strategy="ddp", devices=2))
    finally:
        log.removeHandler(records)
        log.setLevel(level)
    return run_dir, records.messages


def val_losses(run_dir: Path) -> list[tuple[int, float]]:
    return [(int(r["step"]), float(r["val_loss"])) for r in metrics_rows(run_dir) if r["val_loss"]]


def test_ddp_on_two_cpu_processes(
    ddp_run: tuple[Path, list[str]],
    tokens_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each rank reads its own global batches (rank r: r, r + 2, …), the loss falls, rank 0 reports."""
    run_dir, messages = ddp_run
    assert any("distributed_backend=gloo" in m for m in messages)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == STEPS and summary["world_size"] == 2 and summary["num_nodes"] == 1
    assert summary["tokens"] == STEPS * 2 * 8 * 64  # two ranks' batches per step
    assert summary["global_batches"] == 2 * STEPS

    batches = trajectory_batches(run_dir / "data_log")
    assert sorted(batches) == list(range(2 * STEPS))  # every global batch once, none twice
    cfg = ddp_config()
    for rank in (0, 1):  # the first batch of each rank is exactly its window stream's
        assert batches[rank] == expected_digest(tokens_dir, cfg, rank, 2, 0, monkeypatch)
    assert len(set(batches.values())) == 2 * STEPS  # distinct data per rank and step

    val = val_losses(run_dir)
    assert [s for s, _ in val] == [5, 10]
    assert val[1][1] < val[0][1] - 0.3, val  # falling


def test_two_nodes_through_torchrun_equal_one_node_of_two_processes(
    ddp_run: tuple[Path, list[str]],
    tokens_dir: Path,
    tmp_path: Path,
) -> None:
    """torchrun --nnodes 2 --node-rank 0|1 … lmpipe task train --direct, as two nodes of a cluster would run it: both
    exit 0, the losses are the one-node run's, and summary.json records 2 nodes and a world of 2."""
    run_dir = tmp_path / "run"
    cfg = ddp_config()
    sets = [f"{k}={json.dumps(v)}" for k, v in cfg.model_dump(mode="json", exclude_defaults=True).items()]
    sets += ["num_nodes=2", "devices=1"]
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "COLUMNS": "200"}
    for _attempt in range(3):  # the free port can be taken by another process before torchrun binds it: a new port
        port = _free_port()
        nodes = []
        for rank in (0, 1):
            cmd = [
                str(BIN / "torchrun"), "--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(rank),
                "--master-addr", "127.0.0.1", "--master-port", str(port), str(BIN / "lmpipe"), "task", "train",
                "--direct", "--data", str(tokens_dir), "--output", str(run_dir), "--preset", "tiny",
                "--max-steps", str(STEPS), *[a for s in sets for a in ("--set", s)],
            ]  # fmt: skip
            out = (tmp_path / f"node{rank}.log").open("w")
            nodes.append((subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, text=True), out))
        try:
            if nodes[0][0].wait(timeout=600) == 0:  # node 0 hosts the rendezvous: if it fails, node 1 would wait
                nodes[1][0].wait(timeout=600)
        finally:
            for proc, out in nodes:
                proc.kill()
                proc.wait()
                out.close()
        if "EADDRINUSE" not in (tmp_path / "node0.log").read_text():
            break
    logs = [(tmp_path / f"node{rank}.log").read_text() for rank in (0, 1)]
    assert [proc.returncode for proc, _ in nodes] == [0, 0], logs[0][-3000:] + logs[1][-3000:]

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["num_nodes"] == 2 and summary["world_size"] == 2 and summary["steps"] == STEPS
    reference = json.loads((ddp_run[0] / "summary.json").read_text())
    assert summary["tokens"] == reference["tokens"]
    for (step, loss), (ref_step, ref_loss) in zip(val_losses(run_dir), val_losses(ddp_run[0]), strict=True):
        assert step == ref_step and loss == pytest.approx(ref_loss, abs=1e-5)
    assert summary["final_train_loss"] == pytest.approx(reference["final_train_loss"], abs=1e-5)
    assert trajectory_batches(run_dir / "data_log") == trajectory_batches(ddp_run[0] / "data_log")


def held_out_loss(run_dir: Path, data_dir: Path) -> float:
    """The run's final model on the first 16 val windows (the same windows whatever the run's world size)."""
    model, _ = load_model(run_dir)
    ds = TokenWindowDataset(find_shards(data_dir, "val"), 64, 16, train=False)
    x, y = next(iter(ds))
    with torch.no_grad():
        _, loss = model(x, y)
    return float(loss)


def processes_of(run_dir: Path) -> list[int]:
    """PIDs whose command line names ``run_dir`` (the training's ranks and their launcher)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(run_dir).encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def kill_after_first_checkpoint(tokens: Path, run_dir: Path, cfg: object, home: Path) -> None:
    """``lmpipe task train --direct`` on 2 processes, SIGKILLed as soon as its first checkpoint is written; returns
    once none of its processes is left (the ranks stop when the launcher's stdin pipe closes)."""
    fields = cfg.model_dump(mode="json", exclude_defaults=True)
    sets = [a for k, v in fields.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    cmd = [str(BIN / "lmpipe"), "task", "train", "--direct", "--data", str(tokens), "--output", str(run_dir), *sets]
    env = {**os.environ, "PREFECT_HOME": str(home)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt, deadline = run_dir / "checkpoints" / "last.ckpt", time.monotonic() + 300
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the training ended before the kill"
    while processes_of(run_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not processes_of(run_dir), "ranks outlived the killed lmpipe"


def test_two_processes_killed_and_resumed_on_one_train_on_the_same_batches(
    ddp_run: tuple[Path, list[str]],
    tokens_dir: Path,
    tmp_path: Path,
) -> None:
    """2 processes, killed (-9) after the checkpoint of step 5, resumed on 1 process with accumulate_grad_batches=2
    (the same global batch): the lineage trains on exactly the uninterrupted run's global batches, none repeated,
    none skipped, and ends at the same model."""
    run_dir = tmp_path / "run"
    kill_after_first_checkpoint(tokens_dir, run_dir, ddp_config(strategy="ddp", devices=2), tmp_path / "prefect")
    stopped = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["TokenDataModule"]
    assert stopped["global_batches_consumed"] == 2 * VAL_EVERY and stopped["world_size"] == 2

    resumed = run_train(tokens_dir, run_dir, ddp_config(devices=1, accumulate_grad_batches=2))
    assert resumed.extra["steps"] == STEPS and resumed.extra["world_size"] == 1
    assert sorted(p.name for p in (run_dir / "data_log").iterdir()) == [
        "from0000000000-rank0.tsv", "from0000000000-rank1.tsv", "from0000000010-rank0.tsv",
    ]  # fmt: skip
    lineage = trajectory_batches(run_dir / "data_log")  # raises if a global batch was trained twice
    assert lineage == trajectory_batches(ddp_run[0] / "data_log")  # the same 20 batches, the same data in each
    reference = held_out_loss(ddp_run[0], tokens_dir)
    assert held_out_loss(run_dir, tokens_dir) == pytest.approx(reference, abs=1e-4)
    assert np.isfinite(reference)
