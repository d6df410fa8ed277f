"""Two runs on one data root (pipelines/runlock.py): the second refuses at once naming the run that holds the root, or
with ``lock_wait_seconds`` queues behind it; neither corrupts the other; a holder killed with -9 frees the root.

The holders are real processes: a Python process holding the lock, and real ``lmpipe refresh`` runs (Prefect's
ephemeral API, a real WARC of ../shared/data/warc).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.runlock import HOLDER_NAME, DataRootBusy, data_root_lock

REPO = Path(__file__).resolve().parents[2]
LMPIPE = str(Path(sys.executable).parent / "lmpipe")
HOLD = "import sys, time\nfrom pipelines.runlock import data_root_lock\nwith data_root_lock(sys.argv[1], run='the holder'):\n    print('held', flush=True)\n    time.sleep(600)\n"  # noqa: E501


def _holder(root: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_is_refused_naming_the_holder_and_a_killed_holder_frees_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    holder = _holder(root)
    try:
        t0 = time.monotonic()
        with (
            pytest.raises(DataRootBusy, match=f"is in use by the holder \\(pid {holder.pid} on "),
            data_root_lock(str(root)),
        ):
            pass
        assert time.monotonic() - t0 < 5  # refused at once, not after a wait
        with pytest.raises(DataRootBusy, match="after waiting 1 s"), data_root_lock(str(root), wait_seconds=1):
            pass
        with data_root_lock(str(tmp_path / "other")):  # another data root is not held
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        with data_root_lock(str(root), run="the next run"), data_root_lock(str(root)):  # free, and re-entrant
            assert json.loads((root / HOLDER_NAME).read_text())["pid"] == os.getpid()
    finally:
        holder.kill()


def test_a_waiting_run_takes_the_root_when_the_holder_finishes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    holder = _holder(root)
    try:
        subprocess.Popen(["sh", "-c", f"sleep 2; kill {holder.pid}"])
        t0 = time.monotonic()
        with data_root_lock(str(root), wait_seconds=120):
            waited = time.monotonic() - t0
            assert waited > 1.5 and waited < 60 and holder.poll() is not None  # it waited for the holder's end
    finally:
        holder.kill()


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.parquet")) + sorted(root.rglob("*.bin"))
        if ".tmp-" not in p.name
    }


@pytest.mark.slow
def test_two_refreshes_on_one_root_one_refused_one_queued(tmp_path: Path, shared_data: Path) -> None:
    """A real refresh holds the root; a second one is refused at once naming it, a third waits for it and finds
    every shard done (cache hits): the first run's outputs are untouched by both."""
    root, warc = tmp_path / "root", shared_data / "warc" / "dolma" / "sample-0001.warc.gz"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)

    def refresh(*extra: str) -> subprocess.Popen:
        args = [LMPIPE, "refresh", "--input", str(warc), "--data-root", str(root), "--set", "tokenize.vocab_size=512"]
        return subprocess.Popen([*args, *extra], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)  # fmt: skip

    first = refresh()
    deadline = time.monotonic() + 300
    while not (root / HOLDER_NAME).exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert json.loads((root / HOLDER_NAME).read_text())["pid"] == first.pid
    refused, queued = refresh(), refresh("--set", "lock_wait_seconds=600")
    out_refused = refused.communicate(timeout=300)[0]
    out_first = first.communicate(timeout=600)[0]
    after_first = _digests(root)
    out_queued = queued.communicate(timeout=600)[0]
    assert first.returncode == 0, out_first[-3000:]
    assert refused.returncode != 0 and f"pid {first.pid} on" in " ".join(out_refused.split()), out_refused[-3000:]
    assert "nothing was written" in " ".join(out_refused.split())
    assert queued.returncode == 0, out_queued[-3000:]
    assert "Cached" in out_queued and "Finished in state Completed()" not in out_queued.split("accounting")[0]
    assert after_first and _digests(root) == after_first
