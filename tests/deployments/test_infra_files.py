"""The infra recipes that can only be validated as files here: compose, Helm values, KubeRay, PyTorchJob, sbatch.

    .venv/bin/pytest tests/deployments/test_infra_files.py -q

No Docker daemon, Kubernetes cluster or Slurm exists on a test machine, so every file is parsed and checked against
the code it starts: images built from infra's Dockerfiles, commands and flags that exist in the installed `lmpipe`,
`prefect`, `ray` and `torchrun` (their --help), ports on 127.0.0.1, no literal secret, every ${VAR} in the env-file
template, Helm values keys that exist in the charts, and Dockerfiles that install what pyproject.toml declares.
`kubectl create --dry-run=client` runs offline; `docker compose config` needs the compose plugin, which Debian does
not ship (the docker CLI here has no plugin), so compose.yaml is checked by parsing only.
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tests.conftest import unavailable

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
BIN = Path(sys.executable).parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
COMPOSE = yaml.safe_load((INFRA / "compose.yaml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
ENV_EXAMPLE = INFRA / "stack.env.example"
SBATCH = (INFRA / "slurm" / "train.sbatch").read_text()

# Leaf key paths (or free-form subtrees) of the charts' default values that the values files may set, verified in
# PrefectHQ/prefect-helm: charts/prefect-server/values.yaml at commit 007af1c7 and charts/prefect-worker's values
# table (helm-docs, README.md) of the date-versioned charts after 2025.3.7033449, where basicAuth moved under
# worker.selfHostedServerApiConfig. A key the chart does not know would be silently ignored by Helm.
PREFECT_SERVER_CHART_KEYS = {
    "global.prefect.image.repository",
    "global.prefect.image.prefectTag",
    "global.prefect.image.pullPolicy",
    "global.prefect.env",
    "server.basicAuth.enabled",
    "server.basicAuth.authString",
    "server.basicAuth.existingSecret",
    "server.uiConfig.prefectUiApiUrl",
    "server.env",
    "server.resources",
    "server.replicaCount",
    "postgresql.enabled",
    "postgresql.auth.existingSecret",
    "postgresql.auth.password",
    "secret.create",
    "secret.name",
    "service.port",
    "ingress.enabled",
}
PREFECT_WORKER_CHART_KEYS = {
    "worker.apiConfig",
    "worker.selfHostedServerApiConfig.apiUrl",
    "worker.selfHostedServerApiConfig.basicAuth.enabled",
    "worker.selfHostedServerApiConfig.basicAuth.authString",
    "worker.selfHostedServerApiConfig.basicAuth.existingSecret",
    "worker.config.workPool",
    "worker.config.type",
    "worker.config.workQueues",
    "worker.image.repository",
    "worker.image.prefectTag",
    "worker.image.pullPolicy",
    "worker.replicaCount",
    "worker.resources",
    "worker.extraEnvVars",
    "worker.extraEnvVarsSecret",
    "worker.nodeSelector",
    "worker.tolerations",
}
# the key each chart reads from the Secret it is given
SECRET_KEYS = {"basicAuth": "auth-string", "db": "connection-string"}


def _k8s(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((INFRA / "k8s" / name).read_text()) if d]


def _lmpipe_images() -> dict[str, str]:
    """Image tag → Dockerfile, from each Dockerfile's first line (`docker build -f infra/Dockerfile.X -t TAG .`)."""
    images = {}
    for dockerfile in sorted(INFRA.glob("Dockerfile.*")):
        tag = re.search(r"docker build -f (\S+) -t (\S+) \.", dockerfile.read_text().splitlines()[0])
        assert tag and tag.group(1) == f"infra/{dockerfile.name}", f"{dockerfile}: first line names its build command"
        images[tag.group(2)] = tag.group(1)
    return images


LMPIPE_IMAGES = _lmpipe_images()


@cache
def _help(*command: str) -> str:
    """The --help text of an installed command (the venv's entry points), wide and without colour."""
    exe = BIN / command[0]
    assert exe.exists(), f"{command[0]} is not installed in {BIN}"
    env = {**os.environ, "COLUMNS": "300", "NO_COLOR": "1", "TERM": "dumb", "RAY_USAGE_STATS_ENABLED": "0"}
    done = subprocess.run([str(exe), *command[1:], "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, f"`{' '.join(command)} --help` failed: {done.stderr[-2000:]}"
    return done.stdout


# (command words before the first option, how many of them are subcommands)
SUBCOMMANDS = {"prefect": 2, "lmpipe": 1, "ray": 1, "torchrun": 0}


def _split(argv: list[str]) -> tuple[tuple[str, ...], list[str], list[str]]:
    """(subcommand path, its --options, the rest) of one command line; torchrun's rest is the program it runs."""
    prog, i = argv[0], 1
    if prog == "prefect":
        while i < len(argv) and argv[i].startswith("--"):  # global options (--no-prompt) come before the command
            i += 1
    path = (prog, *argv[i : i + SUBCOMMANDS[prog]])
    rest = argv[i + SUBCOMMANDS[prog] :]
    if prog == "torchrun":
        n = next(j for j, a in enumerate(rest) if not a.startswith("-"))
        return path, [a.split("=")[0] for a in rest[:n]], rest[n:]
    return path, [a.split("=")[0] for a in rest if a.startswith("--")], []


def _command_lines() -> list[tuple[str, list[str]]]:
    """Every command line the recipes run: (where, argv)."""
    lines = []
    for name, svc in SERVICES.items():
        if svc.get("image") not in LMPIPE_IMAGES:
            continue
        argv = list(svc.get("entrypoint") or ["lmpipe"]) + list(svc.get("command") or [])
        if argv[:2] == ["sh", "-c"]:
            lines += [(f"compose {name}", shlex.split(part)) for part in " ".join(argv[2:]).split("&&")]
        else:
            lines.append((f"compose {name}", argv))
    for doc in _k8s("train-pytorchjob.yaml"):
        for rtype, spec in doc["spec"]["pytorchReplicaSpecs"].items():
            for c in spec["template"]["spec"]["containers"]:
                lines.append((f"PyTorchJob {rtype}", list(c["command"]) + list(c.get("args") or [])))
    srun = " ".join(re.findall(r"^srun (.+?)(?<!\\)$", SBATCH.replace("\\\n", " "), re.M))
    lines.append(("train.sbatch", shlex.split(srun)))
    return lines


COMMAND_LINES = _command_lines()


@pytest.fixture(scope="module")
def helps() -> None:
    """Every --help the checks read, fetched in parallel (each command imports prefect, torch or ray)."""
    paths = set()
    for _, argv in COMMAND_LINES:
        path, _, rest = _split(argv)
        paths.add(path)
        if rest:
            paths.add(_split(rest)[0])
    paths.add(("ray", "start"))
    with ThreadPoolExecutor(len(paths)) as pool:
        list(pool.map(lambda p: _help(*p), paths))


def test_every_yaml_parses() -> None:
    files = sorted(INFRA.rglob("*.yaml"))
    assert {f.name for f in files} >= {
        "compose.yaml",
        "prefect-server-values.yaml",
        "prefect-worker-values.yaml",
        "raycluster.yaml",
        "train-pytorchjob.yaml",
    }
    for f in files:
        docs = [d for d in yaml.safe_load_all(f.read_text()) if d is not None]
        assert docs and all(isinstance(d, dict) for d in docs), f"{f}: expected YAML mappings"


def test_compose_has_the_team_stack() -> None:
    assert {"postgres", "prefect-server", "pools", "worker-cpu", "worker-gpu", "ray-head", "ray-worker"} <= set(
        SERVICES
    )
    assert SERVICES["postgres"]["image"] == "postgres:15" and "healthcheck" in SERVICES["postgres"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in SERVICES["postgres"]["volumes"])
    server_env = SERVICES["prefect-server"]["environment"]
    assert server_env["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert "@postgres:5432/" in server_env["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert "PREFECT_SERVER_API_AUTH_STRING" in server_env
    for worker, pool in (("worker-cpu", "lmpipe-cpu"), ("worker-gpu", "lmpipe-gpu")):
        svc = SERVICES[worker]
        assert svc["command"][svc["command"].index("--pool") + 1] == pool
        assert {"PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "AWS_ENDPOINT_URL"} <= set(svc["environment"])
    devices = SERVICES["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert SERVICES["worker-gpu"]["image"] == "lmpipe:gpu"
    # the pools one-shot creates exactly the pools deployments/prefect.yaml names, then deploys all of it
    prefect_yaml = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())
    pools = {d["work_pool"]["name"] for d in prefect_yaml["deployments"]}
    script = SERVICES["pools"]["command"][0]
    assert set(re.findall(r"work-pool create (\S+)", script)) == pools
    assert "deploy --prefect-file deployments/prefect.yaml --all" in script
    assert SERVICES["pools"]["working_dir"] == "/app"


def test_compose_images_are_built_from_infra_dockerfiles() -> None:
    for name, svc in SERVICES.items():
        image = svc["image"]
        if not image.startswith("lmpipe"):
            assert ":" in image and not image.endswith(":latest"), f"{name}: pin third-party image {image}"
            continue
        assert image in LMPIPE_IMAGES, f"{name}: {image} is not built by any infra/Dockerfile.*"
        build = svc["build"]
        context = (INFRA / build["context"]).resolve()
        assert context == ROOT, f"{name}: build context must be the repository root"
        assert (context / build["dockerfile"]).is_file() and build["dockerfile"] == LMPIPE_IMAGES[image]


@pytest.mark.slow  # seven --help runs, each importing prefect, torch or ray: ~10 s alone, ~1 min on a busy machine
def test_commands_are_real_entry_points(helps: None) -> None:
    """compose's, the PyTorchJob's and the sbatch's command lines, and the RayCluster's `ray start` parameters:
    each subcommand and --option exists."""
    (raycluster,) = _k8s("raycluster.yaml")
    start_help = _help("ray", "start")
    for group in [raycluster["spec"]["headGroupSpec"], *raycluster["spec"]["workerGroupSpecs"]]:
        for param in group["rayStartParams"]:
            assert f"--{param}" in start_help, f"rayStartParams {param}: not a `ray start` option"
    for where, argv in COMMAND_LINES:
        path, options, rest = _split(argv)
        text = _help(*path)
        for opt in options:
            assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text), f"{where}: {' '.join(path)} has no {opt}"
        if rest:  # torchrun --no-python PROGRAM …: the program's own command line
            assert "--no-python" in options, f"{where}: torchrun runs `{rest[0]}` as a program: --no-python"
            inner, inner_options, _ = _split(rest)
            for opt in inner_options:
                assert opt in _help(*inner), f"{where}: {' '.join(inner)} has no {opt}"
            argv = rest
        if argv[0] == "lmpipe" and argv[1] == "task":
            from pipelines import registry

            assert argv[2] in {s.name for s in registry.all_stages()}, f"{where}: no stage {argv[2]}"
            assert "--direct" in argv, f"{where}: the launchers run the stage itself, no Prefect task per rank"


def test_compose_ports_bind_localhost() -> None:
    published = [(n, p) for n, s in SERVICES.items() for p in s.get("ports", [])]
    assert published, "the server must be reachable from the host"
    for name, port in published:
        assert isinstance(port, str) and port.startswith("127.0.0.1:"), f"{name}: {port} must bind 127.0.0.1"
    assert SERVICES["prefect-server"]["command"][:4] == ["server", "start", "--host", "0.0.0.0"]


SECRET_NAME = re.compile(r"PASSWORD|SECRET|AUTH_STRING|CONNECTION_URL|^MC_HOST_")


def _env_example() -> dict[str, str]:
    lines = [ln.split("=", 1) for ln in ENV_EXAMPLE.read_text().splitlines() if ln and not ln.startswith("#")]
    return {k: v for k, v in lines}


def test_no_literal_secret_in_compose() -> None:
    for name, svc in SERVICES.items():
        for key, value in (svc.get("environment") or {}).items():
            value = str(value)
            if SECRET_NAME.search(key):
                assert "${" in value, f"{name}: {key} must come from the env file, not the repo"
            # user:password@ in a URL: the password is a variable
            for password in re.findall(r"://[^:/@\s]+:([^@\s]+)@", value):
                assert password.startswith("${"), f"{name}: {key} has a literal password"


def test_every_variable_is_in_the_env_template() -> None:
    text = yaml.safe_dump(COMPOSE)  # the values compose interpolates, not the comments
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)", text))
    required = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*):\?", text))
    example = _env_example()
    assert used <= set(example), f"not in stack.env.example: {sorted(used - set(example))}"
    assert {"POSTGRES_PASSWORD", "PREFECT_API_AUTH_STRING", "AWS_SECRET_ACCESS_KEY"} <= required
    for key, value in example.items():  # the template holds placeholders, never a usable secret
        if SECRET_NAME.search(key) or key == "AWS_SECRET_ACCESS_KEY":
            assert "change-me" in value, f"stack.env.example: {key} must be a change-me placeholder"
    assert re.fullmatch(r"[^:]+:change-me", example["PREFECT_API_AUTH_STRING"]), "auth string is user:password"


def _leaf_paths(node: Any, prefix: str = "") -> list[str]:
    if not isinstance(node, dict) or not node:
        return [prefix]
    return [p for k, v in node.items() for p in _leaf_paths(v, f"{prefix}.{k}" if prefix else k)]


@pytest.mark.parametrize(
    ("values", "chart_keys"),
    [
        ("prefect-server-values.yaml", PREFECT_SERVER_CHART_KEYS),
        ("prefect-worker-values.yaml", PREFECT_WORKER_CHART_KEYS),
    ],
)
def test_helm_values_use_chart_keys(values: str, chart_keys: set[str]) -> None:
    (doc,) = _k8s(values)
    for path in _leaf_paths(doc):
        parts = path.split(".")
        known = any(".".join(parts[:i]) in chart_keys for i in range(1, len(parts) + 1))
        assert known, f"{values}: {path} is not a key of the chart's values.yaml"


def _readme_secrets() -> dict[str, set[str]]:
    """Secret name → keys, from infra/README.md's `kubectl … create secret generic` lines."""
    secrets = {}
    for line in re.findall(r"kubectl .*create secret generic .+", (INFRA / "README.md").read_text()):
        argv = shlex.split(line)
        name = argv[argv.index("generic") + 1]
        secrets[name] = {a.split("=", 2)[1] for a in argv if a.startswith("--from-literal=")}
    return secrets


def test_kubernetes_secrets_are_created_by_the_readme_and_not_committed() -> None:
    secrets = _readme_secrets()
    (server,) = _k8s("prefect-server-values.yaml")
    (worker,) = _k8s("prefect-worker-values.yaml")
    auth = server["server"]["basicAuth"]
    assert auth["enabled"] is True and "authString" not in auth
    assert SECRET_KEYS["basicAuth"] in secrets[auth["existingSecret"]]
    worker_auth = worker["worker"]["selfHostedServerApiConfig"]["basicAuth"]
    assert worker_auth["enabled"] is True and worker_auth["existingSecret"] == auth["existingSecret"]
    assert server["postgresql"]["enabled"] is False and server["secret"]["create"] is False
    assert SECRET_KEYS["db"] in secrets[server["secret"]["name"]]
    for env in worker["worker"]["extraEnvVars"]:
        ref = env.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["key"] in secrets[ref["name"]], f"worker env {env['name']}: {ref} not created in README"
    assert worker["worker"]["config"] == {"workPool": "lmpipe-cpu", "type": "process"}
    image = f"{worker['worker']['image']['repository']}:{worker['worker']['image']['prefectTag']}"
    assert image in LMPIPE_IMAGES
    # the server runs the official image of the prefect release lmpipe pins
    prefect_spec = next(d for d in PYPROJECT["project"]["dependencies"] if d.startswith("prefect>"))
    tag = server["global"]["prefect"]["image"]["prefectTag"]
    assert Version(tag.split("-")[0]) in SpecifierSet(prefect_spec.removeprefix("prefect"))


def test_kubectl_builds_the_readme_secrets_offline(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        unavailable("kubectl is not installed")
    for line in re.findall(r"kubectl .*create secret generic .+", (INFRA / "README.md").read_text()):
        argv = shlex.split(line.replace("$", "placeholder-"))
        done = subprocess.run(
            [kubectl, *argv[1:], "--dry-run=client", "-o", "yaml"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "KUBECONFIG": str(tmp_path / "none")},
        )
        assert done.returncode == 0, f"{line}: {done.stderr}"
        secret = yaml.safe_load(done.stdout)
        assert secret["kind"] == "Secret" and set(secret["data"]) == _readme_secrets()[secret["metadata"]["name"]]
        assert all(base64.b64decode(v) for v in secret["data"].values())


def test_raycluster() -> None:
    (doc,) = _k8s("raycluster.yaml")
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayCluster")
    ray_pin = next(d for d in PYPROJECT["project"]["optional-dependencies"]["ray"] if d.startswith("ray"))
    assert doc["spec"]["rayVersion"] == ray_pin.split("==")[1], "rayVersion is the image's ray (lmpipe[ray])"
    groups = [doc["spec"]["headGroupSpec"], *doc["spec"]["workerGroupSpecs"]]
    assert len(groups) >= 2
    for group in groups:
        for c in group["template"]["spec"]["containers"]:
            assert c["image"] in LMPIPE_IMAGES, f"{c['name']}: {c['image']} is not an infra/Dockerfile.* image"
            assert "command" not in c and "args" not in c, "KubeRay starts the container with `ray start`"
            assert {"cpu", "memory"} <= set(c["resources"]["limits"])
    assert "ray" in _dockerfile_extras(ROOT / LMPIPE_IMAGES["lmpipe:cpu"]), "the Ray image must install lmpipe[ray]"


def test_pytorchjob_matches_its_resources() -> None:
    (doc,) = _k8s("train-pytorchjob.yaml")
    assert (doc["apiVersion"], doc["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    replicas = doc["spec"]["pytorchReplicaSpecs"]
    assert set(replicas) <= {"Master", "Worker"} and "Master" in replicas
    nproc = int(doc["spec"]["nprocPerNode"])
    nodes = sum(r["replicas"] for r in replicas.values())
    for rtype, spec in replicas.items():
        (c,) = spec["template"]["spec"]["containers"]
        assert c["name"] == "pytorch", "the operator configures the container named pytorch"
        assert c["image"] == "lmpipe:gpu"
        assert int(c["resources"]["limits"]["nvidia.com/gpu"]) == nproc, f"{rtype}: one process per GPU"
        sets = dict(c["command"][i + 1].split("=", 1) for i, a in enumerate(c["command"]) if a == "--set")
        assert int(sets["devices"]) == nproc and int(sets["num_nodes"]) == nodes, "devices × num_nodes = world size"
        assert c["command"][0] == "torchrun"


def test_sbatch_template() -> None:
    header = dict(re.findall(r"^#SBATCH --([\w-]+)(?:=(\S+))?", SBATCH, re.M))
    assert header["signal"] == "SIGUSR1@90", "Lightning's SLURM auto-requeue listens for SIGUSR1"
    assert "requeue" in header and header["job-name"] not in ("bash", "interactive")
    assert header["ntasks-per-node"] == header["gpus-per-node"], "one task per GPU"
    assert int(header["nodes"]) >= 1
    srun = [argv for where, argv in COMMAND_LINES if where == "train.sbatch"][0]
    assert srun[:4] == ["lmpipe", "task", "train", "--direct"]
    assert "num_nodes=$SLURM_NNODES" in srun and "devices=$SLURM_NTASKS_PER_NODE" in srun
    assert subprocess.run(["bash", "-n", str(INFRA / "slurm" / "train.sbatch")]).returncode == 0


def _dockerfile_extras(dockerfile: Path) -> set[str]:
    installs = re.findall(r"pip install --no-cache-dir \"?\.(?:\[([\w,]+)\])?\"?", dockerfile.read_text())
    assert installs, f"{dockerfile}: installs the project (pip install .)"
    return {e for group in installs for e in group.split(",") if e}


@pytest.mark.parametrize("dockerfile", sorted(p.name for p in INFRA.glob("Dockerfile.*")))
def test_dockerfile_matches_pyproject(dockerfile: str) -> None:
    text = (INFRA / dockerfile).read_text()
    # torch: the pin the Makefile installs first (pyproject leaves torch to the installer)
    make_torch = re.search(r"^TORCH \?= (\S+)", (ROOT / "Makefile").read_text(), re.M).group(1)
    torch_pins = set(re.findall(r"torch==[\d.]+", text))
    assert torch_pins == {make_torch}, f"{dockerfile}: torch {torch_pins} vs Makefile {make_torch}"
    torch_spec = next(d for d in PYPROJECT["project"]["dependencies"] if d.startswith("torch"))
    assert Version(make_torch.split("==")[1]) in SpecifierSet(torch_spec.removeprefix("torch"))
    # every package pyproject ships is copied, and what `pip install .` reads
    copied = set(re.findall(r"^COPY (\S+) \1$", text, re.M))
    copied |= {f for line in re.findall(r"^COPY (.+) \./$", text, re.M) for f in line.split()}
    packages = {p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= copied, f"{dockerfile}: not copied: {sorted(packages - copied)}"
    assert {"pyproject.toml", PYPROJECT["project"]["readme"]} <= copied
    # the interpreter satisfies requires-python
    python = re.search(r"^FROM python:(\d+\.\d+)|(?:^RUN .*)python(\d+\.\d+) -m pip", text, re.M)
    assert python, f"{dockerfile}: no Python version found"
    assert Version(python.group(1) or python.group(2)) in SpecifierSet(PYPROJECT["project"]["requires-python"])
    # installed extras exist
    extras = _dockerfile_extras(INFRA / dockerfile)
    assert extras <= set(PYPROJECT["project"]["optional-dependencies"]), f"{dockerfile}: unknown extras {extras}"
    assert "ENV LMPIPE_HOME=/app" in text and "WORKDIR /app" in text, "prefect.yaml's pull step changes into it"
