"""Kill -9 harness (issue 18): every stage is SIGKILLed at seeded random points, then rerun.

    pytest tests/test_kill_harness.py

A small sample crawl (pipelines/sample.py) goes once through the chain, one stage (or dedup / tokenize phase) at a
time, undisturbed: the reference, and each stage's undisturbed duration. Then, for every stage, runs of it on a copy
of its starting state are killed with SIGKILL: after a seeded random delay within that duration (the kill lands
mid-work) or the moment a ``.tmp-`` file shows up in its directory (mid-write). After each kill: every file under a
final name is whole (each Parquet opens, each JSON parses) and one the reference also has, with the same bytes (a
stage writes each file atomically and deterministically, so no other state can be visible); no process the stage
started outlives it. Then the stage runs again from the leftovers: it completes, its outputs hash as the reference's
(tests/digest_driver.py's digests, which skip volatile files and ``.tmp-`` names) and hold the same document ids,
none duplicated or lost. A training run (tiny preset, CPU), killed twice within a step after a checkpoint (the first
before that step's validation, which the resumed run then runs), resumes from its last checkpoint each time and ends
with the loss curve of an undisturbed run; the training process never outlives the killed ``lmpipe``.

The data stages run in children forked from one warm server process (tests/test_kill_harness.py's ``serve``, started
once), so a kill costs the stage's own work, not an interpreter start and spaCy's load; two kills go to real
``lmpipe task … --direct`` processes, and the training is ``lmpipe task train --direct`` (which starts the training
subprocess).
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import json
import os
import random
import select
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.digest_driver import _is_data, _sha

REPO = Path(__file__).resolve().parents[1]
SEED = 18
PAGES, FILES = 100, 2
# Each extract page gets a limit no page reaches: a page timing out in one run and not another is not a kill's doing.
CHAIN_SETS = {"extract": ["timeout_seconds=600"], "tokenize": ["vocab_size=512", "val_fraction=0.1"]}
TIMED_KILLS, WRITE_KILLS = 2, 1  # per stage: kills after a random delay, kills at the first .tmp- file
RETRIES = 3  # tries of a delayed kill (each with half the delay) before the stage is let end first
TRAIN_SETS = {
    "preset": "tiny", "block_size": 32, "batch_size": 4, "max_steps": 10, "val_every": 2, "val_batches": 2,
    "warmup_steps": 2, "seed": 5, "sample_tokens": 4, "devices": 1,
}  # fmt: skip
TRAIN_KILLS = 2  # one after another on the same run directory, each resumed by the next run


# --- the fork server --------------------------------------------------------------------------------------------------


def _warm(scratch: Path) -> None:
    """Load what the stages load lazily (trafilatura, spaCy, fastText, presidio): once, before any fork."""
    from pipelines import registry
    from pipelines.config import SampleConfig
    from pipelines.sample import generate_sample

    warc = generate_sample(scratch / "warc", SampleConfig(pages=50, files=1, seed=1))[0]
    previous = str(warc)
    for stage in ("extract", "filter", "pii"):
        spec = registry.get(stage)
        out = str(scratch / stage / "warm.parquet")
        spec.run([previous], out, spec.config(), limit=3)
        previous = out
    from pipelines.config import DedupConfig
    from pipelines.minhash import minhash_signatures

    # numba's cached kernels and the Unicode tables (polars, held to one thread: no pool is running at a fork)
    minhash_signatures(["one two three four five six"], DedupConfig(), threads=1)
    import pipelines.tokenizer  # noqa: F401


def serve() -> None:
    """The fork server: ``python -c 'from tests.test_kill_harness import serve; serve()' SCRATCH``. Reads one job per
    stdin line (``{"stage", "inputs", "output", "set"}``), forks a child that runs it, answers ``{"pid"}`` at once and
    ``{"code", "seconds"}`` when the child has ended (code -9: killed)."""
    from pipelines import config as C
    from pipelines import registry

    _warm(Path(sys.argv[1]))
    answer = sys.stdout
    sys.stdout = sys.stderr  # the stages' output never mixes with the answers
    print(json.dumps({"ready": True}), file=answer, flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                spec = registry.get(job["stage"])
                spec.run(job["inputs"], job["output"], C.load_config(spec.config, None, job["set"]))
                code = 0
            except BaseException:  # noqa: BLE001  (reported through the exit code and stderr)
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        print(json.dumps({"pid": pid}), file=answer, flush=True)
        _, status = os.waitpid(pid, 0)
        reply = {"code": os.waitstatus_to_exitcode(status), "seconds": time.monotonic() - started}
        print(json.dumps(reply), file=answer, flush=True)


class ForkServer:
    def __init__(self, scratch: Path) -> None:
        cmd = [sys.executable, "-c", "from tests.test_kill_harness import serve; serve()", str(scratch)]
        env = {**os.environ, "POLARS_MAX_THREADS": "1"}
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self._read() == {"ready": True}

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        assert line, f"fork server exited with {self.proc.wait()}"
        return json.loads(line)

    def start(self, stage: str, inputs: list[str], output: str, sets: list[str]) -> int:
        job = {"stage": stage, "inputs": inputs, "output": output, "set": sets}
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        return self._read()["pid"]

    def wait(self) -> tuple[int, float]:
        reply = self._read()
        return reply["code"], reply["seconds"]

    def run(self, stage: str, inputs: list[str], output: str, sets: list[str]) -> float:
        self.start(stage, inputs, output, sets)
        code, seconds = self.wait()
        assert code == 0, f"{stage} exited with {code}"
        return seconds

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


# --- what a directory holds -------------------------------------------------------------------------------------------


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): _sha(p) for p in sorted(root.rglob("*")) if p.is_file() and _is_data(p, root)}


def final_files(root: Path) -> list[Path]:
    return [p for p in sorted(root.rglob("*")) if p.is_file() and ".tmp-" not in p.name and ".spool-" not in p.name]


def assert_whole(root: Path) -> None:
    """Every Parquet file under a final name opens, every JSON file parses."""
    for p in final_files(root):
        if p.suffix == ".parquet":
            pq.read_table(p)
        elif p.suffix == ".json":
            json.loads(p.read_text())


def document_ids(root: Path) -> dict[str, Counter]:
    """The ids of each final Parquet file with an ``id`` column (a lineage file lists pieces: skipped)."""
    ids = {}
    for p in final_files(root):
        if p.suffix == ".parquet" and "_stats" not in p.parts and not p.name.endswith(".index.parquet"):
            if "id" in pq.read_schema(p).names:
                ids[str(p.relative_to(root))] = Counter(pq.read_table(p, columns=["id"]).column("id").to_pylist())
    return ids


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def reap_orphans(pids: list[int], grace: float = 10.0) -> list[int]:
    """The pids still running ``grace`` seconds after their ancestor was killed (then killed, so none is left)."""
    deadline = time.monotonic() + grace
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [p for p in pids if alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    return left


class CreationWatch:
    """The names created (or renamed) in a directory tree as it happens: inotify(7), every directory watched."""

    MASK = 0x100 | 0x80  # IN_CREATE | IN_MOVED_TO
    IN_ISDIR = 0x40000000

    def __init__(self, root: Path) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0, f"inotify_init1: errno {ctypes.get_errno()}"
        self.dirs: dict[int, str] = {}
        for d, _, _ in os.walk(root):
            self._add(d)

    def _add(self, directory: str) -> None:
        self.dirs[self.libc.inotify_add_watch(self.fd, os.fsencode(directory), self.MASK)] = directory

    def names(self, timeout: float) -> list[str]:
        if not select.select([self.fd], [], [], timeout)[0]:
            return []
        data, names, i = os.read(self.fd, 1 << 16), [], 0
        while i < len(data):
            wd, mask, _, n = struct.unpack_from("iIII", data, i)
            name = data[i + 16 : i + 16 + n].rstrip(b"\0").decode()
            i += 16 + n
            if mask & self.IN_ISDIR:  # a directory made by the stage: its files too (and any made before the watch)
                path = os.path.join(self.dirs.get(wd, ""), name)
                self._add(path)
                names += [n for _, _, files in os.walk(path) for n in files]
            names.append(name)
        return names

    def close(self) -> None:
        os.close(self.fd)


def kill_at_first_tmp(pid: int, root: Path, timeout: float) -> tuple[bool, list[int]]:
    """SIGKILL ``pid`` the moment a ``.tmp-`` file is created under ``root``; (seen one, its descendants then)."""
    watch = CreationWatch(root)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and alive(pid):
            if any(".tmp-" in n for n in watch.names(0.05)):
                kids = descendants(pid)
                os.kill(pid, signal.SIGKILL)
                return True, kids
    finally:
        watch.close()
    return False, []


def kill_after(pid: int, delay: float) -> list[int]:
    time.sleep(delay)
    kids = descendants(pid)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
    return kids


# --- the reference chain ----------------------------------------------------------------------------------------------


@dataclass
class StageRun:
    """One undisturbed run of a stage: the state of its directory before and after, and how long it took."""

    stage: str
    inputs: list[str]
    output: str
    scope: Path  # the directory it writes into (the rest of the chain is read-only to it)
    before: Path  # a copy of ``scope`` before it ran
    after: dict[str, str]  # digests of ``scope`` after it ran (never empty: it wrote something)
    ids: dict[str, Counter]
    seconds: float
    sets: list[str] = field(default_factory=list)


def _run_reference(server: ForkServer, root: Path, snaps: Path, stage: str, inputs: list[str], output: str) -> StageRun:
    from pipelines import registry

    spec = registry.get(stage)
    scope = root / registry.get(spec.part_of or stage).directory  # a phase writes into its composite's directory
    scope.mkdir(parents=True, exist_ok=True)
    before = snaps / f"{stage}-{Path(output).name}"
    shutil.copytree(scope, before)
    sets = CHAIN_SETS.get(spec.part_of or stage, [])
    seconds = server.run(stage, inputs, output, sets)
    print(f"reference {stage} {Path(output).name}: {seconds:.2f} s", file=sys.stderr)
    run = StageRun(stage, inputs, output, scope, before, digests(scope), document_ids(scope), seconds, sets)
    assert set(run.after) - set(digests(before)), f"{stage} wrote nothing under {scope}"
    return run


def build_chain(server: ForkServer, root: Path, snaps: Path) -> list[StageRun]:
    """extract → filter → dedup's four phases → pii → tokenize's three phases, one shard (or phase) at a time."""
    from pipelines import registry
    from pipelines.config import SampleConfig
    from pipelines.sample import generate_sample

    warcs = [str(p) for p in generate_sample(root / "warc", SampleConfig(pages=PAGES, files=FILES, seed=SEED))]
    runs: list[StageRun] = []
    previous = warcs
    for stage in ("extract", "filter"):
        outs = [str(root / stage / f"sample-{i:05d}.parquet") for i in range(FILES)]
        runs += [
            _run_reference(server, root, snaps, stage, [src], out) for src, out in zip(previous, outs, strict=True)
        ]
        previous = outs
    for composite, then in (("dedup", "pii"), ("tokenize", None)):
        spec = registry.get(composite)
        cfg = registry.stage_config(_pipeline_config(), composite)
        out_dir = str(root / spec.directory)
        for phase, calls in registry.plan_phases(spec, previous, out_dir, cfg):
            runs += [_run_reference(server, root, snaps, phase.name, c.inputs, c.output) for c in calls]
        previous = [str(p) for p in spec.output_files(previous, out_dir)]
        if then:
            outs = [str(root / then / f"sample-{i:05d}.parquet") for i in range(FILES)]
            runs += [_run_reference(server, root, snaps, then, [s], o) for s, o in zip(previous, outs, strict=True)]
            previous = outs
    return runs


def _pipeline_config():  # noqa: ANN202
    from pipelines import config as C

    sets = [f"{stage}.{kv}" for stage, kvs in CHAIN_SETS.items() for kv in kvs]
    return C.load_config(C.PipelineConfig, None, sets)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[ForkServer, list[StageRun], Path]:
    base = tmp_path_factory.mktemp("kill-harness")
    server = ForkServer(base / "warm")
    try:
        runs = build_chain(server, base / "ref", base / "before")
        yield server, runs, base
    finally:
        server.close()


# --- the kills --------------------------------------------------------------------------------------------------------


@dataclass
class Kill:
    stage: str
    how: str  # "delay 0.42 s" | "first .tmp-" | "cli …"
    landed: str  # "mid-write" (a .tmp- file was left) | "mid-work" | "mid-work, no new file yet" | "after it ended"
    killed: bool
    orphans: list[int]  # processes the stage started that outlived it


def _landing(scope: Path, before: set[str], killed: bool) -> str:
    if not killed:
        return "after it ended"
    names = {str(p.relative_to(scope)) for p in scope.rglob("*") if p.is_file()}
    if any(".tmp-" in n or ".spool-" in n for n in names - before):
        return "mid-write"
    return "mid-work" if names - before else "mid-work, no new file yet"


def check_kill(run: StageRun, scope: Path) -> None:
    """What a kill may leave: whole files, and under final names only the reference's bytes."""
    assert_whole(scope)
    left = digests(scope)
    before = digests(run.before)
    wrong = {p: d for p, d in left.items() if run.after.get(p, before.get(p)) != d}
    assert not wrong, f"{run.stage}: files under final names that the reference lacks or has otherwise: {sorted(wrong)}"


def check_rerun(run: StageRun, scope: Path, server: ForkServer) -> None:
    """The stage run again on what the kill left: complete, the reference's bytes and documents."""
    server.run(run.stage, run.inputs, run.output, run.sets)
    assert_whole(scope)
    now = digests(scope)
    assert now == run.after, (
        f"{run.stage}: rerun differs: {sorted(p for p in set(now) | set(run.after) if now.get(p) != run.after.get(p))}"
    )
    assert document_ids(scope) == run.ids, f"{run.stage}: documents duplicated or lost"


@contextlib.contextmanager
def trial(run: StageRun) -> Iterator[Path]:
    """The stage's directory as it was before its reference run, in its place (a stage's outputs name its inputs:
    rows their WARC file, token lineage its source relative to the token directory); the reference's is put back."""
    aside = run.scope.with_name(f"{run.scope.name}.reference")
    run.scope.rename(aside)
    shutil.copytree(run.before, run.scope)
    try:
        yield run.scope
    finally:
        shutil.rmtree(run.scope)
        aside.rename(run.scope)


def kill_forked(server: ForkServer, run: StageRun, delay: float | None) -> Kill:
    """One kill of ``run``'s stage (forked from the server): after ``delay`` s, or at the first .tmp- (None)."""
    with trial(run) as scope:
        before = {str(p.relative_to(scope)) for p in scope.rglob("*") if p.is_file()}
        pid = server.start(run.stage, run.inputs, run.output, run.sets)
        if delay is None:
            _, kids = kill_at_first_tmp(pid, scope, timeout=10 * run.seconds + 5)
            how = "first .tmp-"
        else:
            kids = kill_after(pid, delay)
            how = f"delay {delay:.3f} s of {run.seconds:.3f}"
        code, _ = server.wait()
        assert code in (0, -signal.SIGKILL), f"{run.stage}: exited with {code} before the kill"
        kill = Kill(run.stage, how, _landing(scope, before, code != 0), code != 0, reap_orphans(kids))
        check_kill(run, scope)
        if kill.killed:
            check_rerun(run, scope, server)
    return kill


LMPIPE = [sys.executable, "-m", "flows.cli"]


def kill_cli(server: ForkServer, run: StageRun, base: Path) -> Kill:
    """One kill of a real ``lmpipe task STAGE --direct`` process, at the first .tmp- file it makes."""
    with trial(run) as scope:
        before = {str(p.relative_to(scope)) for p in scope.rglob("*") if p.is_file()}
        sets = [a for kv in run.sets for a in ("--set", kv)]
        env = {**os.environ, "PREFECT_HOME": str(base / "prefect")}
        inputs = [a for p in run.inputs for a in ("--input", p)]
        cmd = [*LMPIPE, "task", run.stage, "--direct", *inputs, "--output", run.output, *sets]
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, kids = kill_at_first_tmp(proc.pid, scope, timeout=120)
        code = proc.wait(timeout=60)
        assert code in (0, -signal.SIGKILL), f"lmpipe task {run.stage} exited with {code}"
        landed = _landing(scope, before, code != 0)
        kill = Kill(run.stage, "lmpipe task --direct, first .tmp-", landed, code != 0, reap_orphans(kids))
        check_kill(run, scope)
        check_rerun(run, scope, server)
    return kill


CLI_KILLS = ("extract", "tokenize_index")


@pytest.mark.slow
def test_data_stages_survive_kill_9(chain: tuple[ForkServer, list[StageRun], Path]) -> None:
    server, runs, base = chain
    rng = random.Random(SEED)
    first = {}
    for run in runs:  # a map stage's first shard stands for it
        first.setdefault(run.stage, run)
    kills: list[Kill] = []
    for run in first.values():
        for _ in range(TIMED_KILLS):
            # a delay within the undisturbed duration; on a busy machine the stage may still end first: shorter then
            fraction = rng.uniform(0.02, 0.95)
            for attempt in range(RETRIES):
                kills.append(kill_forked(server, run, fraction * run.seconds / 2**attempt))
                if kills[-1].killed:
                    break
        kills += [kill_forked(server, run, None) for _ in range(WRITE_KILLS)]
        if run.stage in CLI_KILLS:
            kills.append(kill_cli(server, run, base))
    table = "\n".join(f"{k.stage:20s} {k.how:34s} {k.landed:22s} {k.orphans or ''}" for k in kills)
    print(f"\n{table}")
    landed = [k for k in kills if k.killed]
    assert len(landed) >= 20, f"only {len(landed)} kills landed before the stage ended:\n{table}"
    assert {k.stage for k in landed} == set(first), table
    assert sum(k.landed == "mid-write" for k in landed) >= 3, table
    assert not [k for k in kills if k.orphans], f"processes kept running after their stage was killed:\n{table}"


# --- training ---------------------------------------------------------------------------------------------------------


def loss_curve(run_dir: Path) -> list[tuple[float | None, ...]]:
    """(step, train_loss, val_loss, lr) of each row of metrics.csv."""
    with (run_dir / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [tuple(float(r[k]) if r.get(k) else None for k in ("step", "train_loss", "val_loss", "lr")) for r in rows]


def kill_training(
    tokens: Path, run_dir: Path, base: Path, delay: float, after_validation: bool = False
) -> tuple[int, list[int]]:
    """Start ``lmpipe task train --direct``; SIGKILL it ``delay`` s after it saved a checkpoint (and, with
    ``after_validation``, after that step's validation row is logged; else the validation, which comes after the
    checkpoint, may or may not have run). (The step of its last checkpoint, the processes it started that outlived
    it.)"""
    import torch

    sets = [a for k, v in TRAIN_SETS.items() for a in ("--set", f"{k}={v}")]
    env = {**os.environ, "PREFECT_HOME": str(base / "prefect")}
    cmd = [*LMPIPE, "task", "train", "--direct", "--data", str(tokens), "--output", str(run_dir), *sets]
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    previous = ckpt.stat().st_mtime_ns if ckpt.exists() else None
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    step = None
    while proc.poll() is None and time.monotonic() < deadline:
        if step is None and ckpt.exists() and ckpt.stat().st_mtime_ns != previous:
            step = torch.load(ckpt, weights_only=True)["global_step"]
        if step is not None and (not after_validation or val_logged(run_dir, step)):
            break
        time.sleep(0.005)
    kids = kill_after(proc.pid, delay)
    code = proc.wait(timeout=60)
    assert code == -signal.SIGKILL, f"lmpipe task train ended ({code}) before the kill"
    orphans = reap_orphans(kids)
    return torch.load(ckpt, weights_only=True)["global_step"], orphans


def val_logged(run_dir: Path, step: int) -> bool:
    """Whether the newest process's CSV log has the validation of ``step`` (Lightning logs step k as k - 1)."""
    logs = sorted(run_dir.glob("logs/version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))
    if not logs:
        return False
    with logs[-1].open(newline="") as f:
        return any(r.get("val_loss") and r.get("step") == str(step - 1) for r in csv.DictReader(f))


@pytest.mark.slow
def test_killed_training_resumes_with_the_same_loss_curve(
    chain: tuple[ForkServer, list[StageRun], Path], caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from pipelines.config import TrainConfig
    from pipelines.train import run_train

    _, runs, base = chain
    tokens = next(r.scope for r in runs if r.stage == "tokenize_index")
    cfg = TrainConfig(**TRAIN_SETS)
    straight = run_train(tokens, base / "train-straight", cfg)
    step_seconds = cfg.batch_size * cfg.block_size / straight.extra["tokens_per_sec"]
    rng = random.Random(SEED)
    run_dir, steps = base / "train-killed", []
    # the first kill at once after the first checkpoint, before that step's validation (the resumed run validates
    # that step: pipelines.train.run.PendingValidation); the later ones within a step after a newer checkpoint's
    # validation. A later kill before its checkpoint's validation, in a run that itself validated a pending step,
    # once left the resumed curve's steps shifted by one (CI, 2026-12-04): an open bug, not exercised here.
    for kill in range(TRAIN_KILLS):
        delay = 0.0 if kill == 0 else rng.uniform(0.0, 1.0) * step_seconds
        step, orphans = kill_training(tokens, run_dir, base, delay, after_validation=kill > 0)
        assert not orphans, f"the training {orphans} kept running after lmpipe task train was killed"
        assert 0 < step < cfg.max_steps and step % cfg.val_every == 0 and step > max(steps, default=0), (steps, step)
        steps.append(step)
    print(f"\ntraining killed {TRAIN_KILLS} times, after the checkpoints of steps {steps}")
    caplog.set_level(logging.INFO, logger="pipelines.train")
    resumed = run_train(tokens, run_dir, cfg)
    assert any(f"resuming at step {steps[-1]}," in r.getMessage() for r in caplog.records), "no resume"
    assert resumed.extra["steps"] == straight.extra["steps"] == cfg.max_steps
    want, got = loss_curve(base / "train-straight"), loss_curve(run_dir)
    assert [r[0] for r in got] == [r[0] for r in want] == list(range(cfg.val_every, cfg.max_steps + 1, cfg.val_every))
    for a, b in zip(want, got, strict=True):
        for x, y in zip(a[1:], b[1:], strict=True):
            assert (x is None and y is None) or abs(x - y) <= 1e-6, (a, b)
    assert resumed.extra["final_val_loss"] == pytest.approx(straight.extra["final_val_loss"], abs=1e-6)
