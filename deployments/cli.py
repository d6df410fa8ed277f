"""The ``lmpipe`` command: the commands of flows/cli.py plus ``serve``, which needs the deployments layer.

lmpipe serve          # deployments + schedules for the Prefect UI (PREFECT_API_URL)
lmpipe alerts         # a failed or crashed scheduled refresh notifies a webhook (deployments/alerts.py)
lmpipe --help         # every other command comes from flows/cli.py

The console script points here, not at flows/cli.py, so that flows/ never imports deployments/ (the layers'
direction: deployments → flows → tasks → pipelines; tests/test_layering.py checks it).
"""

from __future__ import annotations

from typing import Annotated

import typer

from flows.cli import app


@app.command()
def serve() -> None:
    """Serve the deployments (end-to-end, monthly refresh, train) to the Prefect API in PREFECT_API_URL."""
    from deployments.serve import main as serve_main

    serve_main()


@app.command()
def alerts(
    webhook_url: Annotated[
        str | None, typer.Option(help="Where notifications go (default: $LMPIPE_ALERT_WEBHOOK_URL).")
    ] = None,
) -> None:
    """Create the alerts (deployments/alerts.py): a failed or crashed scheduled refresh POSTs to the webhook."""
    from deployments.alerts import create_alerts

    for automation in create_alerts(webhook_url):
        print(f"automation {automation.name!r} ({automation.id})")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
