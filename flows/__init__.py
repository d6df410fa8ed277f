"""Prefect flows: list shards, fan out one task per shard per stage, collect stats, publish artifacts."""

import os

# Library logs (pipelines.*) appear in the flow-run logs; set before prefect configures logging.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "pipelines")
# The ephemeral server's telemetry heartbeat phones home and, racing the first flow run for SQLite, logs a
# "database is locked" traceback; lmpipe runs offline, so it is off unless the user turns it on.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
