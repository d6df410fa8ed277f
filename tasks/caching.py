"""The one cache policy: stage + CODE_VERSION + config hash + input fingerprints (+ where the output goes).

Prefect's cache says "this computation was done"; the manifest says whether its outputs still exist unchanged.
``submit_stage`` asks the manifest first and, when an output is missing or altered, makes Prefect refresh the
cache entry (recompute and overwrite) instead of trusting it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from pydantic import BaseModel

from pipelines import CODE_VERSION
from pipelines.shards import Manifest, config_hash, fingerprint, shard_id


def input_fingerprints(paths: list[str] | str) -> dict[str, str]:
    """Fingerprint files; a directory stands for the data files in it (names not starting with '_' or '.')."""
    out: dict[str, str] = {}
    for p in [paths] if isinstance(paths, str) else paths:
        if "://" not in p and os.path.isdir(p):
            for child in sorted(Path(p).iterdir()):
                if child.is_file() and not child.name.startswith(("_", ".")):
                    out[str(child)] = fingerprint(child)
        else:
            out[p] = fingerprint(p)
    return out


class StageCachePolicy(CachePolicy):
    """Cache key of a stage task from its arguments ``inputs`` (files or dirs), ``output`` and ``cfg``."""

    def compute_key(
        self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        cfg = inputs.get("cfg")
        payload = {
            "stage": task_ctx.task.name,
            "code": CODE_VERSION,
            "config": config_hash(cfg) if isinstance(cfg, BaseModel) else None,
            "inputs": input_fingerprints(inputs["inputs"]),
            "output": str(inputs["output"]),
            "limit": inputs.get("limit"),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


STAGE_CACHE = StageCachePolicy()


def expected_outputs(stage: str, inputs: list[str], output: str) -> list[Path]:
    """The files a stage's manifest must vouch for before a cache hit is trusted."""
    if stage == "dedup":
        return [Path(output) / f"{shard_id(p)}.parquet" for p in inputs]
    if stage == "tokenize":
        meta = Path(output) / "meta.json"
        if not meta.exists():
            return [meta]
        entries = Manifest(output).load()
        return [meta] + [Path(output) / name for name in entries] if entries else [meta, Path(output) / "_none"]
    if stage == "train":
        return [Path(output) / "summary.json", Path(output) / "checkpoints" / "last.ckpt"]
    return [Path(output)]


def outputs_valid(stage: str, inputs: list[str], output: str) -> bool:
    """True when every output of the stage exists and (for data shards) matches its manifest entry."""
    for path in expected_outputs(stage, inputs, output):
        if stage in ("train",) or path.name == "meta.json":
            if not path.exists():
                return False
        elif not Manifest(path.parent).valid(path):
            return False
    return True
