"""The local Slurm cluster (infra/slurm-local.sh through the ``slurm_env`` fixture) runs real jobs: sbatch + srun
with two tasks to COMPLETED, the task variables Lightning's SLURMEnvironment reads, and scancel to CANCELLED."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.slurm_cluster import job_state, wait_job

FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


def sbatch(env: dict[str, str], cwd: Path, *args: str) -> str:
    cmd = ["sbatch", "--parsable", *args]
    out = subprocess.run(cmd, env={**os.environ, **env}, cwd=cwd, capture_output=True, text=True, check=True).stdout
    return out.strip().split(";")[0]  # --parsable: "JOBID" or "JOBID;CLUSTER"


def test_sbatch_srun_two_tasks_complete(slurm_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "hostname.out"
    job = sbatch(slurm_env, tmp_path, "--ntasks=2", "-o", str(out), "--wrap", "srun hostname")
    state = wait_job(job, slurm_env, FINAL, timeout=120)
    assert state == "COMPLETED", f"job {job} ended {state}: {out.read_text() if out.exists() else '(no output)'}"
    assert len(out.read_text().splitlines()) == 2, out.read_text()


def test_srun_task_variables(slurm_env: dict[str, str], tmp_path: Path) -> None:
    # Lightning's SLURMEnvironment wants SLURM_NTASKS_PER_NODE when SLURM_NTASKS > 1, and Slurm sets it only for
    # --ntasks-per-node (not for --ntasks alone): train.sbatch and lmpipe's submission use --ntasks-per-node.
    out = tmp_path / "vars.out"
    probe = 'echo "$SLURM_PROCID $SLURM_NTASKS $SLURM_NTASKS_PER_NODE $SLURM_NNODES $SLURM_JOB_NAME"'
    opts = ["--nodes=1", "--ntasks-per-node=2", "--job-name=lmpipe-probe", "-o", str(out)]
    job = sbatch(slurm_env, tmp_path, *opts, "--wrap", f"srun sh -c '{probe}'")
    state = wait_job(job, slurm_env, FINAL, timeout=120)
    assert state == "COMPLETED", f"job {job} ended {state}: {out.read_text() if out.exists() else '(no output)'}"
    rows = sorted(line.split() for line in out.read_text().splitlines())
    assert rows == [["0", "2", "2", "1", "lmpipe-probe"], ["1", "2", "2", "1", "lmpipe-probe"]], out.read_text()


def test_scancel_ends_a_running_job(slurm_env: dict[str, str], tmp_path: Path) -> None:
    job = sbatch(slurm_env, tmp_path, "-o", str(tmp_path / "sleep.out"), "--wrap", "sleep 300")
    assert wait_job(job, slurm_env, {"RUNNING"} | FINAL, timeout=60) == "RUNNING"
    subprocess.run(["scancel", job], env={**os.environ, **slurm_env}, check=True, timeout=30)
    assert wait_job(job, slurm_env, FINAL, timeout=60) == "CANCELLED"
    assert job_state(job, slurm_env) == "CANCELLED"  # still listed after it ended (MinJobAge)
