"""Serve lmpipe's deployments from this process, with their schedules, for the Prefect UI.

prefect server start &           # UI on http://127.0.0.1:4200
PREFECT_API_URL=http://127.0.0.1:4200/api lmpipe serve

The same deployments for workers are in deployments/prefect.yaml (tests/deployments checks that they agree).
"""

from __future__ import annotations

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from flows.end_to_end import end_to_end
from flows.refresh import data_refresh
from flows.train import train_flow

REFRESH_CRON = "0 3 1 * *"  # 03:00 UTC on the 1st of each month; Common Crawl publishes about monthly
# The scheduled refresh takes the newest crawl without a completed refresh (see pipelines/crawl.py).
REFRESH_PARAMETERS = {"config": {"crawl": {"crawl_id": "latest"}}}
# A refresh still running when the next one is due (a slow month, a manual run) must not race it over the same
# outputs: the new run is cancelled, not queued behind it.
REFRESH_CONCURRENCY = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)


def build_deployments() -> list[RunnerDeployment]:
    return [
        end_to_end.to_deployment(name="end-to-end", tags=["lmpipe"], description=end_to_end.__doc__),
        data_refresh.to_deployment(
            name="monthly-refresh",
            schedule=Cron(REFRESH_CRON, timezone="UTC"),
            parameters=REFRESH_PARAMETERS,
            tags=["lmpipe", "refresh"],
            concurrency_limit=REFRESH_CONCURRENCY,
            description="Monthly data refresh of the newest crawl (cron 03:00 UTC on the 1st); never two at once: "
            "a run started while another is running is cancelled.",
        ),
        train_flow.to_deployment(name="train", tags=["lmpipe", "gpu"], description=train_flow.__doc__),
    ]


def main() -> None:
    serve(*build_deployments())


if __name__ == "__main__":
    main()
