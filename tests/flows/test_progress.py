"""The data-refresh flow's progress artifact moves while the flow runs, one step per finished shard task.

pytest -m slow tests/flows/test_progress.py
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterType

from flows.refresh import data_refresh
from pipelines.config import PipelineConfig, SampleConfig, load_config
from pipelines.sample import generate_sample

pytestmark = pytest.mark.slow


def progress_values(since: datetime) -> list[float]:
    """Progress of every progress artifact created since ``since`` (the refresh creates one per run)."""
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(type=ArtifactFilterType(any_=["progress"])))
    return [float(a.data) for a in artifacts if a.created and a.created >= since]


def test_progress_artifact_advances_during_the_run(tmp_path: Path) -> None:
    warcs = tmp_path / "warcs"
    generate_sample(warcs, SampleConfig(pages=200, files=4))
    cfg = load_config(
        PipelineConfig,
        None,
        [f"data_root={tmp_path / 'root'}", f'inputs=["{warcs}/*.warc.gz"]', "tokenize.vocab_size=512"],
    )
    since = datetime.now(UTC)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            data_refresh(cfg)
        except BaseException as e:  # noqa: BLE001 (re-raised in the test thread)
            errors.append(e)

    flow = threading.Thread(target=run)
    flow.start()
    seen: list[float] = []
    while flow.is_alive():
        seen += progress_values(since)
        time.sleep(0.2)
    flow.join()
    assert not errors, errors
    final = progress_values(since)
    assert final == [100.0], final
    during = sorted({v for v in seen if 0.0 < v < 100.0})
    # 14 shard tasks (4 extract, 4 filter, dedup, 4 pii, tokenize): several distinct steps are seen in between
    assert len(during) >= 3, f"progress seen while running: {sorted(set(seen))}"
