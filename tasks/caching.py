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


def outputs_valid(stage: str, inputs: list[str], output: str, cfg: BaseModel | None = None) -> bool:
    """True when every output of the stage exists, matches its manifest entry and was made from these inputs
    with this config. The last two matter when a config (or input) goes A → B → A: the key of A is a hit again,
    but the files on disk are B's."""
    want = config_hash(cfg) if cfg is not None else None
    current = None
    for path in expected_outputs(stage, inputs, output):
        if stage == "train":
            if not path.exists():
                return False
            continue
        if path.name == "meta.json":
            if not path.exists():
                return False
            continue
        manifest = Manifest(path.parent)
        if not manifest.valid(path):
            return False
        entry = manifest.load()[path.name]
        if want is not None and entry.get("config_hash") != want:
            return False
        if current is None:
            try:
                current = {str(p): fingerprint(p) for p in inputs}
            except (OSError, ValueError):  # an input is missing (its producer will remake it): recompute
                return False
        if entry.get("inputs") != current:
            return False
    if stage == "dedup" and cfg is not None:
        from pipelines.dedup import index_up_to_date

        if not index_up_to_date(output, cfg):  # the crawl's entry in the cross-crawl index is gone: rebuild it
            return False
    if stage == "train" and cfg is not None:
        recorded = Path(output) / "train_config.json"
        if not recorded.exists() or json.loads(recorded.read_text()) != cfg.model_dump(mode="json"):
            return False
    return True
