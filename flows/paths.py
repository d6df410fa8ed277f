"""Where each stage writes, per DESIGN.md: ``{data_root}/{crawl_id}/{stage}/{shard_id}.parquet``."""

from __future__ import annotations

from pathlib import Path

from pipelines import registry


def stage_dir(data_root: str, crawl_id: str, stage: str) -> Path:
    return Path(data_root) / crawl_id / stage


def tokens_dir(data_root: str, crawl_id: str) -> str:
    """Where the tokenize stage writes (the train flow's input)."""
    return str(stage_dir(data_root, crawl_id, registry.get("tokenize").directory))


def run_dir(data_root: str, crawl_id: str, preset: str) -> str:
    return str(Path(data_root) / "runs" / f"{crawl_id}-{preset}")
