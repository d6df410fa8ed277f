"""The ``lmpipe`` command: the commands of flows/cli.py plus ``serve``, which needs the deployments layer.

lmpipe serve          # deployments + schedules for the Prefect UI (PREFECT_API_URL)
lmpipe --help         # every other command comes from flows/cli.py

The console script points here, not at flows/cli.py, so that flows/ never imports deployments/ (the layers'
direction: deployments → flows → tasks → pipelines; tests/test_layering.py checks it).
"""

from __future__ import annotations

from flows.cli import app


@app.command()
def serve() -> None:
    """Serve the deployments (end-to-end, monthly refresh, train) to the Prefect API in PREFECT_API_URL."""
    from deployments.serve import main as serve_main

    serve_main()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
