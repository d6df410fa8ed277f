"""The monthly-refresh deployment as `lmpipe serve` registers it on a real Prefect server: its cron has a next run
on the server, and it never runs twice at once (concurrency limit 1, CANCEL_NEW: a run started while one is running
ends Cancelled without running).

pytest -m slow tests/deployments/test_refresh_deployment.py
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import ConcurrencyLimitStrategy, FlowRun, StateType
from prefect.deployments import run_deployment

from tests.deployments.prefect_server import PrefectServer, Served, poll, read_run, wait_for_final

pytestmark = pytest.mark.slow

REFRESH = "data-refresh/monthly-refresh"
LIMIT_MESSAGE = "Deployment concurrency limit reached."


def _next_first_of_month_3am(after: datetime) -> datetime:
    """The next time `0 3 1 * *` (UTC) fires after ``after``."""
    candidate = after.replace(day=1, hour=3, minute=0, second=0, microsecond=0)
    if candidate > after:
        return candidate
    year, month = (after.year + 1, 1) if after.month == 12 else (after.year, after.month + 1)
    return candidate.replace(year=year, month=month)


def _scheduled_runs(deployment_id: str) -> list[FlowRun]:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[UUID(deployment_id)])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
            ),
        )


def _state_names(run_id: UUID) -> list[str]:
    with get_client(sync_client=True) as client:
        return [s.name for s in client.read_flow_run_states(run_id)]


def test_refresh_deployment_is_scheduled_monthly_and_limited_to_one_run(
    served: Served, prefect_api: PrefectServer
) -> None:
    deployment_id = served.ids["monthly-refresh"]
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment(UUID(deployment_id))
    assert [(s.schedule.cron, s.schedule.timezone, s.active) for s in deployment.schedules] == [
        ("0 3 1 * *", "UTC", True)
    ]
    assert deployment.global_concurrency_limit is not None and deployment.global_concurrency_limit.limit == 1
    assert deployment.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.CANCEL_NEW
    assert deployment.parameters == {"config": {"crawl": {"crawl_id": "latest"}}}

    # The server's scheduler fills in the upcoming runs (what the deployment's "Upcoming" tab shows).
    runs = poll(lambda: _scheduled_runs(deployment_id), 90, "a scheduled run of monthly-refresh")
    first = min(runs, key=lambda r: r.expected_start_time)
    assert first.expected_start_time == _next_first_of_month_3am(datetime.now(UTC))
    assert first.parameters["config"]["crawl"]["crawl_id"] == "latest"


def test_a_refresh_started_while_one_runs_is_cancelled(
    served: Served, prefect_api: PrefectServer, tmp_path: Path
) -> None:
    # The built-in sample instead of the newest crawl: a refresh of ~20 s on 2 cores, longer than the serving
    # process takes to pick up a run (PREFECT_RUNNER_POLL_FREQUENCY=2 there), so the runs below overlap.
    params = {"config": {"data_root": str(tmp_path / "data"), "tokenize": {"vocab_size": 1024}}}
    both = [run_deployment(REFRESH, parameters=params, timeout=0) for _ in range(2)]  # two at once

    poll(lambda: any(read_run(r.id).state_name == "Running" for r in both), 120, "one of two refreshes running")
    late = run_deployment(REFRESH, parameters=params, timeout=0)  # while that one runs
    late = wait_for_final(late.id, timeout=60)
    assert late.state_name == "Cancelled" and late.state.message == LIMIT_MESSAGE
    assert "Running" not in _state_names(late.id)

    ended = [wait_for_final(r.id, timeout=300) for r in both]
    assert sorted(r.state_name for r in ended) == ["Cancelled", "Completed"], [
        (r.state_name, r.state.message) for r in ended
    ]
    ran, refused = sorted(ended, key=lambda r: r.state_name != "Completed")
    assert refused.state.message == LIMIT_MESSAGE and "Running" not in _state_names(refused.id)
    assert ran.parameters == params
    tokens = tmp_path / "data" / "sample" / "tokens"
    assert list(tokens.glob("train_*.bin")), f"the refresh that ran wrote no token shards under {tokens}"
