"""Prefect deployments of lmpipe's flows (prefect.yaml for workers, serve.py for a local process)."""
