"""A stage writing to a full disk (a small tmpfs, filled up) fails at once with an error naming the file that did not
fit, leaves nothing partial, is not retried by its Prefect task, and completes once the space is freed.

sudo .venv/bin/pytest tests/tasks/test_disk_full.py     # mounts a tmpfs: needs root
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.config import ExtractConfig
from pipelines.errors import DiskFullError
from pipelines.shards import Manifest, atomic_write_bytes, write_table
from tasks.retries import RETRY_OPTIONS
from tasks.stages import stage_task
from tests.conftest import unavailable
from tests.tasks.test_stage_cache import _run_count

DISK_BYTES = 2 << 20
LEFT_FREE = 8 << 10  # two pages: room for the manifest, not for the ~26 kB extract shard of sample-0001


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted at tmp_path/disk, unmounted at teardown."""
    if os.geteuid() != 0:
        unavailable("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(disk)], capture_output=True, text=True
    )
    if mount.returncode != 0:
        unavailable(f"cannot mount a tmpfs at {disk}: {mount.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True, capture_output=True)


def fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` with a file until ``leave`` bytes are free; the filler's path."""
    filler = disk / "filler"
    with filler.open("wb") as f:
        f.write(b"\0" * (shutil.disk_usage(disk).free - leave))
    assert shutil.disk_usage(disk).free <= leave
    return filler


def leftovers(directory: Path) -> list[str]:
    """Every file under ``directory`` that is not the manifest's lock file."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file() and p.suffix != ".lock")


def _run_extract(src: str, out: str):
    task = stage_task("extract", [src], out, ExtractConfig()).with_options(retry_delay_seconds=0)
    return task([src], out, ExtractConfig(), None, return_state=True)


@pytest.mark.timeout(300)
def test_extract_on_a_full_disk_fails_fast_and_completes_after_space_is_freed(
    shared_data: Path, small_disk: Path, tmp_path: Path
) -> None:
    src = str(shared_data / "warc/dolma/sample-0001.warc.gz")
    reference = _run_extract(src, str(tmp_path / "normal" / "dolma.parquet"))
    assert reference.is_completed()

    out = small_disk / "extract" / "dolma.parquet"
    filler = fill(small_disk, LEFT_FREE)
    state = _run_extract(src, str(out))
    assert state.is_failed()
    assert RETRY_OPTIONS["retries"] > 0 and _run_count(state) == 1  # deterministic: not retried
    with pytest.raises(DiskFullError) as err:
        state.result()
    message = str(err.value)
    assert message.startswith(f"{out}: No space left on device (") and "bytes free there" in message, message
    assert err.value.filename == str(out) and err.value.free_bytes is not None
    assert 0 < err.value.written_bytes <= LEFT_FREE and "a partial file of" in message  # what fitted, then removed
    assert leftovers(out.parent) == []  # no shard, no tmp file, no manifest entry or stats file
    assert not Manifest(out.parent).valid(out)

    filler.unlink()
    rerun = _run_extract(src, str(out))
    assert rerun.is_completed(), rerun
    assert rerun.result().docs_kept == reference.result().docs_kept > 0
    assert pq.read_table(out).equals(pq.read_table(tmp_path / "normal" / "dolma.parquet"))
    assert Manifest(out.parent).valid(out)
    assert leftovers(out.parent) == ["_manifest.json", "_stats/dolma.json", "dolma.parquet"]


def test_write_table_and_atomic_write_bytes_on_a_full_disk(small_disk: Path) -> None:
    """The two whole-file writers: DiskFullError naming the path, no tmp file, an existing file left as it was."""
    table = pa.table({"id": [str(i) for i in range(2000)], "text": [os.urandom(64).hex() for _ in range(2000)]})
    target = small_disk / "stage" / "shard.parquet"
    write_table(table.slice(0, 10), target)  # an earlier version of the shard, replaced by the failing write
    before = target.read_bytes()
    fill(small_disk, LEFT_FREE)

    with pytest.raises(DiskFullError, match=f"^{target}: No space left on device"):
        write_table(table, target)
    assert target.read_bytes() == before
    assert leftovers(target.parent) == ["shard.parquet"]

    manifest = small_disk / "stage" / "_manifest.json"
    with pytest.raises(DiskFullError, match=f"^{manifest}: No space left on device") as err:
        atomic_write_bytes(manifest, b"x" * (4 * LEFT_FREE))
    assert err.value.free_bytes is not None and err.value.free_bytes <= LEFT_FREE + 4096
    assert not manifest.exists() and leftovers(target.parent) == ["shard.parquet"]


@pytest.mark.timeout(300)
def test_tokenize_on_a_full_disk_names_the_file_and_leaves_no_partial_shard(small_disk: Path, tmp_path: Path) -> None:
    """The tokenize stage's own writers (the tokenizer, the .bin token shards with their Parquet side files):
    DiskFullError naming a file of the output directory, no ``.tmp-`` file left; after space is freed the rerun
    writes what a run on a roomy disk writes."""
    from pipelines.config import TokenizeConfig
    from pipelines.token_shards import write_token_bin
    from pipelines.tokenizer import run_tokenize
    from tests.pipelines.test_train import make_documents

    docs = make_documents(3000, seed=3)
    src = tmp_path / "docs.parquet"
    write_table(pa.table({"id": [f"d{i}" for i in range(len(docs))], "text": docs}), src)
    cfg = TokenizeConfig(vocab_size=400, shard_tokens=1_000_000, parquet_tokens=False)  # one ~300 kB train .bin
    reference = run_tokenize([str(src)], str(tmp_path / "normal"), cfg)

    shard = small_disk / "single" / "train_00000.bin"
    shard.parent.mkdir()
    filler = fill(small_disk, LEFT_FREE)
    with pytest.raises(DiskFullError, match=f"^{shard}: No space left on device"):
        write_token_bin(shard, [i % 400 for i in range(20_000)], vocab_size=400)
    assert leftovers(shard.parent) == []
    filler.unlink()

    out = small_disk / "tokens"
    # room for everything but the .bin token shards, and 64 kB of those: the disk fills up in the middle of one
    sizes = {
        p.relative_to(tmp_path / "normal"): p.stat().st_size for p in (tmp_path / "normal").rglob("*") if p.is_file()
    }
    bins = sum(n for p, n in sizes.items() if p.suffix == ".bin")
    filler = fill(small_disk, sum(sizes.values()) - bins + (64 << 10))
    with pytest.raises(DiskFullError) as err:
        run_tokenize([str(src)], str(out), cfg)
    failed = Path(err.value.filename)
    assert failed.parent == out and failed.suffix == ".bin", err.value  # a token shard, named
    assert "No space left on device" in str(err.value), err.value
    assert not [p for p in leftovers(out) if ".tmp-" in p], leftovers(out)
    assert not (out / "meta.json").exists()  # the output never counts as done
    filler.unlink()
    rerun = run_tokenize([str(src)], str(out), cfg)
    assert rerun.tokens == reference.tokens > 0
    for name in sorted(p.name for p in (tmp_path / "normal").glob("*.bin")):
        assert (out / name).read_bytes() == (tmp_path / "normal" / name).read_bytes(), name
