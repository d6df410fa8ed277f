"""How the training ranks start (TrainConfig.launcher): the command lines, the sbatch script and the Kubernetes job.

    local     python -m pipelines.train.run …            (Lightning starts the other local ranks itself)
    torchrun  python -m torch.distributed.run --standalone --nproc-per-node D -m pipelines.train.run …
              (num_nodes > 1: --rdzv-backend c10d --rdzv-endpoint HOST:PORT; every node runs the same command)
    slurm     sbatch RUN_DIR/slurm/train-*.sbatch        (srun starts one task per device; Lightning's
              SLURMEnvironment wires the ranks and requeues on SIGUSR1; ``follow_slurm_job`` waits for the end)

``render_kubernetes`` writes the same run as a Kubeflow PyTorchJob (torchrun in every pod). Whatever the route, the
ranks are processes of the training, never Prefect tasks: the Prefect task that calls ``run_train`` stays the
control plane (it submits, follows, and fails with the job's state). No torch/Lightning import here.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.config import TrainConfig
from pipelines.errors import ConfigError

logger = logging.getLogger(__name__)

ENTRY = ("-m", "pipelines.train.run")  # the training entry point every launcher starts
# Slurm job states after which the job will not run again (a requeued job goes back to PENDING under the same id).
SLURM_DONE = {
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "REVOKED",
}  # fmt: skip
SLURM_JOB_FILE = "slurm_job.json"  # RUN_DIR/slurm_job.json: the job a run directory's training is (or was) in


def process_rank() -> int:
    """This process's global rank when a launcher started it (torchrun's RANK, srun's SLURM_PROCID), else 0."""
    for name in ("RANK", "SLURM_PROCID"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def devices_per_node(cfg: TrainConfig) -> int:
    """The processes a node starts: ``devices`` when a number, else the node's GPUs (a CPU node: one process)."""
    if isinstance(cfg.devices, int) or str(cfg.devices).isdigit():
        return int(cfg.devices)
    if cfg.slurm.gpus_per_node:
        return cfg.slurm.gpus_per_node
    try:
        import torch

        return max(1, torch.cuda.device_count())
    except ImportError:  # pragma: no cover - torch is a dependency
        return 1


def entry_args(data_dir: str | Path, output_dir: str | Path, cfg: TrainConfig, limit: int | None) -> list[str]:
    """The arguments of ``python -m pipelines.train.run`` for this run (devices fixed to a number for launchers)."""
    args = ["--data", str(data_dir), "--output", str(output_dir), "--config-json", cfg.model_dump_json()]
    return args + (["--stop-step", str(limit)] if limit is not None else [])


def local_command(data_dir: str | Path, output_dir: str | Path, cfg: TrainConfig, limit: int | None) -> list[str]:
    return [sys.executable, *ENTRY, *entry_args(data_dir, output_dir, cfg, limit), "--exit-with-parent"]


def torchrun_command(data_dir: str | Path, output_dir: str | Path, cfg: TrainConfig, limit: int | None) -> list[str]:
    """torchrun on this node: standalone for one node, else a c10d rendezvous at cfg.rdzv_endpoint that the other
    nodes join with the same command (the rendezvous id is derived from the run directory)."""
    nproc = devices_per_node(cfg)
    cfg = cfg.model_copy(update={"devices": nproc})
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nnodes={cfg.num_nodes}", f"--nproc-per-node={nproc}"]
    if cfg.num_nodes == 1:
        cmd.append("--standalone")
    elif cfg.rdzv_endpoint is None:
        raise ConfigError(f"launcher=torchrun with num_nodes={cfg.num_nodes} needs train.rdzv_endpoint=HOST:PORT")
    else:
        run_id = hashlib.sha256(str(Path(output_dir).resolve()).encode()).hexdigest()[:16]
        cmd += ["--rdzv-backend=c10d", f"--rdzv-endpoint={cfg.rdzv_endpoint}", f"--rdzv-id=lmpipe-{run_id}"]
    return [*cmd, *ENTRY, *entry_args(data_dir, output_dir, cfg, limit), "--exit-with-parent"]


# --- Slurm --------------------------------------------------------------------------------------------------------


def render_sbatch(data_dir: str | Path, output_dir: str | Path, cfg: TrainConfig, limit: int | None = None) -> str:
    """The sbatch script of a run: cfg.num_nodes nodes × one task per device, srun starting the entry point.

    Lightning's SLURMEnvironment checks devices = SLURM_NTASKS_PER_NODE and num_nodes = SLURM_NNODES, so both come
    from the same numbers; the job name is not "bash" (Lightning would not detect Slurm). 90 s before the time limit
    Slurm sends SIGUSR1: Lightning checkpoints and requeues, and the requeued job resumes in the run directory.
    """
    tasks = devices_per_node(cfg)
    cfg = cfg.model_copy(update={"devices": tasks})
    s = cfg.slurm
    out = Path(output_dir).resolve()
    options = [
        "--job-name=lmpipe-train", f"--nodes={cfg.num_nodes}", f"--ntasks-per-node={tasks}",
        f"--cpus-per-task={s.cpus_per_task}", f"--time={s.time_limit}", "--signal=SIGUSR1@90", "--requeue",
        "--open-mode=append", f"--output={out / 'slurm' / 'slurm-%j.out'}", f"--chdir={Path.cwd()}",
    ]  # fmt: skip
    options += [f"--gpus-per-node={s.gpus_per_node}"] if s.gpus_per_node else []
    options += [f"--partition={s.partition}"] if s.partition else []
    options += [f"--account={s.account}"] if s.account else []
    options += s.extra_args
    srun = [sys.executable, *ENTRY, *entry_args(Path(data_dir).resolve(), out, cfg, limit)]
    lines = ["#!/bin/bash", "# written by lmpipe (pipelines/train/launchers.py render_sbatch) for this run"]
    lines += [f"#SBATCH {opt}" for opt in options]
    lines += ["set -euo pipefail", "export PYTHONUNBUFFERED=1", "srun " + shlex.join(srun), ""]
    return "\n".join(lines)


@dataclass
class SlurmJobState:
    job_id: str
    state: str  # JobState, e.g. PENDING, RUNNING, COMPLETED, CANCELLED
    exit_code: str = "0:0"  # Slurm's ExitCode: return code : signal
    reason: str = ""

    @property
    def done(self) -> bool:
        return self.state in SLURM_DONE

    @property
    def returncode(self) -> int:
        code, _, signal = self.exit_code.partition(":")
        return int(code) if code.isdigit() and int(code) else (128 + int(signal) if signal.isdigit() else 1)


def submit_sbatch(script: Path) -> str:
    """sbatch SCRIPT; the job id."""
    proc = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise ConfigError(f"{script}: sbatch refused the job: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout.strip().split(";")[0]


def slurm_job_state(job_id: str) -> SlurmJobState | None:
    """The job's state from ``scontrol show job`` (or ``sacct`` once slurmctld forgot it); None if unknown (or
    Slurm did not answer)."""
    proc = _ask(["scontrol", "show", "job", "-o", job_id])
    if proc is not None and proc.returncode == 0 and "JobState=" in proc.stdout:
        fields = dict(re.findall(r"(\w+)=(\S*)", proc.stdout))
        return SlurmJobState(job_id, fields["JobState"], fields.get("ExitCode", "0:0"), fields.get("Reason", ""))
    proc = _ask(["sacct", "-n", "-X", "-P", "-o", "State,ExitCode", "-j", job_id])
    ok = proc is not None and proc.returncode == 0 and proc.stdout.strip()
    line = proc.stdout.strip().splitlines()[0] if ok else ""
    if not line:
        return None
    state, _, exit_code = line.partition("|")
    return SlurmJobState(job_id, state.split()[0], exit_code or "0:0")


def _ask(cmd: list[str]) -> subprocess.CompletedProcess[str] | None:
    """A Slurm client command's answer; None when it is not installed or slurmctld does not answer in 60 s."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None


def follow_slurm_job(job_id: str, output: Path, poll_seconds: float, on_line: Callable[[str], None]) -> SlurmJobState:
    """Wait for the job's end, passing each new line of its output file to ``on_line``; its final state. A job
    Slurm does not know for ``unknown_polls`` polls in a row (never submitted here, or slurmctld down that long)
    raises; a shorter gap (slurmctld restarting) is waited out."""
    offset, unknown = 0, 0
    while True:
        state = slurm_job_state(job_id)
        offset = _tail(output, offset, on_line)
        unknown = unknown + 1 if state is None else 0
        if state is None and unknown >= max(3, int(60 / poll_seconds)):
            raise ConfigError(f"slurm job {job_id}: unknown to scontrol and sacct (was it submitted to this cluster?)")
        if state is None:
            time.sleep(poll_seconds)
            continue
        if state.done:
            time.sleep(min(poll_seconds, 1.0))  # the last lines reach the shared filesystem after the state
            _tail(output, offset, on_line)
            return state
        time.sleep(poll_seconds)


def _tail(path: Path, offset: int, on_line: Callable[[str], None]) -> int:
    if not path.is_file():
        return offset
    with path.open("rb") as f:
        f.seek(offset)
        chunk = f.read()
    complete = chunk[: chunk.rfind(b"\n") + 1]
    for line in complete.decode("utf-8", "replace").splitlines():
        on_line(line)
    return offset + len(complete)


def cancel_slurm_job(job_id: str) -> None:
    subprocess.run(["scancel", job_id], capture_output=True, text=True, timeout=60)


def active_slurm_job(output_dir: Path) -> str | None:
    """The job of RUN_DIR/slurm_job.json if it is still pending or running (a retried task follows it instead of
    submitting a second job that would train beside it)."""
    marker = output_dir / SLURM_JOB_FILE
    if not marker.is_file():
        return None
    job_id = str(json.loads(marker.read_text())["job_id"])
    state = slurm_job_state(job_id)
    return job_id if state is not None and not state.done else None


# --- Kubernetes ---------------------------------------------------------------------------------------------------


def set_overrides(cfg: TrainConfig) -> list[str]:
    """``--set key=value`` arguments of ``lmpipe task train`` for every field that differs from the defaults
    (values as JSON, which the CLI parses as YAML: "24:00:00" stays a string)."""
    args: list[str] = []

    def walk(prefix: str, data: dict[str, Any]) -> None:
        for key, value in sorted(data.items()):
            if isinstance(value, dict):
                walk(f"{prefix}{key}.", value)
            else:
                args.extend(["--set", f"{prefix}{key}={json.dumps(value)}"])

    walk("", cfg.model_dump(mode="json", exclude_defaults=True))
    return args


def render_kubernetes(
    data_dir: str, output_dir: str, cfg: TrainConfig, *, image: str = "lmpipe:gpu", name: str = "lmpipe-train"
) -> dict[str, Any]:
    """A Kubeflow PyTorchJob (kubeflow.org/v1) for the run: num_nodes pods (1 Master + Workers), each torchrun
    with devices processes of ``lmpipe task train --direct``; data and run directory on the ReadWriteMany claim
    ``lmpipe-data`` mounted at /data (paths given to this function are paths inside the pod)."""
    nproc = devices_per_node(cfg)
    cfg = cfg.model_copy(update={"devices": nproc, "launcher": "local"})
    command = [
        "torchrun", "--nnodes=$(PET_NNODES)", "--nproc-per-node=$(PET_NPROC_PER_NODE)", "--node-rank=$(PET_NODE_RANK)",
        "--master-addr=$(MASTER_ADDR)", "--master-port=$(MASTER_PORT)", "--no-python",
        "lmpipe", "task", "train", "--direct", "--data", data_dir, "--output", output_dir, *set_overrides(cfg),
    ]  # fmt: skip
    gpus = cfg.slurm.gpus_per_node or (nproc if cfg.precision != "32-true" else 0)
    container: dict[str, Any] = {
        "name": "pytorch",  # the operator sets its port and PET_* variables on the container of this name
        "image": image,
        "command": command,
        "ports": [{"name": "pytorchjob-port", "containerPort": 23456}],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        "resources": {"limits": {"nvidia.com/gpu": gpus}} if gpus else {},
    }
    pod = {
        "spec": {
            "containers": [container],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "lmpipe-data"}}],
        }
    }
    replicas = {"Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": pod}}
    if cfg.num_nodes > 1:
        worker = copy.deepcopy(pod)  # a copy: YAML output without anchors
        replicas["Worker"] = {"replicas": cfg.num_nodes - 1, "restartPolicy": "OnFailure", "template": worker}
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name},
        "spec": {
            "nprocPerNode": str(nproc),
            "runPolicy": {"cleanPodPolicy": "None", "backoffLimit": 3},
            "pytorchReplicaSpecs": replicas,
        },
    }
