"""Serve lmpipe's deployments from this process, with their schedules, for the Prefect UI.

prefect server start &           # UI on http://127.0.0.1:4200
PREFECT_API_URL=http://127.0.0.1:4200/api lmpipe serve
"""

from __future__ import annotations

from prefect import serve

from flows.end_to_end import end_to_end
from flows.refresh import data_refresh
from flows.train import train_flow


def build_deployments() -> list:
    return [
        end_to_end.to_deployment(name="end-to-end", tags=["lmpipe"], description=end_to_end.__doc__),
        data_refresh.to_deployment(
            name="monthly-refresh",
            cron="0 3 1 * *",
            tags=["lmpipe", "refresh"],
            concurrency_limit=1,
            description="Monthly data refresh (cron 03:00 on the 1st); never two at once.",
        ),
        train_flow.to_deployment(name="train", tags=["lmpipe", "gpu"], description=train_flow.__doc__),
    ]


def main() -> None:
    serve(*build_deployments())


if __name__ == "__main__":
    main()
