"""The stage-contract refactor changes no output: today's tree reproduces the bytes of the tree before it.

The reference is the commit before the refactor (REFERENCE), taken from git history with ``git archive``; both trees
run tests/digest_driver.py (``lmpipe run`` on the built-in sample, then ``lmpipe task extract|filter|pii --direct``
on every file of ../shared/data/warc) and every data output must have the same sha256 (files carrying
times or host names — manifests, stats, logs, checkpoints — are left out; the training is compared by its losses).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import unavailable

REPO = Path(__file__).resolve().parents[1]
REFERENCE = "98f8b8e"  # main before the stage-contract refactor (issue 14)
TREES = ("pipelines", "tasks", "flows", "deployments", "tests/digest_driver.py")


WORKING_DIRS = {"_signatures", "_pairs", "_decisions", "_encoded"}


def _reference_tree(dest: Path) -> Path:
    try:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", REFERENCE, *TREES[:-1]],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        unavailable(f"git history with {REFERENCE} is needed for the digest test ({e})")
    dest.mkdir(parents=True)
    tar = dest / "ref.tar"
    tar.write_bytes(archive)
    with tarfile.open(tar) as t:
        t.extractall(dest, filter="data")
    tar.unlink()
    (dest / "tests").mkdir(exist_ok=True)
    shutil.copy(REPO / "tests" / "digest_driver.py", dest / "tests" / "digest_driver.py")
    return dest


def _digests(tree: Path, out: Path, warcs: Path, prefect_home: Path) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.run(
        [sys.executable, str(tree / "tests" / "digest_driver.py"), str(out), str(warcs)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, f"{tree}: driver failed\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_outputs_match_the_tree_before_the_refactor(tmp_path: Path, shared_data: Path) -> None:
    ref_tree = _reference_tree(tmp_path / "reference")
    # Both trees write under the same path (rows carry their WARC's path): the reference's output is moved aside.
    out = tmp_path / "out"
    ref = _digests(ref_tree, out, shared_data / "warc", tmp_path / "home-ref")
    out.rename(tmp_path / "ref-out")
    now = _digests(REPO, out, shared_data / "warc", tmp_path / "home-now")
    assert ref["digests"], "the reference run wrote no data"
    # the run really covered every stage and every WARC file
    stages = {Path(p).parts[1] if p.startswith("task/") else Path(p).parts[2] for p in ref["digests"]}
    assert {"extract", "filter", "pii"} <= stages, stages
    # Dedup's and tokenize's phases (separate stages since the split) keep their working files beside the outputs
    # (_signatures, _pairs, _decisions, _encoded); they did not exist before. What is built from them is compared.
    now["digests"] = {p: d for p, d in now["digests"].items() if not WORKING_DIRS & set(Path(p).parts)}
    assert set(now["digests"]) == set(ref["digests"]), (
        f"missing now: {sorted(set(ref['digests']) - set(now['digests']))}; "
        f"new now: {sorted(set(now['digests']) - set(ref['digests']))}"
    )
    differ = sorted(p for p in ref["digests"] if ref["digests"][p] != now["digests"][p])
    assert not differ, f"{len(differ)} of {len(ref['digests'])} outputs changed: {differ}"
    assert now["train"] == ref["train"], (now["train"], ref["train"])
