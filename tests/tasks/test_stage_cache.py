"""Stage tasks under Prefect's ephemeral API: cache hits, manifest-validated refresh, retries of injected faults."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from prefect.client.orchestration import get_client

from pipelines.config import ExtractConfig
from tasks.stages import stage_task


def _persisted_result(state) -> dict:
    """The result record the task persisted (local result storage), as stored."""
    return json.loads(Path(state.data.metadata.storage_key).read_bytes())


def _run(src: str, out: str, cfg: ExtractConfig):
    return stage_task("extract", [src], out, cfg)([src], out, cfg, None, return_state=True)


@pytest.mark.timeout(300)
def test_cache_hit_refresh_and_config_change(shared_data: Path, tmp_path: Path) -> None:
    src = str(tmp_path / "dolma.warc.gz")
    shutil.copy(shared_data / "warc/dolma/sample-0001.warc.gz", src)
    out = str(tmp_path / "extract" / "dolma.parquet")
    cfg = ExtractConfig()

    first = _run(src, out, cfg)
    assert first.is_completed() and first.name == "Completed"
    stats = first.result()
    assert stats.docs_kept > 0
    mtime = Path(out).stat().st_mtime_ns

    record = _persisted_result(first)  # persisted as JSON, not pickle: a hit never unpickles a stored file
    assert record["metadata"]["serializer"]["type"] == "json"
    assert json.loads(record["result"])["data"]["docs_kept"] == stats.docs_kept

    second = _run(src, out, cfg)
    assert second.name == "Cached", "an unchanged rerun must be a cache hit"
    assert Path(out).stat().st_mtime_ns == mtime
    assert second.result() == stats

    Path(out).unlink()  # output gone → the manifest refuses the hit → recompute
    third = _run(src, out, cfg)
    assert third.name == "Completed" and Path(out).exists()

    Path(out).write_bytes(b"tampered")  # output altered → recompute
    assert _run(src, out, cfg).name == "Completed"

    changed = _run(src, out, ExtractConfig(min_text_chars=50))  # config change → new key
    assert changed.name == "Completed"
    assert _run(src, out, ExtractConfig(min_text_chars=50)).name == "Cached"

    # Back to the first config: its key is a hit, but the file on disk was made with the other one → recompute.
    back = _run(src, out, cfg)
    assert back.name == "Completed" and back.result().docs_kept == stats.docs_kept
    assert _run(src, out, cfg).name == "Cached"


@pytest.mark.timeout(300)
def test_injected_transient_fault_is_retried(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = str(shared_data / "warc/dolma/sample-0001.warc.gz")
    clean = str(tmp_path / "clean.parquet")
    faulty = str(tmp_path / "faulty.parquet")
    _run(src, clean, ExtractConfig())
    monkeypatch.setenv("LMPIPE_FAIL_FIRST_ATTEMPT", "extract")
    state = stage_task("extract", [src], faulty).with_options(retry_delay_seconds=0)(
        [src], faulty, ExtractConfig(), None, return_state=True
    )
    assert state.is_completed()
    assert _run_count(state) == 2  # failed once, retried once

    assert pq.read_table(faulty).equals(pq.read_table(clean))


@pytest.mark.timeout(120)
def test_corrupt_input_fails_fast_without_retry(tmp_path: Path) -> None:
    bad = tmp_path / "bad.warc.gz"
    bad.write_bytes(b"not a warc\n" * 5)
    state = stage_task("extract", [str(bad)], str(tmp_path / "o.parquet")).with_options(retry_delay_seconds=0)(
        [str(bad)], str(tmp_path / "o.parquet"), ExtractConfig(), None, return_state=True
    )
    assert state.is_failed()
    assert _run_count(state) == 1  # deterministic fault: no retry
    with pytest.raises(Exception, match="bad.warc.gz"):
        state.result()


def _run_count(state) -> int:
    """The task run's run count as the Prefect API stores it. A task run outside a flow reports its states as events
    that the server records asynchronously, so the stored run may lag the returned state by a moment: wait (up to
    30 s) until the stored state is the final one."""
    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_task_run(state.state_details.task_run_id)
            if (run.state is not None and run.state.type == state.type) or time.monotonic() > deadline:
                return run.run_count
            time.sleep(0.2)
