"""Prefect flows: list shards, fan out one task per shard per stage, collect stats, publish artifacts."""

import logging
import os

# Library logs (pipelines.*) appear in the flow-run logs; set before prefect configures logging.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "pipelines")
# pipelines.* also log outside runs (the CLI's --direct, tests): no warning for lines that have no run to go to.
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
# The ephemeral server's telemetry heartbeat phones home and, racing the first flow run for SQLite, logs a
# "database is locked" traceback; lmpipe runs offline, so it is off unless the user turns it on.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# The ephemeral API's first start in a fresh PREFECT_HOME creates and migrates its SQLite database; on a busy 2-core
# machine that takes longer than Prefect's 20 s default, and the run then fails before any work. Wait longer.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def _attach_pipelines_logger() -> None:
    """If prefect was imported (and configured its logging) before this package, the env var above came too late:
    give the ``pipelines`` logger Prefect's API handler here, so stage logs still reach the run's logs."""
    from prefect.logging.handlers import APILogHandler

    logger = logging.getLogger("pipelines")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    if not any(isinstance(h, APILogHandler) for h in logger.handlers):
        logger.addHandler(APILogHandler())


_attach_pipelines_logger()
