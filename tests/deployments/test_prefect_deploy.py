"""`prefect deploy --prefect-file deployments/prefect.yaml --all` against a real Prefect server: the three
deployments exist with their work pools, schedule, parameters and concurrency limit, and a process worker started
with LMPIPE_HOME (the yaml's pull step) runs one of them to Completed.

pytest -m slow tests/deployments/test_prefect_deploy.py
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import ConcurrencyLimitStrategy
from prefect.deployments import run_deployment

from tests.deployments.prefect_server import (
    DEPLOYMENTS,
    ROOT,
    Process,
    api,
    executable,
    prefect_server_at,
    wait_for_final,
)

pytestmark = pytest.mark.slow

PREFECT_YAML = ROOT / "deployments" / "prefect.yaml"


def test_prefect_yaml_deploys_and_a_worker_runs_it(tmp_path: Path) -> None:
    spec = yaml.safe_load(PREFECT_YAML.read_text())
    with prefect_server_at(tmp_path / "server") as server, api(server):
        for pool in ("lmpipe-cpu", "lmpipe-gpu"):  # `prefect deploy` needs its work pools to exist
            server.run("work-pool", "create", pool, "--type", "process")
        server.run("--no-prompt", "deploy", "--prefect-file", str(PREFECT_YAML.relative_to(ROOT)), "--all")

        with get_client(sync_client=True) as client:
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

        # The worker runs outside the checkout: only the pull step (cd $LMPIPE_HOME) lets a run find flows/.
        elsewhere = tmp_path / "worker"
        elsewhere.mkdir()
        env = {**server.env, "LMPIPE_HOME": str(ROOT), "PREFECT_WORKER_QUERY_SECONDS": "2"}
        worker = Process(
            [executable("prefect"), "worker", "start", "--pool", "lmpipe-cpu", "--type", "process"],
            elsewhere / "worker.log",
            env,
            elsewhere,
        )
        try:
            data_root = tmp_path / "data"
            tiny = {"data_root": str(data_root), "sample": {"pages": 60, "files": 1}, "tokenize": {"vocab_size": 512}}
            run = run_deployment("data-refresh/monthly-refresh", parameters={"config": tiny}, timeout=0)
            run = wait_for_final(run.id, timeout=240)
            assert run.state_name == "Completed", f"{run.state_name}: {run.state.message}\n{worker.tail()}"
        finally:
            worker.stop()
        assert list((data_root / "sample" / "tokens").glob("train_*.bin"))
