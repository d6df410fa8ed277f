"""Prefect's cost per task run, on a Prefect server backed by SQLite and by PostgreSQL, in one run.

    nice -n 19 .venv/bin/python -m bench.prefect_overhead [--tasks 2000] [--write bench/RESULTS.md]

Why: a crawl of 90,000 WARC files is 90,000 shards per stage; whether a task run handles one shard or a batch of
them (issue 15's ``shards_per_task``) depends on what one task run costs the flow and the server. Each backend gets
its own Prefect server process on 127.0.0.1, started the way users start one (``prefect server start``; PostgreSQL
through ``infra/local-stack.sh up`` with ``LMPIPE_STACK_SERVICES="postgres prefect"``, auth on), and a fresh client
process runs one flow of ``--tasks`` task runs that do no work, three ways:

- ``sequential``: the tasks called one after the other in the flow (each call is a task run: create, Running,
  Completed, its events and logs);
- ``map``: ``task.map`` over the default ThreadPoolTaskRunner (how the stages fan out shards);
- ``map+cache``: the same with what lmpipe's stage tasks carry: a cache key from the inputs and a persisted result
  (``persist_result=True``, INPUTS cache policy; results on local disk).

Figures: wall time of the flow (from the client's start of the flow call to its return), ms per task run
(wall / tasks); then how long the server still needed to hold every task run (Prefect 3 records task runs from the
client's events, asynchronously; the count of task_run rows is polled) and the ms per task run with that included;
CPU seconds of the client process, and the rows the server holds at the end. The flow calls nothing else; the
function body is ``return i``. Benchmarks are not tests: nothing asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from bench.markdown import publish

REPO = Path(__file__).resolve().parents[1]
MODES = ("sequential", "map", "map+cache")
BEGIN, END = "<!-- prefect_overhead:start -->", "<!-- prefect_overhead:end -->"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, auth: str | None, seconds: float = 180) -> None:
    request = urllib.request.Request(f"{url}/ready")
    if auth:
        import base64

        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


@contextmanager
def sqlite_server(work: Path):
    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(work / "home"),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{work / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    log = open(work / "server.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        _wait_ready(url, None)
        yield {"PREFECT_API_URL": url}, lambda: _sqlite_rows(work)
    finally:
        server.terminate()
        server.wait(60)
        log.close()


@contextmanager
def postgres_server(work: Path):
    stack = work / "stack"
    stack.mkdir()
    os.chmod(work, 0o755)  # the postgres user must reach its data directory
    env = {
        **os.environ,
        "LMPIPE_STACK_DIR": str(stack),
        "LMPIPE_STACK_SERVICES": "postgres prefect",
        "LMPIPE_PG_PORT": str(_free_port()),
        "LMPIPE_PREFECT_PORT": str(_free_port()),
        "LMPIPE_PYTHON": sys.executable,
    }
    script, pg_port = str(REPO / "infra" / "local-stack.sh"), env["LMPIPE_PG_PORT"]
    subprocess.run([script, "up"], env=env, check=True, capture_output=True)
    try:
        client = {}
        for line in (stack / "client.env").read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            client[key] = value
        yield client, lambda: _psql_rows(stack, pg_port)
    finally:
        subprocess.run([script, "down"], env=env, check=False, capture_output=True)


def _psql_rows(stack: Path, port: str) -> dict[str, int]:
    secrets = dict(line.split("=", 1) for line in (stack / "secrets.env").read_text().split())
    out = {}
    for table in ("flow_run", "task_run", "log"):
        result = subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                port,
                "-U",
                "postgres",
                "-d",
                "prefect",
                "-tAc",
                f"SELECT count(*) FROM {table}",
            ],  # fmt: skip
            env={**os.environ, "PGPASSWORD": secrets["PG_PASSWORD"]},
            capture_output=True,
            text=True,
        )
        out[table] = int(result.stdout.strip() or 0) if result.returncode == 0 else -1
    return out


def _sqlite_rows(work: Path) -> dict[str, int]:
    import sqlite3

    with sqlite3.connect(work / "prefect.db") as db:
        return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("flow_run", "task_run", "log")}


def _drain(count_rows, expected: int, limit: float = 600) -> float:
    """Seconds after the flow returned until the server holds all its task runs (Prefect 3 records task runs from
    the client's events, asynchronously): the part of the server's cost the client's wall time does not show."""
    started = time.perf_counter()
    while count_rows()["task_run"] < expected and time.perf_counter() - started < limit:
        time.sleep(0.5)
    return time.perf_counter() - started


def child(tasks: int, mode: str) -> None:
    """Runs in a fresh interpreter with PREFECT_API_URL set: one flow of ``tasks`` task runs."""
    from prefect import flow, task
    from prefect.cache_policies import INPUTS, NO_CACHE

    plain = task(cache_policy=NO_CACHE, persist_result=False)(lambda i: i)
    plain.name = "noop"
    cached = task(cache_policy=INPUTS, persist_result=True, result_storage_key=None)(lambda i: i)
    cached.name = "noop-cached"

    @flow(name=f"overhead-{mode}", log_prints=False)
    def many(n: int) -> int:
        if mode == "sequential":
            return sum(plain(i) for i in range(n))
        fn = cached if mode == "map+cache" else plain
        return sum(fn.map(range(n)).result())

    many(2)  # warm: imports, client, flow registration
    cpu0 = time.process_time()
    started = time.perf_counter()
    assert many(tasks) == tasks * (tasks - 1) // 2
    wall = time.perf_counter() - started
    print(json.dumps({"wall_s": wall, "cpu_s": time.process_time() - cpu0,
                      "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))  # fmt: skip


def run_child(env: dict, tasks: int, mode: str, work: Path) -> dict:
    results = work / f"results-{mode.replace('+', '-')}"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.prefect_overhead",
            "--child",
            mode,
            "--tasks",
            str(tasks),
        ],
        env={
            **os.environ,
            "PREFECT_HOME": str(work / "client-home"),
            "PREFECT_LOCAL_STORAGE_PATH": str(results),
            **env,
        },
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        raise SystemExit(f"{mode}: client failed\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"])
    parser.add_argument("--write", type=Path)
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.tasks, args.child)
        return
    rows = []
    for backend in args.backends:
        work = Path(tempfile.mkdtemp(prefix=f"lmpipe-overhead-{backend}-"))
        try:
            server = sqlite_server if backend == "sqlite" else postgres_server
            with server(work) as (env, count_rows):
                expected = 0
                for mode in MODES:
                    r = run_child(env, args.tasks, mode, work)
                    expected += args.tasks + 2  # and the warm-up flow's two
                    r["drain_s"] = _drain(count_rows, expected)
                    rows.append((backend, mode, r))
                    print(backend, mode, r, flush=True)
                rows.append((backend, "rows", count_rows()))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    cpu = platform.processor() or platform.machine()
    cmd = f"nice -n 19 .venv/bin/python -m bench.prefect_overhead --tasks {args.tasks}"
    lines = [
        BEGIN,
        f"# Prefect: cost per task run, SQLite vs PostgreSQL ({args.tasks:,} task runs in one flow)",
        "",
        f"`{cmd}{' --write ' + str(args.write) if args.write else ''}`, {date.today()}, {cpu}, "
        f"{os.cpu_count()} CPUs, Prefect server on 127.0.0.1 (PostgreSQL: infra/local-stack.sh, "
        "auth on). Task bodies do nothing; the figures are Prefect's own cost.",
        "",
        "| backend | mode | flow wall s | ms per task run | server caught up after s | ms per task run, caught up "
        "| client CPU s | client peak RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for backend, mode, r in rows:
        if mode == "rows":
            continue
        lines.append(
            f"| {backend} | {mode} | {r['wall_s']:.1f} | {1000 * r['wall_s'] / args.tasks:.1f} | {r['drain_s']:.1f} | "
            f"{1000 * (r['wall_s'] + r['drain_s']) / args.tasks:.1f} | {r['cpu_s']:.1f} | "
            f"{r['max_rss_mb']:.0f} |"
        )
    lines.append("")
    for backend, mode, r in rows:
        if mode == "rows":
            lines.append(f"- rows the {backend} server holds afterwards: {r}")
    lines += ["", END]
    publish("\n".join(lines), args.write, BEGIN, END)


if __name__ == "__main__":
    main()
