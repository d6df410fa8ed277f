"""Shared fixtures: the real data in ../shared/data, an isolated Prefect home per test session, one local two-node
Ray cluster per session (tests that need it ask for ``ray_cluster``) and one local one-node Slurm cluster per session
(``slurm_env``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


# CI (.ci/run) sets LMPIPE_STRICT_TESTS=1: there a missing prerequisite (the real data, the browser) fails the
# test instead of skipping it, so a green CI run means every test ran.
STRICT = os.environ.get("LMPIPE_STRICT_TESTS") == "1"


def unavailable(reason: str, *, module_level: bool = False) -> None:
    """Skip for a missing prerequisite on a developer machine; fail under LMPIPE_STRICT_TESTS=1."""
    if STRICT:
        pytest.fail(f"{reason} (LMPIPE_STRICT_TESTS=1: required here)", pytrace=False)
    pytest.skip(reason, allow_module_level=module_level)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        unavailable(f"real evaluation data not found at {SHARED_DATA} (../shared/data beside the checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def _prefect_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Prefect's ephemeral API and result store in a throwaway home, so tests never share a cache with users."""
    home = tmp_path_factory.mktemp("prefect-home")
    os.environ["PREFECT_HOME"] = str(home)
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "pipelines")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[dict[str, str]]:
    """One Ray cluster for the test session, two nodes on 127.0.0.1 (``ray start --head`` and a second ``ray start
    --address``, one CPU each): its GCS ``address`` and its ``dashboard`` URL (the state API). Stopped (``ray stop``)
    at the end of the session."""
    ray = shutil.which("ray", path=str(Path(sys.executable).parent))
    if ray is None:
        unavailable("the ray CLI is not installed (pip install 'lmpipe[ray]')")
    port, dashboard = _free_port(), _free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats"]
    head = [ray, "start", "--head", "--port", str(port), "--dashboard-host", "127.0.0.1"]
    head += ["--dashboard-port", str(dashboard), *common]
    try:
        subprocess.run(head, env=env, check=True, capture_output=True, timeout=180)
        worker = [ray, "start", "--address", f"127.0.0.1:{port}", *common]
        subprocess.run(worker, env=env, check=True, capture_output=True, timeout=180)
        yield {"address": f"127.0.0.1:{port}", "dashboard": f"http://127.0.0.1:{dashboard}"}
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=180)


@pytest.fixture(scope="session")
def slurm_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One Slurm cluster for the test session: munged, slurmctld and slurmd on 127.0.0.1 (infra/slurm-local.sh, its
    state in a tmp dir, free ports), one node with this machine's CPUs, partition ``debug``. Yields the client
    variables (``SLURM_CONF``, ``PATH``) to add to the environment of sbatch/srun/scontrol. Stopped at the end of the
    session, after cancelling the jobs still running."""
    from tests.slurm_cluster import BINARIES, search_path, slurm_cluster

    missing = [b for b in BINARIES if shutil.which(b, path=search_path()) is None]
    if missing:
        unavailable(f"Slurm not installed ({', '.join(missing)} missing: apt-get install slurm-wlm munge)")
    if os.geteuid() != 0:
        unavailable("the local Slurm cluster runs as root (slurmd launches the jobs)")
    with slurm_cluster(tmp_path_factory.mktemp("slurm")) as env:
        yield env
