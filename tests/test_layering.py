"""pipelines/ never imports prefect: the core must run (and be debugged) without the orchestrator."""

import ast
import subprocess
import sys
from pathlib import Path

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"


def test_no_prefect_import_in_source() -> None:
    offenders = []
    for path in PIPELINES.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path}:{node.lineno}" for n in names if n == "prefect" or n.startswith("prefect.")]
    assert not offenders, f"pipelines/ imports prefect: {offenders}"


def test_importing_every_stage_does_not_load_prefect() -> None:
    code = (
        "import sys, pipelines.extract, pipelines.filters, pipelines.dedup, pipelines.pii, pipelines.tokenizer, "
        "pipelines.train, pipelines.sample; print('prefect' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
