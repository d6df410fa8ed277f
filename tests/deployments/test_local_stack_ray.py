"""infra/local-stack.sh's Ray head, for real: `up` starts it on 127.0.0.1 and a task runs on it; `down` stops this
stack's Ray only — the test session's own Ray cluster (conftest ``ray_cluster``), running beside it, stays up.

    pytest -m slow tests/deployments/test_local_stack_ray.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import _free_port
from tests.deployments.prefect_server import ROOT

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
TASK = (
    "import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); "
    "print(ray.get(ray.remote(lambda: 6 * 7).remote()))"
)


def ray_task(address: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", TASK, address], capture_output=True, text=True, timeout=180)


def test_the_stack_ray_head_runs_tasks_and_down_stops_only_it(ray_cluster: dict[str, str], tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "LMPIPE_STACK_DIR": str(tmp_path / "stack"),
        "LMPIPE_STACK_SERVICES": "ray",
        "LMPIPE_RAY_PORT": str(port),
        "LMPIPE_RAY_DASHBOARD_PORT": str(_free_port()),
        "LMPIPE_RAY_CLIENT_PORT": str(_free_port()),
        "LMPIPE_RAY_AGENT_PORT": str(_free_port()),
    }
    script = str(ROOT / "infra" / "local-stack.sh")
    try:
        up = subprocess.run([script, "up"], env=env, capture_output=True, text=True, timeout=240)
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        assert f"export RAY_ADDRESS=127.0.0.1:{port}" in (tmp_path / "stack" / "client.env").read_text()
        done = ray_task(f"127.0.0.1:{port}")
        assert done.stdout.strip() == "42", done.stderr[-2000:]
    finally:
        down = subprocess.run([script, "down"], env=env, capture_output=True, text=True, timeout=240)
    assert down.returncode == 0 and "ray stopped" in down.stdout + down.stderr
    status = subprocess.run([str(BIN / "ray"), "status", "--address", f"127.0.0.1:{port}"], capture_output=True)
    assert status.returncode != 0  # the stack's head is gone …
    assert ray_task(ray_cluster["address"]).stdout.strip() == "42"  # … and the session's cluster still works
