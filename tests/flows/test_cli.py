"""`lmpipe task <stage>` on one shard of a small sample, as a user debugging it would call it (DESIGN.md contract).

Each stage once, chained by files: extract → filter → dedup → pii → tokenize → train → generate. Extract and pii go
through their Prefect task (ephemeral API), the others ``--direct``; a repeated extract call is a cache hit.

pytest -m slow tests/flows/test_cli.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.tokenizer import read_token_bin

pytestmark = pytest.mark.slow

LMPIPE = [sys.executable, "-m", "flows.cli"]


def lmpipe(*args: str | Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREFECT_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([*LMPIPE, *map(str, args)], capture_output=True, text=True, env=env, timeout=600)


def ok(proc: subprocess.CompletedProcess[str]) -> dict:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    start = proc.stdout.rindex('{\n  "stage"')
    return json.loads(proc.stdout[start:])


def test_every_stage_on_one_shard(tmp_path: Path) -> None:
    home = tmp_path / "prefect"
    sample = tmp_path / "sample"
    proc = lmpipe("sample", "--output", sample, "--pages", 120, "--files", 1, home=home)
    assert proc.returncode == 0, proc.stderr
    warc = sample / "sample-00000.warc.gz"
    truth = json.loads((sample / "sample_truth.json").read_text())

    extracted = tmp_path / "extract" / "s0.parquet"
    stats = ok(lmpipe("task", "extract", "--input", warc, "--output", extracted, home=home))
    rows = pq.read_table(extracted).to_pylist()
    assert stats["docs_kept"] == len(rows) >= 100
    assert stats["docs_in"] == stats["docs_kept"] + sum(stats["dropped"].values())
    assert {"id", "url", "crawl_id", "warc_path", "warc_offset", "fetch_time", "text"} <= set(rows[0])
    again = lmpipe("task", "extract", "--input", warc, "--output", extracted, home=home)
    assert ok(again) == stats and "Cached" in again.stdout + again.stderr

    annotated = tmp_path / "filter" / "annotated.parquet"
    stats = ok(
        lmpipe("task", "filter", "--input", extracted, "--output", annotated, "--annotate-only", "--direct", home=home)
    )
    table = pq.read_table(annotated)
    assert table.num_rows == len(rows) and {"language", "language_score", "drop_reason"} <= set(table.column_names)
    filtered = tmp_path / "filter" / "s0.parquet"
    kept = ok(lmpipe("task", "filter", "--input", extracted, "--output", filtered, "--direct", home=home))
    assert kept["docs_kept"] == pq.read_table(filtered).num_rows == table.column("drop_reason").null_count
    would_drop = {k.removeprefix("would_drop_"): v for k, v in stats["extra"].items() if k.startswith("would_drop_")}
    assert stats["dropped"] == {} and kept["dropped"] == would_drop and "language_not_kept" in would_drop

    dedup_dir = tmp_path / "dedup"
    stats = ok(lmpipe("task", "dedup", "--input", filtered, "--output", dedup_dir, "--direct", home=home))
    deduped = dedup_dir / "s0.parquet"
    assert pq.read_table(deduped).num_rows == stats["docs_kept"] <= kept["docs_kept"]

    scrubbed = tmp_path / "pii" / "s0.parquet"
    stats = ok(lmpipe("task", "pii", "--input", deduped, "--output", scrubbed, home=home))
    texts = pq.read_table(scrubbed, columns=["text"]).column("text").to_pylist()
    planted = {v["value"] for p in truth["pages"] for v in p["pii"]}
    assert stats["docs_kept"] == len(texts) and not [v for v in planted if any(v in t for t in texts)]

    tokens = tmp_path / "tokens"
    stats = ok(
        lmpipe(
            "task",
            "tokenize",
            "--input",
            scrubbed,
            "--output",
            tokens,
            "--vocab-size",
            512,
            "--set",
            "val_fraction=0.2",
            "--direct",
            home=home,
        )
    )
    n = sum(len(read_token_bin(p)) for p in tokens.glob("*.bin"))
    assert n == stats["tokens"] > 10_000 and (tokens / "tokenizer.json").is_file()

    run_dir = tmp_path / "run"
    stats = ok(
        lmpipe(
            "task",
            "train",
            "--data",
            tokens,
            "--output",
            run_dir,
            "--max-steps",
            20,
            "--set",
            "val_every=10",
            "--set",
            "val_batches=4",
            "--direct",
            home=home,
        )
    )
    assert stats["extra"]["steps"] == 20 and (run_dir / "checkpoints" / "last.ckpt").is_file()
    proc = lmpipe("generate", "--run", run_dir, "--prompt", "The garden", "--max-new-tokens", 20, home=home)
    assert proc.returncode == 0 and proc.stdout.startswith("The garden") and len(proc.stdout) > 20


def test_bad_input_exits_nonzero_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    proc = lmpipe("task", "filter", "--input", bad, "--output", tmp_path / "out.parquet", "--direct", home=tmp_path)
    assert proc.returncode != 0
    assert str(bad) in proc.stdout + proc.stderr and "Traceback" not in proc.stdout + proc.stderr
