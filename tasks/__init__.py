"""Thin Prefect tasks, one per stage: cache policy, retries, tags and names around ``pipelines.<stage>.run_<stage>``."""
