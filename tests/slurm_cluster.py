"""A real one-node Slurm cluster on 127.0.0.1 for tests: munged, slurmctld and slurmd through infra/slurm-local.sh.

    from tests.slurm_cluster import slurm_cluster

    with slurm_cluster(tmp_path / "slurm") as env:      # {"SLURM_CONF": ..., "PATH": ...}
        subprocess.run(["sbatch", ...], env={**os.environ, **env})

tests/conftest.py starts one per test session for the tests that ask for ``slurm_env``.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import _free_port

SCRIPT = Path(__file__).resolve().parents[1] / "infra" / "slurm-local.sh"
SBIN = ("/usr/sbin", "/sbin")  # slurmctld, slurmd and munged live there (Debian's slurm-wlm, munge)
BINARIES = ("sbatch", "srun", "scontrol", "scancel", "sinfo", "munge", "munged", "slurmctld", "slurmd")


def search_path() -> str:
    """PATH with the sbin directories added (a non-login shell may lack them)."""
    parts = os.environ.get("PATH", os.defpath).split(os.pathsep)
    return os.pathsep.join(parts + [d for d in SBIN if d not in parts])


def _logs(state_dir: Path) -> str:
    out = []
    for name in ("munged", "slurmctld", "slurmd"):
        path = state_dir / "logs" / f"{name}.log"
        if path.is_file():
            tail = path.read_text(errors="replace").splitlines()[-15:]
            out.append(f"--- {path} (last lines)\n" + "\n".join(tail))
    return "\n".join(out)


@contextmanager
def slurm_cluster(state_dir: Path, *, timeout: float = 120) -> Iterator[dict[str, str]]:
    """``infra/slurm-local.sh up`` with its state in ``state_dir`` and free ports on 127.0.0.1; yields the variables a
    client (sbatch, srun, scontrol, …) needs; ``down`` on exit (which cancels the jobs still running)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = search_path()
    env = {
        **os.environ,
        "PATH": path,
        "LMPIPE_SLURM_DIR": str(state_dir),
        "LMPIPE_SLURMCTLD_PORT": str(_free_port()),
        "LMPIPE_SLURMD_PORT": str(_free_port()),
    }
    try:
        up = subprocess.run(["bash", str(SCRIPT), "up"], env=env, capture_output=True, text=True, timeout=timeout)
        if up.returncode != 0:
            raise RuntimeError(f"slurm-local.sh up failed ({up.returncode}):\n{up.stderr}\n{_logs(state_dir)}")
        exported = subprocess.run(["bash", str(SCRIPT), "env"], env=env, capture_output=True, text=True, check=True)
        client = dict(re.findall(r"^export (\w+)=(.*)$", exported.stdout, flags=re.M))
        yield {**client, "PATH": path}
    finally:
        subprocess.run(["bash", str(SCRIPT), "down"], env=env, capture_output=True, timeout=120)


def job_state(job_id: str, env: dict[str, str]) -> str:
    """The job's JobState as ``scontrol show job`` reports it (PENDING, RUNNING, COMPLETED, CANCELLED, …)."""
    out = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], env={**os.environ, **env}, capture_output=True, text=True, check=True
    ).stdout
    m = re.search(r"\bJobState=(\S+)", out)
    if m is None:
        raise RuntimeError(f"no JobState for job {job_id} in: {out!r}")
    return m.group(1)


def wait_job(job_id: str, env: dict[str, str], states: set[str], timeout: float = 120) -> str:
    """Poll ``scontrol show job`` until the job is in one of ``states`` (returned); a TimeoutError names the last."""
    deadline = time.monotonic() + timeout
    state = job_state(job_id, env)
    while state not in states:
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {state} after {timeout} s (waiting for {sorted(states)})")
        time.sleep(0.5)
        state = job_state(job_id, env)
    return state
