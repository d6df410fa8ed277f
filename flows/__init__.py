"""Prefect flows: list shards, fan out one task per shard per stage, collect stats, publish artifacts."""

import os

# Library logs (pipelines.*) appear in the flow-run logs; set before prefect configures logging.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "pipelines")
