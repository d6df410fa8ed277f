"""Run lmpipe's main job and the per-shard tasks from one code tree and print the sha256 of every output.

    cd TREE && PYTHONPATH=TREE python tests/digest_driver.py OUT_DIR SHARED_WARC_DIR

Compares two code trees' outputs by hand (e.g. ``git archive`` of an older commit against today's): run it in
each and diff the JSON. tests/test_kill_harness.py uses its ``_is_data`` / ``_sha`` (which files are data, and
their digests without volatile fields). (tests/test_digests.py ran it on the tree before the stage-contract
refactor, issue 14, until deliberate extraction fixes of issue 18 changed real outputs.) It drives the CLI in-process
(``app([...], standalone_mode=False)``) so the ~20 WARC files cost one interpreter start, not one per command.
Prints one JSON object: ``{"digests": {relative path: sha256}, "train": {...}}``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

# Files whose bytes carry time, host or run identity, never data: compared through their data fields instead.
VOLATILE_SUFFIXES = (".lock", ".log", ".ckpt", ".png", ".html", ".md", ".csv")
VOLATILE_NAMES = {"_manifest.json", "summary.json", "train_config.json", "hparams.yaml", "report.json"}
# A page over the extraction's time limit is dropped (timeout); on a loaded machine the limit's wall-clock backstop
# can drop one page in one run and not the other: both trees get a limit no page reaches (its bytes are the same).
PAGE_SECONDS = 600
VOLATILE_KEYS = {"seconds", "finished", "fingerprint"}  # hashed without these (times; an input's mtime)


def _without_volatile(value: object) -> object:
    if isinstance(value, dict):
        return {k: _without_volatile(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [_without_volatile(v) for v in value]
    return value


def _sha(path: Path) -> str:
    if path.suffix == ".json":
        canonical = json.dumps(_without_volatile(json.loads(path.read_text())), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _is_data(path: Path, root: Path) -> bool:
    rel = path.relative_to(root).parts
    if any(part.startswith(("_stats", "_explore", ".")) for part in rel) or {
        "checkpoints",
        "tensorboard",
        "logs",
    } & set(rel):
        return False
    return not (path.name in VOLATILE_NAMES or path.name.endswith(VOLATILE_SUFFIXES) or ".tmp-" in path.name)


def main() -> None:
    out_dir, warc_dir = Path(sys.argv[1]), Path(sys.argv[2])
    from deployments.cli import main as _  # noqa: F401  (the entry point of both trees)
    from flows.cli import app

    def lmpipe(*args: str) -> None:
        code = app(list(args), standalone_mode=False)  # click returns, not raises, a typer.Exit's code here
        if code:
            raise SystemExit(f"lmpipe {' '.join(args)}: exit code {code}")

    # The main job on the built-in sample, with a short training (the data stages run in full).
    run_root = out_dir / "run"
    lmpipe(
        "run",
        "--data-root",
        str(run_root),
        "--set",
        "train.max_steps=4",
        "--set",
        "train.val_every=2",
        "--set",
        "train.warmup_steps=1",
        "--set",
        f"extract.timeout_seconds={PAGE_SECONDS}",
    )
    # One shard at a time through each per-shard stage, on every real WARC file.
    task_root = out_dir / "task"
    slow_pages = f"timeout_seconds={PAGE_SECONDS}"
    for warc in sorted(p for p in warc_dir.rglob("*") if p.is_file()):
        name = str(warc.relative_to(warc_dir)).replace("/", "__")
        ext, flt, pii = (task_root / stage / f"{name}.parquet" for stage in ("extract", "filter", "pii"))
        lmpipe("task", "extract", "--direct", "--input", str(warc), "--output", str(ext), "--set", slow_pages)
        lmpipe("task", "filter", "--direct", "--input", str(ext), "--output", str(flt))
        lmpipe("task", "pii", "--direct", "--input", str(flt), "--output", str(pii))

    digests = {
        str(p.relative_to(out_dir)): _sha(p) for p in sorted(out_dir.rglob("*")) if p.is_file() and _is_data(p, out_dir)
    }
    summaries = sorted(run_root.rglob("summary.json"))
    train = json.loads(summaries[0].read_text()) if summaries else {}
    keep = ("final_train_loss", "final_val_loss", "tokens", "docs_in", "docs_kept")
    print(json.dumps({"digests": digests, "train": {k: train.get(k) for k in keep if k in train}}))


if __name__ == "__main__":
    main()
