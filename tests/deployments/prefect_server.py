"""A real Prefect server and lmpipe processes for tests, on 127.0.0.1, stopped (whole process group) afterwards.

    with prefect_server_at(tmp_path) as server, api(server):   # `prefect server start`; this process's client on it
        server.run("work-pool", "create", "lmpipe-cpu", "--type", "process")

Fixtures built on it are in tests/deployments/conftest.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.settings import PREFECT_API_URL, temporary_settings

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
T = TypeVar("T")
DEPLOYMENTS = {"end-to-end": "end-to-end", "monthly-refresh": "data-refresh", "train": "train"}  # name → flow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def executable(name: str) -> str:
    """The venv's console script (`prefect`, `lmpipe`), whichever interpreter runs pytest."""
    path = BIN / name
    return str(path) if path.exists() else name


class Process:
    """A subprocess in its own process group, output to a log file; stopped (the whole group) on exit."""

    def __init__(self, cmd: list[str], log: Path, env: dict[str, str], cwd: Path):
        self.cmd, self.log = cmd, log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
            )

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.cmd[:3]} exited with {self.proc.returncode}:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the group started above: the server's and runner's children
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


class PrefectServer:
    """`prefect server start` on 127.0.0.1 and a free port; ``env`` is what clients of it run with."""

    def __init__(self, home: Path):
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.url}/api"
        self.env = {
            **os.environ,
            "PREFECT_HOME": str(home / "prefect-home"),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_UI_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(self.port),
        }
        self.process: Process | None = None

    def start(self, timeout: float = 120) -> None:
        cmd = [executable("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
        self.process = Process(cmd, self.home / "server.log", self.env, self.home)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.process.check_alive()
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"prefect server not healthy after {timeout} s:\n{self.process.tail()}")

    def run(self, *args: str, cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """A `prefect` CLI command against this server; raises with its output when it fails."""
        proc = subprocess.run(
            [executable("prefect"), *args], env=self.env, cwd=cwd, capture_output=True, text=True, timeout=timeout
        )
        assert proc.returncode == 0, f"prefect {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
        return proc

    def stop(self) -> None:
        if self.process:
            self.process.stop()


@contextmanager
def prefect_server_at(home: Path) -> Iterator[PrefectServer]:
    server = PrefectServer(home)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@contextmanager
def api(server: PrefectServer) -> Iterator[None]:
    """Point this process's Prefect client (get_client, run_deployment) at ``server``."""
    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        yield


def deployment_ids(server: PrefectServer) -> dict[str, str]:
    """Deployment name → id, for lmpipe's deployments on ``server``."""
    with api(server), get_client(sync_client=True) as client:
        found = {d.name: str(d.id) for d in client.read_deployments()}
    return {name: found[name] for name in DEPLOYMENTS if name in found}


@dataclass
class Served:
    """A running `lmpipe serve`: its deployments (name → id), its working directory and its log."""

    ids: dict[str, str]
    workdir: Path
    process: Process


@contextmanager
def lmpipe_serve(server: PrefectServer, workdir: Path, timeout: float = 120) -> Iterator[Served]:
    """`lmpipe serve` against ``server`` (it runs the flow runs); yields once all of lmpipe's deployments exist."""
    env = {**server.env, "PREFECT_RUNNER_POLL_FREQUENCY": "2"}  # picks up a new run in ~2 s instead of ~10 s
    proc = Process([executable("lmpipe"), "serve"], workdir / "serve.log", env, workdir)
    try:
        deadline = time.monotonic() + timeout
        while (ids := deployment_ids(server)).keys() != DEPLOYMENTS.keys():
            proc.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"lmpipe serve registered only {sorted(ids)} in {timeout} s:\n{proc.tail()}")
            time.sleep(1)
        yield Served(ids, workdir, proc)
    finally:
        proc.stop()


def poll(condition: Callable[[], T | None], timeout: float, what: str, every: float = 1.0) -> T:
    """Call ``condition`` until it returns something truthy (returned); TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(every)
    return value


def read_run(run_id: UUID | str) -> FlowRun:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(str(run_id)))


def wait_for_final(run_id: UUID | str, timeout: float) -> FlowRun:
    """Poll the API (current settings) until flow run ``run_id`` is in a final state; returns it."""

    def final() -> FlowRun | None:
        run = read_run(run_id)
        return run if run.state is not None and run.state.is_final() else None

    return poll(final, timeout, f"flow run {run_id} final")
