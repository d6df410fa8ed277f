"""The train task with launcher=slurm on a real one-node Slurm cluster (tests/conftest.py ``slurm_env``): sbatch
with 2 tasks, srun starting 2 ranks that Lightning's SLURMEnvironment wires together (gloo on 127.0.0.1), the
Prefect task following the job to its end; a cancelled job fails the task with the job's state.

    pytest tests/pipelines/test_train_slurm.py
"""

# ruff: noqa: F811  (the tokens_dir fixture, imported, is a parameter of the tests)
from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from pipelines.config import SlurmConfig
from pipelines.train.data import trajectory_batches
from pipelines.train.launchers import SLURM_JOB_FILE, render_sbatch
from tasks.stages import stage_task
from tests.pipelines.test_train import small_config, tokens_dir  # noqa: F401  (a fixture)
from tests.slurm_cluster import job_state

pytestmark = pytest.mark.slow


def slurm_config(**overrides: object):
    base = dict(launcher="slurm", devices=2, strategy="ddp", max_steps=6, val_every=3, warmup_steps=2)
    return small_config(**{**base, **overrides}, slurm=SlurmConfig(poll_seconds=0.5))


def _run_task(data: Path, run_dir: Path, cfg: object):
    task = stage_task("train", [str(data)], str(run_dir), cfg).with_options(retries=0)
    return task([str(data)], str(run_dir), cfg, None, return_state=True)


def test_the_sbatch_script_runs_two_ranks_through_srun(tokens_dir: Path, tmp_path: Path) -> None:
    cfg = slurm_config()
    script = render_sbatch(tokens_dir, tmp_path / "run", cfg)
    (tmp_path / "train.sbatch").write_text(script)
    assert subprocess.run(["bash", "-n", str(tmp_path / "train.sbatch")]).returncode == 0
    options = [line.split(" ", 1)[1] for line in script.splitlines() if line.startswith("#SBATCH ")]
    assert {"--nodes=1", "--ntasks-per-node=2", "--signal=SIGUSR1@90", "--requeue"} <= set(options)
    (srun,) = [line for line in script.splitlines() if line.startswith("srun ")]
    assert " -m pipelines.train.run --data " in srun and f"--output {tmp_path / 'run'}" in srun


def test_train_task_on_slurm_completes_and_a_cancelled_job_fails_it(
    slurm_env: dict[str, str], tokens_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in slurm_env.items():
        monkeypatch.setenv(key, value)
    run_dir = tmp_path / "run"
    state = _run_task(tokens_dir, run_dir, slurm_config())
    assert state.is_completed(), state.message
    job = json.loads((run_dir / SLURM_JOB_FILE).read_text())["job_id"]
    assert job_state(job, slurm_env) == "COMPLETED"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["world_size"] == 2 and summary["num_nodes"] == 1
    assert sorted(p.name for p in (run_dir / "data_log").iterdir()) == [
        "from0000000000-rank0.tsv", "from0000000000-rank1.tsv",
    ]  # fmt: skip
    assert sorted(trajectory_batches(run_dir / "data_log")) == list(range(12))
    output = (run_dir / "slurm" / f"slurm-{job}.out").read_text()
    assert "distributed_backend=gloo" in output and "done: 6 steps" in output

    # a long run, cancelled from outside while it trains: the task fails, naming the job and its state
    long_dir = tmp_path / "long"
    result: dict[str, object] = {}
    worker = threading.Thread(
        target=lambda: result.update(state=_run_task(tokens_dir, long_dir, slurm_config(max_steps=100_000))),
        daemon=True,
    )
    worker.start()
    deadline = time.monotonic() + 180
    while not (long_dir / SLURM_JOB_FILE).is_file() or job_state(_job(long_dir), slurm_env) != "RUNNING":
        assert time.monotonic() < deadline, "the long job never ran"
        time.sleep(0.5)
    long_job = _job(long_dir)
    subprocess.run(["scancel", long_job], env={**os.environ, **slurm_env}, check=True, timeout=60)
    worker.join(timeout=180)
    failed = result["state"]
    assert failed.is_failed(), failed
    assert f"slurm job {long_job} ended CANCELLED" in failed.message, failed.message


def _job(run_dir: Path) -> str:
    return str(json.loads((run_dir / SLURM_JOB_FILE).read_text())["job_id"])
