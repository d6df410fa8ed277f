"""What each training launcher starts, rendered from a config: torchrun's command line, the sbatch script and the
Kubernetes PyTorchJob (``lmpipe train-job``), parsed and checked against the config they came from.

    pytest tests/pipelines/test_train_launchers.py

The runs themselves are in tests/pipelines/test_train_distributed.py (torchrun) and test_train_slurm.py (Slurm).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from pipelines.config import TrainConfig, load_config
from pipelines.errors import ConfigError
from pipelines.train.launchers import set_overrides, torchrun_command

LMPIPE = [sys.executable, "-m", "flows.cli"]


def lmpipe(*args: str) -> str:
    proc = subprocess.run([*LMPIPE, *args], capture_output=True, text=True, timeout=120, env={**os.environ})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_torchrun_command_is_standalone_on_one_node_and_a_rendezvous_on_several() -> None:
    one = torchrun_command("/d", "/r", TrainConfig(devices=2, launcher="torchrun"), None)
    assert one[1:3] == ["-m", "torch.distributed.run"] and "--standalone" in one and "--nproc-per-node=2" in one
    assert one[one.index("-m", 3) : one.index("-m", 3) + 2] == ["-m", "pipelines.train.run"]

    many = TrainConfig(devices=4, num_nodes=3, launcher="torchrun", rdzv_endpoint="head.cluster:29400")
    cmd = torchrun_command("/d", "/r", many, None)
    assert {"--nnodes=3", "--nproc-per-node=4", "--rdzv-backend=c10d", "--rdzv-endpoint=head.cluster:29400"} <= set(cmd)
    assert "--standalone" not in cmd
    with pytest.raises(ConfigError, match="rdzv_endpoint"):
        torchrun_command("/d", "/r", TrainConfig(num_nodes=2, launcher="torchrun"), None)


def test_set_overrides_reproduce_the_config() -> None:
    cfg = TrainConfig(
        preset="gpt2-124m", devices=8, num_nodes=2, strategy="ddp", max_steps=5000, sample_prompt="Once: upon",
        slurm={"time_limit": "24:00:00", "partition": "gpu", "extra_args": ["--qos=high"]},
    )  # fmt: skip
    args = set_overrides(cfg)
    assert load_config(TrainConfig, None, args[1::2]) == cfg  # "24:00:00" stays a string, not 86400


def test_train_job_kubernetes_manifest_matches_the_config() -> None:
    sets = ["preset=gpt2-124m", "devices=8", "num_nodes=3", "strategy=ddp", "max_steps=20000"]
    text = lmpipe("train-job", "kubernetes", "--data", "/data/tokens", "--output", "/data/runs/g", *[
        a for s in sets for a in ("--set", s)
    ])  # fmt: skip
    assert "&id" not in text  # no YAML anchors: every replica spec spelled out
    job = yaml.safe_load(text)
    assert job["apiVersion"] == "kubeflow.org/v1" and job["kind"] == "PyTorchJob"
    spec = job["spec"]
    replicas = spec["pytorchReplicaSpecs"]
    assert spec["nprocPerNode"] == "8" and replicas["Master"]["replicas"] == 1 and replicas["Worker"]["replicas"] == 2
    for role in ("Master", "Worker"):
        (container,) = replicas[role]["template"]["spec"]["containers"]
        assert container["name"] == "pytorch" and container["resources"]["limits"]["nvidia.com/gpu"] == 8
        command = container["command"]
        assert command[0] == "torchrun" and "--no-python" in command
        entry = command[command.index("--no-python") + 1 :]
        assert entry[:4] == ["lmpipe", "task", "train", "--direct"]  # the real entry point, as a node runs it
        assert entry[entry.index("--data") + 1] == "/data/tokens"
        rendered = load_config(TrainConfig, None, entry[entry.index("--output") + 2 :][1::2])
        assert rendered.devices == 8 and rendered.num_nodes == 3 and rendered.preset == "gpt2-124m"
        assert rendered.max_steps == 20000 and rendered.launcher == "local"  # the pods are the ranks


def test_train_job_slurm_script_parses_and_starts_the_ranks_with_srun(tmp_path) -> None:
    text = lmpipe(
        "train-job", "slurm", "--data", "/shared/tokens", "--output", "/shared/runs/g", "--set", "devices=4",
        "--set", "num_nodes=2", "--set", "slurm.gpus_per_node=4", "--set", "slurm.partition=gpu",
    )  # fmt: skip
    (tmp_path / "train.sbatch").write_text(text)
    assert subprocess.run(["bash", "-n", str(tmp_path / "train.sbatch")]).returncode == 0
    options = {line.split(" ", 1)[1] for line in text.splitlines() if line.startswith("#SBATCH ")}
    assert {"--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4", "--partition=gpu", "--requeue"} <= options
    (srun,) = [line for line in text.splitlines() if line.startswith("srun ")]
    assert "-m pipelines.train.run --data /shared/tokens --output /shared/runs/g --config-json" in srun
