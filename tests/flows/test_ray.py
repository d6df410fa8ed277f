"""The data-refresh flow on a Ray cluster (``--runner ray``): a real two-node Ray cluster on 127.0.0.1 (the session's
``ray_cluster``: ``ray start``, one CPU per node), prefect-ray's RayTaskRunner, under Prefect's ephemeral API.

The sample split into 8 WARC files goes through ``lmpipe refresh --input … --runner ray --ray-address …`` and
through the local runner; both write the same rows and text in every Parquet shard and byte-identical token shards,
and Ray's state API shows the stage tasks ran on both nodes.

pytest -m slow tests/flows/test_ray.py
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flows.cli import app
from flows.refresh import plan_chain, resolve_inputs
from pipelines.config import PipelineConfig, SampleConfig
from pipelines.sample import generate_sample
from tests.conftest import unavailable
from tests.flows.test_caching import task_runs_since

pytestmark = pytest.mark.slow
try:
    import ray  # noqa: F401
except ImportError:  # a skip on a developer machine without the extra, a failure in CI (LMPIPE_STRICT_TESTS=1)
    unavailable("ray is not installed: pip install 'lmpipe[ray]'", module_level=True)

FILES = 8


@pytest.fixture(scope="module")
def warcs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("warcs")
    generate_sample(out, SampleConfig(files=FILES))
    return out


def _refresh(root: Path, warcs: Path, *extra: str) -> None:
    args = ["refresh", "--input", f"{warcs}/*.warc.gz", "--data-root", str(root), "--set", "tokenize.vocab_size=1024"]
    assert not app([*args, *extra], standalone_mode=False)


def _planned_tasks(root: Path, warcs: Path) -> int:
    cfg = PipelineConfig.model_validate({"data_root": str(root), "inputs": [f"{warcs}/*.warc.gz"]})
    return sum(len(step.calls) for step in plan_chain(cfg, resolve_inputs(cfg)))


def _data_files(root: Path) -> dict[str, Path]:
    """The stage outputs a user reads (Parquet shards of every stage, token shards), by path under the crawl."""
    base = root / "sample"
    files = [p for p in base.rglob("*") if p.suffix in (".parquet", ".bin") and ".tmp-" not in p.name]
    return {str(p.relative_to(base)): p for p in sorted(files)}


def test_refresh_on_a_two_node_ray_cluster_matches_the_local_runner(
    ray_cluster: dict[str, str], warcs: Path, tmp_path: Path
) -> None:
    assert len(list(warcs.glob("*.warc.gz"))) == FILES
    _refresh(tmp_path / "local", warcs)
    since = datetime.now(UTC)
    _refresh(tmp_path / "ray", warcs, "--runner", "ray", "--ray-address", ray_cluster["address"])
    # Every task run reported to the API the flow uses, each once, all Completed (none lost to a worker-side API)
    runs = [r for r in task_runs_since(since) if "-/" in r.name]
    assert len(runs) == len({r.name for r in runs}) == _planned_tasks(tmp_path / "ray", warcs)
    assert {r.state_name for r in runs} == {"Completed"}

    local, remote = _data_files(tmp_path / "local"), _data_files(tmp_path / "ray")
    assert set(local) == set(remote) and len([k for k in local if k.startswith("pii/")]) == FILES
    for name, path in local.items():
        if path.suffix == ".bin":
            assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(remote[name].read_bytes()).digest()
        else:
            a, b = pq.read_table(path), pq.read_table(remote[name])
            assert a.num_rows == b.num_rows, name
            if "text" in a.column_names:
                assert a.column("text").to_pylist() == b.column("text").to_pylist(), name
                assert a.column("id").to_pylist() == b.column("id").to_pylist(), name

    # Ray's state API: the stage tasks (named after the stage) ran on both nodes of the cluster.
    from ray.util.state import list_tasks

    tasks = list_tasks(address=ray_cluster["dashboard"], limit=10_000, detail=True)
    stage_tasks = [t for t in tasks if t.name in ("extract", "filter", "dedup_signatures", "pii", "tokenize_encode")]
    assert {t.state for t in stage_tasks} == {"FINISHED"}
    assert len({t.node_id for t in stage_tasks}) == 2, {t.node_id for t in stage_tasks}
    assert len([t for t in stage_tasks if t.name == "extract"]) == FILES
