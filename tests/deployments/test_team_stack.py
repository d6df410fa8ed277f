"""The team stack, for real on 127.0.0.1 (infra/local-stack.sh up): PostgreSQL as the Prefect server's database,
API auth on, the lmpipe-cpu/lmpipe-gpu work pools, a process worker polling each, moto as S3.

Against it: `prefect deploy --prefect-file deployments/prefect.yaml --all`; a bad form value is refused by the API;
the end-to-end deployment, triggered through the API with a small config, runs on the CPU worker to Completed and its
report artifact is readable, and the train deployment runs on the GPU pool's worker; PostgreSQL
holds that flow run (the server really used it); calls without the auth string get 401; every service listens on
127.0.0.1 only (and so does the temporary server lmpipe starts itself); `lmpipe run` and `lmpipe serve`
work with the auth string; a failing refresh deployment makes the
automation of `lmpipe alerts` call a webhook receiver on 127.0.0.1 exactly once.

pytest -m slow tests/deployments/test_team_stack.py
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.client.schemas.objects import ConcurrencyLimitStrategy
from prefect.deployments import run_deployment
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

from tests.conftest import _free_port, unavailable
from tests.deployments.prefect_server import DEPLOYMENTS, ROOT, executable, lmpipe_serve, poll, wait_for_final

pytestmark = pytest.mark.slow

PREFECT_YAML = ROOT / "deployments" / "prefect.yaml"
STACK_SCRIPT = ROOT / "infra" / "local-stack.sh"
TINY = {"sample": {"pages": 60, "files": 1}, "tokenize": {"vocab_size": 512}}


@dataclass
class Stack:
    dir: Path
    ports: dict[str, int]
    env: dict[str, str]  # a client's environment: PREFECT_API_URL, PREFECT_API_AUTH_STRING, AWS_ENDPOINT_URL
    auth: str
    pg_password: str

    @property
    def api_url(self) -> str:
        return self.env["PREFECT_API_URL"]

    def psql(self, sql: str) -> str:
        env = {**os.environ, "PGPASSWORD": self.pg_password}
        args = ["psql", "-h", "127.0.0.1", "-p", str(self.ports["pg"]), "-U", "postgres", "-d", "prefect", "-tAc", sql]
        return subprocess.run(args, env=env, capture_output=True, text=True, check=True, timeout=30).stdout.strip()

    def prefect(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([executable("prefect"), *args], env=self.env, cwd=ROOT, capture_output=True,
                              text=True, timeout=timeout)  # fmt: skip
        assert proc.returncode == 0, f"prefect {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
        return proc


def _script(stack_dir: Path, ports: dict[str, int], command: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LMPIPE_STACK_DIR": str(stack_dir),
        # both workers, no Ray (the session's Ray cluster is conftest's)
        "LMPIPE_STACK_SERVICES": "postgres prefect pools worker gpu-worker s3",
        "LMPIPE_PG_PORT": str(ports["pg"]),
        "LMPIPE_PREFECT_PORT": str(ports["prefect"]),
        "LMPIPE_S3_PORT": str(ports["s3"]),
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }
    for key in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "PREFECT_HOME"):
        env.pop(key, None)
    return subprocess.run(["bash", str(STACK_SCRIPT), command], env=env, capture_output=True, text=True, timeout=400)


def _read_env(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        out[key] = os.path.expandvars(value)
    return out


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")) or shutil.which("psql") is None:
        unavailable("PostgreSQL is needed (apt-get install postgresql; .ci/run installs it)")
    # PostgreSQL runs as the postgres user: its data directory must not sit under pytest's 0700 temp directories
    stack_dir = Path(tempfile.mkdtemp(prefix="lmpipe-stack-"))
    stack_dir.chmod(0o755)
    ports = {"pg": _free_port(), "prefect": _free_port(), "s3": _free_port()}
    try:
        up = _script(stack_dir, ports, "up")
        assert up.returncode == 0, f"local-stack.sh up failed:\n{up.stdout}\n{up.stderr}"
        secrets = _read_env(stack_dir / "secrets.env")
        client = _read_env(stack_dir / "client.env")
        env = {**os.environ, **client, "PREFECT_HOME": str(stack_dir / "client-home")}
        yield Stack(stack_dir, ports, env, secrets["PREFECT_AUTH"], secrets["PG_PASSWORD"])
    finally:
        down = _script(stack_dir, ports, "down")
        shutil.rmtree(stack_dir, ignore_errors=True)
        assert down.returncode == 0, down.stderr


@contextmanager
def client_of(stack: Stack) -> Iterator[None]:
    """This process's Prefect client on the stack, with its auth string."""
    with temporary_settings(updates={PREFECT_API_URL: stack.api_url, PREFECT_API_AUTH_STRING: stack.auth}):
        yield


def _status(url: str, auth: str | None) -> int:
    request = urllib.request.Request(url, data=b"{}", headers={"Content-Type": "application/json"}, method="POST")
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_without_the_auth_string_calls_get_401(stack: Stack) -> None:
    url = f"{stack.api_url}/flow_runs/filter"
    assert _status(url, None) == 401
    assert _status(url, "lmpipe:wrong") == 401
    assert _status(url, stack.auth) == 200
    no_auth = {k: v for k, v in stack.env.items() if k != "PREFECT_API_AUTH_STRING"}
    proc = subprocess.run([executable("prefect"), "work-pool", "ls"], env=no_auth, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode != 0 and "401" in proc.stdout + proc.stderr
    assert "lmpipe-cpu" in stack.prefect("work-pool", "inspect", "lmpipe-cpu").stdout


def _listeners() -> list[tuple[str, int]]:
    """(address, port) of every listening TCP socket (IPv4 and IPv6) of this machine."""
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A":  # LISTEN
                address, port = local.split(":")
                out.append((address, int(port, 16)))
    return out


def test_every_service_listens_on_127_0_0_1_only(stack: Stack) -> None:
    loopback = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1, ::1 (as /proc/net prints them)
    for name, port in stack.ports.items():
        bound = [address for address, p in _listeners() if p == port]
        assert bound, f"{name}: nothing listens on {port}"
        assert set(bound) <= loopback, f"{name} on port {port} listens on {bound}, not only on loopback"


def test_prefect_yaml_deploys_and_the_worker_runs_end_to_end_on_postgres(stack: Stack, tmp_path: Path) -> None:
    spec = yaml.safe_load(PREFECT_YAML.read_text())
    stack.prefect("--no-prompt", "deploy", "--prefect-file", str(PREFECT_YAML.relative_to(ROOT)), "--all")
    with client_of(stack), get_client(sync_client=True) as client:
        deployments = {d.name: d for d in client.read_deployments()}
        flows = {d.name: client.read_flow(d.flow_id).name for d in deployments.values()}
        assert flows == DEPLOYMENTS
        pools = {name: (d.work_pool_name, d.work_queue_name) for name, d in deployments.items()}
        assert pools == {
            "end-to-end": ("lmpipe-cpu", "default"),
            "monthly-refresh": ("lmpipe-cpu", "default"),
            "train": ("lmpipe-gpu", "training"),
        }
        refresh = deployments["monthly-refresh"]
        assert [(s.schedule.cron, s.schedule.timezone) for s in refresh.schedules] == [("0 3 1 * *", "UTC")]
        assert refresh.global_concurrency_limit is not None and refresh.global_concurrency_limit.limit == 1
        assert refresh.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.CANCEL_NEW
        assert refresh.parameters == {"config": {"crawl": {"crawl_id": "latest"}}}
        assert all(d.pull_steps == spec["pull"] for d in deployments.values())

        # a bad form value (runner, launcher, a crawl id that leaves the data root, a number out of range) is refused
        # by the API before a run exists: enforce_parameter_schema
        bad_values = [{"train": {"launcher": "mpirun"}}, {"runner": {"kind": "spark"}},
                      {"extract": {"crawl_id": "../../x"}}, {"tokenize": {"vocab_size": 100}}]  # fmt: skip
        for bad in bad_values:
            with pytest.raises(PrefectHTTPStatusError, match="409") as refused:
                run_deployment("end-to-end/end-to-end", parameters={"config": bad}, timeout=0)
            assert "Validation failed" in refused.value.response.text, refused.value.response.text

        # The worker runs in the stack's directory, outside the checkout: the pull step (cd $LMPIPE_HOME) finds flows/
        config = {**TINY, "data_root": str(tmp_path / "data"),
                  "train": {"max_steps": 4, "val_every": 2, "warmup_steps": 1}}  # fmt: skip
        run = run_deployment("end-to-end/end-to-end", parameters={"config": config}, timeout=0)
        run = wait_for_final(run.id, timeout=600)
        worker_log = (stack.dir / "logs" / "worker-cpu.log").read_text()[-3000:]
        assert run.state_name == "Completed", f"{run.state_name}: {run.state.message}\n{worker_log}"
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(
            any_=[run.id])))  # fmt: skip
        report = [a for a in artifacts if a.key == "report"]
        assert report and "# lmpipe report" in str(report[0].data) and "final val loss" in str(report[0].data)
    assert (tmp_path / "data" / "report.md").exists()

    # the train deployment goes to lmpipe-gpu's own worker: it trains again on the tokens the run above wrote
    (tokens,) = {p.parent for p in (tmp_path / "data").glob("*/*/meta.json")}  # the tokenize output
    with client_of(stack):
        params = {"data_dir": str(tokens), "run_dir": str(tmp_path / "retrain"),
                  "cfg": {"max_steps": 2, "val_every": 1, "warmup_steps": 1, "val_batches": 1}}  # fmt: skip
        train = wait_for_final(run_deployment("train/train", parameters=params, timeout=0).id, timeout=300)
    gpu_log, cpu_log = ((stack.dir / "logs" / f"worker-{kind}.log").read_text() for kind in ("gpu", "cpu"))
    assert train.state_name == "Completed", f"{train.state_name}: {train.state.message}\n{gpu_log[-3000:]}"
    # picked up by the lmpipe-gpu worker, not the CPU one (the whole log: the training's output follows the name)
    assert f"'{train.name}'" in gpu_log and f"'{train.name}'" not in cpu_log, gpu_log[-3000:]
    assert train.work_queue_name == "training"
    assert json.loads((tmp_path / "retrain" / "summary.json").read_text())["steps"] == 2
    # the server really used PostgreSQL: the run and its final state are rows there
    assert stack.psql(f"SELECT state_type FROM flow_run WHERE id = '{run.id}'") == "COMPLETED"
    assert int(stack.psql("SELECT count(*) FROM task_run WHERE flow_run_id IS NOT NULL")) > 5


def test_lmpipe_run_and_serve_work_with_the_auth_string(stack: Stack, tmp_path: Path) -> None:
    tiny = ["--set", "sample.pages=60", "--set", "sample.files=1", "--set", "tokenize.vocab_size=512",
            "--set", "train.max_steps=2", "--set", "train.val_every=1", "--set", "train.warmup_steps=1"]  # fmt: skip
    args = [executable("lmpipe"), "run", "--data-root", str(tmp_path / "data"), *tiny]
    proc = subprocess.run(args, env=stack.env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Starting temporary server" not in proc.stdout + proc.stderr  # it used the stack's server, not its own
    assert (tmp_path / "data" / "report.md").exists()

    completed = stack.psql("SELECT count(*) FROM flow_run f JOIN flow ON f.flow_id = flow.id "
                           "WHERE flow.name = 'end-to-end' AND f.state_type = 'COMPLETED'")  # fmt: skip
    assert int(completed) >= 2  # the deployment's run (test above) and this one

    class Server:  # what lmpipe_serve and deployment_ids need of a server: its env and API URL (with auth)
        env = {**stack.env, "LMPIPE_HOME": str(ROOT)}
        api_url = stack.api_url

    with client_of(stack), lmpipe_serve(Server(), tmp_path) as served:  # type: ignore[arg-type]
        assert served.ids.keys() == DEPLOYMENTS.keys()


def test_the_ephemeral_server_lmpipe_starts_listens_on_127_0_0_1_only(tmp_path: Path, shared_data: Path) -> None:
    """Without PREFECT_API_URL lmpipe starts Prefect's temporary server itself: on loopback only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    env["PREFECT_HOME"] = str(tmp_path / "home")
    warc = shared_data / "warc" / "cc-whirlwind" / "whirlwind.warc.gz"
    args = [executable("lmpipe"), "refresh", "--input", str(warc), "--data-root", str(tmp_path / "data")]
    proc = subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if found := re.search(r"Starting temporary server on http://([\d.]+):(\d+)", line):
                break
        else:
            raise AssertionError("no temporary server started")
        assert found.group(1) == "127.0.0.1"
        port = int(found.group(2))
        bound = poll(lambda: [a for a, p in _listeners() if p == port], 120, f"the temporary server on {port}")
        assert set(bound) == {"0100007F"}, f"the temporary server listens on {bound}"
    finally:  # the whole group: lmpipe and the temporary server it started
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Receiver.received.append(json.loads(body or b"{}"))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_failed_refresh_deployment_calls_the_webhook_once(stack: Stack, tmp_path: Path) -> None:
    receiver = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{receiver.server_port}/hook"
        proc = subprocess.run([executable("lmpipe"), "alerts", "--webhook-url", url], env=stack.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert proc.returncode == 0 and "monthly-refresh failed or crashed" in proc.stdout, proc.stderr
        stack.prefect("--no-prompt", "deploy", "--prefect-file", str(PREFECT_YAML.relative_to(ROOT)), "--name",
                      "monthly-refresh")  # fmt: skip
        with client_of(stack):
            bad = {"inputs": [str(tmp_path / "missing" / "*.warc.gz")], "data_root": str(tmp_path / "data")}
            run = run_deployment("data-refresh/monthly-refresh", parameters={"config": bad}, timeout=0)
            run = wait_for_final(run.id, timeout=300)
        assert run.state_name == "Failed"
        poll(lambda: _Receiver.received, 120, "the alert webhook called")
        time.sleep(10)  # a second notification for the same failure would arrive by now
        assert len(_Receiver.received) == 1
        note = _Receiver.received[0]
        assert run.name in note["subject"] and "Failed" in note["subject"] and "no WARC file matches" in note["text"]
    finally:
        receiver.shutdown()
