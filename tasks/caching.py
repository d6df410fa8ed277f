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

from pipelines import registry
from pipelines.shards import config_hash, fingerprint


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
            "code": registry.get(task_ctx.task.name).version,
            "config": config_hash(cfg) if isinstance(cfg, BaseModel) else None,
            "inputs": input_fingerprints(inputs["inputs"]),
            "output": str(inputs["output"]),
            "limit": inputs.get("limit"),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


STAGE_CACHE = StageCachePolicy()


def outputs_valid(stage: str, inputs: list[str], output: str, cfg: BaseModel | None = None) -> bool:
    """True when the stage's outputs for these inputs exist, match their manifest and were made with ``cfg``
    (the stage's own ``complete`` in pipelines.registry)."""
    return registry.get(stage).complete(inputs, output, cfg)
