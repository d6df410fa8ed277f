"""The layers only import downwards: deployments → flows → tasks → pipelines, never back.

pipelines/ never imports prefect, tasks, flows or deployments (the core runs, and is debugged, without the
orchestrator); tasks/ never imports flows or deployments; flows/ never imports deployments.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "pipelines": ("prefect", "tasks", "flows", "deployments"),
    "tasks": ("flows", "deployments"),
    "flows": ("deployments",),
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, at any depth (function-level imports included)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_only_downwards(layer: str) -> None:
    files = sorted((ROOT / layer).rglob("*.py"))
    assert files, f"{layer}/ has no Python files"
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in files
        for line, module in imported_modules(path)
        for top in FORBIDDEN[layer]
        if module == top or module.startswith(top + ".")
    ]
    assert not offenders, "imports against the layers' direction:\n" + "\n".join(offenders)


def test_the_checker_sees_a_backward_import(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text("def f():\n    from deployments.serve import main\n    import prefect.tasks\n")
    assert [m for _, m in imported_modules(bad)] == ["deployments.serve", "prefect.tasks"]


def test_importing_every_stage_does_not_load_prefect() -> None:
    code = (
        "import sys, pipelines.extract, pipelines.filters, pipelines.dedup, pipelines.pii, pipelines.tokenizer, "
        "pipelines.train, pipelines.sample; print('prefect' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"
