"""One run per data root at a time.

Two refreshes writing the same ``{data_root}`` at once would race on the same shards, manifests, dedup index and
token shards. The refresh and end-to-end flows hold ``{data_root}/.lmpipe-run.lock`` (an OS file lock: a run killed
with -9 releases it with its process) for their whole run. A second run on the same root waits up to
``lock_wait_seconds`` (PipelineConfig; default 0: it refuses at once), then stops with ``DataRootBusy`` naming the run
that holds the root (pid, host, flow run, since when), before it has written anything. Runs on different data roots
never wait for each other; ``lmpipe task`` (one stage on one shard, for debugging) takes no lock.

A data root the run created but wrote nothing into (a run refused before any work) is removed again.

Object storage has no file locks: on an ``s3://`` root the lock is not taken (a warning says so); one refresh per
root is then the deployment's concurrency limit to keep (deployments/prefect.yaml).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from pipelines.errors import LmpipeError

log = logging.getLogger(__name__)

LOCK_NAME = ".lmpipe-run.lock"
HOLDER_NAME = ".lmpipe-run.json"  # who holds the lock (read by the run that is refused)


class DataRootBusy(LmpipeError, RuntimeError):
    """Another lmpipe run holds this data root."""


def _holder(root: Path) -> str:
    try:
        h = json.loads((root / HOLDER_NAME).read_text())
    except (OSError, ValueError):
        return "another lmpipe run"
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(h.get("since", 0)))
    return f"{h.get('run', 'an lmpipe run')} (pid {h.get('pid')} on {h.get('host')}, since {since})"


@contextmanager
def data_root_lock(data_root: str, wait_seconds: float = 0.0, run: str = "an lmpipe run") -> Iterator[None]:
    """Hold the data root for this run (re-entrant in one process: the end-to-end flow holds it around the refresh
    flow it calls). Raises DataRootBusy after ``wait_seconds`` when another process holds it."""
    if "://" in data_root and not data_root.startswith("file://"):
        log.warning("data root %s is on object storage: no run lock (keep one run per root)", data_root)
        yield
        return
    root = Path(data_root.removeprefix("file://"))
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(root / LOCK_NAME, is_singleton=True, thread_local=False)
    outermost = not lock.is_locked
    try:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if not wait_seconds:
                raise
            log.info("data root %s is in use by %s: waiting up to %g s", root, _holder(root), wait_seconds)
            lock.acquire(timeout=wait_seconds, poll_interval=0.5)
    except Timeout:
        waited = f" after waiting {wait_seconds:g} s" if wait_seconds else ""
        raise DataRootBusy(
            f"data root {root} is in use by {_holder(root)}{waited}: nothing was written. Wait for it to finish, "
            "use another --data-root, or set lock_wait_seconds to queue behind it"
        ) from None
    try:
        if outermost:
            holder = {"run": run, "pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
            (root / HOLDER_NAME).write_text(json.dumps(holder))
        yield
    finally:
        lock.release()
        if created and outermost:
            _remove_if_unused(root)


def _remove_if_unused(root: Path) -> None:
    """A data root this run created and wrote nothing into (it was refused before any work) is removed again."""
    if {p.name for p in root.iterdir()} <= {LOCK_NAME, HOLDER_NAME}:
        for name in (HOLDER_NAME, LOCK_NAME):
            (root / name).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            root.rmdir()
