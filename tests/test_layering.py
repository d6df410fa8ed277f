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


MAX_FUNCTION_LINES = 60


def long_functions(path: Path) -> list[str]:
    """``file:line name (N lines)`` of every function (methods and nested ones too) longer than the limit, from
    its ``def`` line to its last line (decorators not counted, the docstring counted)."""
    name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    return [
        f"{name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]


@pytest.mark.parametrize("layer", ["pipelines", "tasks", "flows"])
def test_no_function_is_longer_than_60_lines(layer: str) -> None:
    offenders = [f for path in sorted((ROOT / layer).rglob("*.py")) for f in long_functions(path)]
    assert not offenders, f"functions over {MAX_FUNCTION_LINES} lines (split them along their steps):\n" + "\n".join(
        offenders
    )


def test_the_length_check_sees_a_long_function(tmp_path: Path) -> None:
    long = tmp_path / "long.py"
    long.write_text("def f():\n" + "    x = 1\n" * 60 + "\n\ndef g():\n    return 1\n")
    assert [entry.split(" ", 1)[1] for entry in long_functions(long)] == ["f (61 lines)"]
