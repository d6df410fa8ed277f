"""lmpipe's core: every stage's real logic, with no Prefect import (tests/pipelines/test_layering.py checks).

Each stage module exposes one shard-level entry, ``run_<stage>(inputs, output, cfg, *, limit=None) -> StageStats``.
"""

# Bumped whenever a change alters any stage's output for the same input and config; part of every cache key.
CODE_VERSION = "0.1.0"

STAGES = ("extract", "filter", "dedup", "pii", "tokenize", "train")
_ENTRY = {
    "extract": ("pipelines.extract", "run_extract"),
    "filter": ("pipelines.filters", "run_filter"),
    "dedup": ("pipelines.dedup", "run_dedup"),
    "pii": ("pipelines.pii", "run_pii"),
    "tokenize": ("pipelines.tokenizer", "run_tokenize"),
    "train": ("pipelines.train", "run_train"),
}


def stage_function(stage: str):  # noqa: ANN201  (returns the stage's run_<stage>)
    """The shard-level entry ``run_<stage>`` of a stage, imported on demand (heavy imports stay lazy)."""
    import importlib

    module, name = _ENTRY[stage]
    return getattr(importlib.import_module(module), name)
