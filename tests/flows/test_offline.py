"""Offline: in a network namespace with only loopback up (``unshare -n``), ``lmpipe run`` on the sample and every
stage of ``lmpipe stages`` through ``lmpipe task`` (its Prefect task, ephemeral API) complete, and no process tries
to reach anything beyond loopback: no model, list or telemetry download, no DNS lookup.

    pytest -m slow tests/flows/test_offline.py
    unshare -n python -m tests.flows.test_offline OUT_DIR WARC    # the driver alone (it brings loopback up)

One ``unshare -n`` runs this module as a driver: the real ``lmpipe run`` command (short training, a smaller sample),
then every stage's ``lmpipe task`` on real data (a real WARC of ../shared/data and a sample WARC) in one interpreter,
as tests/digest_driver.py does, so one ephemeral Prefect server serves them all (a server start per command costs
30-50 s on a busy 2-core machine). The environment is the user's, not a test's: no offline switch or telemetry
opt-out is set, those a developer may have are removed; only PREFECT_HOME (isolation) and the observer below are
added.

Two observers record attempts to go out. An audit hook (``sys.addaudithook``, installed in every Python process as
a ``sitecustomize`` on PYTHONPATH) writes each ``socket.connect`` / ``sendto`` to a non-loopback address, each
connection to port 53 and each name lookup of a host that is not this machine, with the stack that made it, so a
failure names the library and its call site. Where strace is installed, ``strace -f -e trace=connect`` also sees
connections made outside Python (C libraries, subprocesses of other languages).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
REAL_WARC = "warc/dolma/sample-0001.warc.gz"  # 15 real pages (wget, 2024) with real hosts and links
RUN_ARGS = ["--set", "train.max_steps=4", "--set", "train.val_every=2", "--set", "train.warmup_steps=1"]
# A smaller sample than the default 520 pages: the same code paths, half the time on a 2-core CI machine.
RUN_ARGS += ["--set", "sample.pages=240", "--set", "sample.files=2"]
TRAIN_ARGS = ["--max-steps", "4", "--set", "val_every=2", "--set", "warmup_steps=1", "--set", "val_batches=2"]
# Switches that make libraries stay offline or silent: a user does not have them, so neither does the test. And
# PREFECT_API_URL: a developer's server; the test gets the ephemeral API, as a user without a server does.
OFFLINE_SWITCHES = (
    "PREFECT_SERVER_ANALYTICS_ENABLED",
    "PREFECT_API_URL",
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_HUB_DISABLE_TELEMETRY",
    "DO_NOT_TRACK",
    "RAY_USAGE_STATS_ENABLED",
    "TLDEXTRACT_CACHE",
)
# What a library prints when it tried the network and gave up (or waited for it).
NETWORK_ERRORS = re.compile(
    r"Network is unreachable|Temporary failure in name resolution|Name or service not known|getaddrinfo failed"
    r"|Failed to resolve|NewConnectionError|ConnectError|ConnectTimeout|Max retries exceeded|urlopen error",
    re.IGNORECASE,
)

AUDIT_HOOK = '''
"""sitecustomize written by tests/flows/test_offline.py: socket use beyond loopback → $LMPIPE_NETWORK_AUDIT."""
import os

if os.environ.get("LMPIPE_NETWORK_AUDIT"):
    import ipaddress
    import json
    import socket
    import sys
    import traceback

    _LOG = os.environ["LMPIPE_NETWORK_AUDIT"]
    _HERE = {"", "localhost", "ip6-localhost", "ip6-loopback", socket.gethostname().lower()}

    def _local(host):
        if host is None:
            return True
        host = (host.decode(errors="replace") if isinstance(host, bytes) else str(host)).split("%")[0].lower()
        if host in _HERE:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False  # a name to look up
        return address.is_loopback or address.is_unspecified

    def _audit(event, args):
        if event == "socket.getaddrinfo":
            host, port = args[0], args[1]
        elif event in ("socket.gethostbyname", "socket.gethostbyaddr"):
            host, port = args[0], None
        elif event in ("socket.connect", "socket.sendto"):
            sock, address = args[0], args[1]
            if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
                return  # AF_UNIX, netlink
            host, port = address[0], address[1]
        else:
            return
        if _local(host) and port not in (53, "53", b"53", "domain"):
            return
        record = {"event": event, "host": repr(host), "port": repr(port), "pid": os.getpid(), "argv": sys.argv[:4]}
        record["stack"] = traceback.format_stack(limit=30)[:-1]
        with open(_LOG, "a") as f:
            f.write(json.dumps(record) + "\\n")

    sys.addaudithook(_audit)
'''


# ---------------------------------------------------------------------------------------------------------------
# The driver (runs inside the namespace)


def _task_commands(out: Path, warcs: dict[str, Path]) -> list[list[str]]:
    """Every registered stage as ``lmpipe task`` arguments, chained by files: extract → filter → dedup (and its four
    phases one by one) → pii → tokenize (and its three phases) → train."""
    from pipelines import config as C
    from pipelines import registry
    from pipelines.shards import shard_id

    def files(stage: str) -> list[str]:
        return [str(out / stage / f"{name}.parquet") for name in warcs]

    def inputs(paths: list[str]) -> list[str]:
        return [arg for p in paths for arg in ("--input", p)]

    tokenize = ["--vocab-size", "1024", "--set", "val_fraction=0.1"]
    cmds = [
        ["extract", "--input", str(w), "--output", o] for w, o in zip(warcs.values(), files("extract"), strict=True)
    ]
    cmds += [["filter", "--input", i, "--output", o] for i, o in zip(files("extract"), files("filter"), strict=True)]
    cmds.append(["dedup", *inputs(files("filter")), "--output", str(out / "dedup")])
    deduped = [str(out / "dedup" / f"{shard_id(p)}.parquet") for p in files("filter")]
    cmds += [["pii", "--input", i, "--output", o] for i, o in zip(deduped, files("pii"), strict=True)]
    cmds.append(["tokenize", *inputs(files("pii")), "--output", str(out / "tokens"), *tokenize])
    # Each phase of a composite on its own, its tasks as the refresh flow plans them (pipelines.registry).
    for composite, sources, extra in (("dedup", files("filter"), []), ("tokenize", files("pii"), tokenize)):
        spec = registry.get(composite)
        cfg = C.load_config(spec.config, None, ["vocab_size=1024", "val_fraction=0.1"] if extra else [])
        for phase, calls in registry.plan_phases(spec, sources, str(out / f"{composite}_phases"), cfg):
            cmds += [[phase.name, *inputs(call.inputs), "--output", call.output, *extra] for call in calls]
    cmds.append(["train", "--data", str(out / "tokens"), "--output", str(out / "train"), *TRAIN_ARGS])
    return cmds


def loopback_up() -> None:
    """``ip link set lo up`` without needing iproute2: a fresh network namespace has loopback down (SIOCSIFFLAGS)."""
    import fcntl
    import socket
    import struct

    siocgifflags, siocsifflags, iff_up, ifreq = 0x8913, 0x8914, 0x1, "16sH14x"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack(ifreq, fcntl.ioctl(s, siocgifflags, struct.pack(ifreq, b"lo", 0)))[1]
        fcntl.ioctl(s, siocsifflags, struct.pack(ifreq, b"lo", flags | iff_up))


PROBE = ("192.0.2.1", 80)  # TEST-NET-1: a connection the driver makes on purpose, to show both the namespace and
# the observers work (it must fail at once, unreachable, and be recorded); it is left out of the verdict.


def _probe() -> str:
    import socket

    try:
        socket.create_connection(PROBE, timeout=5).close()
    except OSError as e:
        return type(e).__name__ + ": " + str(e)
    return "connected"


def drive(out: Path, real_warc: Path) -> dict:
    """``lmpipe run`` as a command, then every stage through ``lmpipe task`` in this interpreter; returns what
    happened (exit codes, seconds) and writes it to OUT/driver.json."""
    loopback_up()
    out.mkdir(parents=True, exist_ok=True)
    lmpipe = shutil.which("lmpipe", path=str(Path(sys.executable).parent)) or "lmpipe"
    t0 = time.monotonic()
    with open(out / "run.log", "w") as log:
        proc = subprocess.run([lmpipe, "run", "--data-root", str(out / "run"), *RUN_ARGS], stdout=log, stderr=log)
    result: dict = {"run": {"rc": proc.returncode, "seconds": round(time.monotonic() - t0, 1)}, "tasks": []}
    result["probe"] = _probe()

    from deployments.cli import main as _  # noqa: F401  (the app the lmpipe console script runs)
    from flows.cli import app

    warcs = {"real": real_warc, "sample": out / "run" / "sample-warc" / "sample-00000.warc.gz"}
    for args in _task_commands(out / "task", warcs):
        t0, error = time.monotonic(), None
        try:
            rc = app(["task", *args], standalone_mode=False) or 0
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
        except Exception:
            rc, error = 1, traceback.format_exc()
        result["tasks"].append({"args": args, "rc": rc, "seconds": round(time.monotonic() - t0, 1), "error": error})
        if rc:
            break
    (out / "driver.json").write_text(json.dumps(result, indent=2))
    return result


# ---------------------------------------------------------------------------------------------------------------
# The test


def _offline_env(home: Path, hook_dir: Path, audit_log: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_SWITCHES}
    env["PREFECT_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join([str(hook_dir), str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env["LMPIPE_NETWORK_AUDIT"] = str(audit_log)
    env["COLUMNS"] = "200"
    return env


def _require_namespace() -> None:
    from tests.conftest import unavailable

    if shutil.which("unshare") is None:
        unavailable("unshare (util-linux) is needed to run offline")
    check = "import tests.flows.test_offline as t; t.loopback_up()"
    probe = subprocess.run(["unshare", "-n", sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True)
    if probe.returncode != 0:
        unavailable(f"cannot create a network namespace (unshare -n needs root): {probe.stderr.strip()}")


def _outside_connections(strace_log: Path) -> list[str]:
    """connect() calls of strace's log to an inet address other than loopback, or to port 53 (DNS)."""
    lines = []
    for line in strace_log.read_text().splitlines():
        if "connect(" not in line or "AF_INET" not in line:
            continue
        port = re.search(r"sin6?_port=htons\((\d+)\)", line)
        loopback = re.search(r'inet_addr\("127\.|inet_pton\(AF_INET6, "::1"|"::ffff:127\.', line)
        if not loopback or (port and port.group(1) == "53"):
            lines.append(line)
    return lines


def test_run_and_every_task_complete_offline_without_reaching_out(shared_data: Path, tmp_path: Path) -> None:
    _require_namespace()
    from pipelines import registry

    out, hook_dir, audit_log = tmp_path / "out", tmp_path / "hook", tmp_path / "network-audit.jsonl"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(AUDIT_HOOK)
    env = _offline_env(tmp_path / "prefect", hook_dir, audit_log)
    driver = [sys.executable, "-m", "tests.flows.test_offline", str(out), str(shared_data / REAL_WARC)]
    strace_log = tmp_path / "strace.log"
    strace = shutil.which("strace")
    if strace:
        driver = [strace, "-f", "-qq", "--seccomp-bpf", "-e", "trace=connect", "-o", str(strace_log), *driver]
    cmd = ["unshare", "-n", *driver]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    seconds = time.monotonic() - t0
    logs = proc.stdout + proc.stderr + ((out / "run.log").read_text() if (out / "run.log").exists() else "")
    assert proc.returncode == 0, logs[-6000:]
    result = json.loads((out / "driver.json").read_text())
    print(f"offline: {seconds:.0f} s in all; lmpipe run {result['run']['seconds']} s; tasks:")
    for t in result["tasks"]:
        print(f"  {t['seconds']:6.1f} s  rc={t['rc']}  lmpipe task {' '.join(t['args'][:1])}")

    # (a) lmpipe run: exit 0, its report, a trained model.
    assert result["run"]["rc"] == 0, (out / "run.log").read_text()[-6000:]
    run_root = out / "run"
    assert (run_root / "report.md").is_file()
    summary = json.loads(next(run_root.glob("runs/*/summary.json")).read_text())
    assert summary["steps"] == 4 and next(run_root.glob("runs/*/checkpoints/last.ckpt")).is_file()

    # (b) every stage of `lmpipe stages` through its Prefect task, each with exit 0.
    failed = [t for t in result["tasks"] if t["rc"]]
    assert not failed, f"{failed}\n{logs[-6000:]}"
    ran = {t["args"][0] for t in result["tasks"]}
    assert ran == {s.name for s in registry.all_stages()}
    assert "Starting temporary server" in proc.stderr  # through Prefect's ephemeral API, not --direct
    task_root = out / "task"
    assert (task_root / "tokens" / "meta.json").is_file() and (task_root / "tokenize_phases" / "meta.json").is_file()
    assert (task_root / "train" / "checkpoints" / "last.ckpt").is_file()

    # Nothing tried to go out: no audit record, no outside connect() in strace's log, no network error logged. The
    # driver's own probe shows the namespace has no route out and that both observers see an attempt.
    assert "unreachable" in result["probe"].lower(), result["probe"]
    attempts = [json.loads(line) for line in audit_log.read_text().splitlines()]
    probe = [a for a in attempts if a["host"] == repr(PROBE[0])]
    assert probe and "_probe" in "".join(probe[0]["stack"])
    attempts = [a for a in attempts if a not in probe]
    described = [
        f"{a['event']} {a['host']}:{a['port']} pid {a['pid']} {a['argv']}\n{''.join(a['stack'])}" for a in attempts
    ]
    assert not attempts, "\n\n".join(described[:5])
    if strace:
        outside = _outside_connections(strace_log)
        assert [line for line in outside if PROBE[0] in line]  # the trace sees the probe
        outside = [line for line in outside if PROBE[0] not in line]
        assert not outside, "\n".join(outside[:20])
    assert not NETWORK_ERRORS.findall(logs), sorted(set(NETWORK_ERRORS.findall(logs)))


if __name__ == "__main__":
    sys.exit(1 if any(t["rc"] for t in drive(Path(sys.argv[1]), Path(sys.argv[2]))["tasks"]) else 0)
