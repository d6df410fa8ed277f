"""lmpipe's core: every stage's real logic, with no Prefect import (tests/test_layering.py checks).

Each stage is declared once in ``pipelines.registry`` (``lmpipe stages`` lists them); its entry is a shard-level
function ``run_<stage>(inputs, output, cfg, *, limit=None) -> StageStats``.
"""

# Bumped whenever a change alters any stage's output for the same input and config; part of every cache key.
CODE_VERSION = "0.1.0"
