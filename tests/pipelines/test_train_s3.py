"""Training from ``s3://``: a real tokenize output uploaded to a local S3 server (moto), staged into a local cache
with each file verified (sha256 from meta.json / the manifest, else the listed size), downloaded only once, and
trained on with the same losses as the local original.

pytest tests/pipelines/test_train_s3.py
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.config import TokenizeConfig
from pipelines.tokenizer import TokenShardError, run_tokenize
from pipelines.train import run_train
from pipelines.train.staging import INDEX_FILE, ChecksumMismatchError, stage_token_dir
from tests.local_servers import moto_s3
from tests.pipelines.test_train import make_documents, metrics_rows, small_config

BUCKET = "lmpipe-data"
STAGED = {"tokenizer.json", "meta.json", "_manifest.json", "train_00000.bin", "train_00001.bin", "val_00000.bin"}


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tokenize stage's own output (meta.json, _manifest.json, lineage) for 480 templated documents: two train
    shards and one val shard."""
    tmp = tmp_path_factory.mktemp("tokenize")
    docs = make_documents(480, seed=1)
    table = pa.table({"id": [f"doc-{i}" for i in range(len(docs))], "text": docs})
    pq.write_table(table, tmp / "docs.parquet")
    cfg = TokenizeConfig(vocab_size=500, val_fraction=0.15, shard_tokens=12_000)
    run_tokenize([str(tmp / "docs.parquet")], str(tmp / "tokens"), cfg)
    out = tmp / "tokens"
    assert {p.name for p in out.glob("*_*.bin")} == {n for n in STAGED if n.endswith(".bin")}
    return out


@pytest.fixture(scope="module")
def s3(tokens: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A moto S3 server holding ``tokens`` under s3://lmpipe-data/tokens; the standard AWS environment points at it
    (signed requests, LMPIPE_S3_ANON=0), for this process and the training subprocesses; staged copies that no test
    places itself go to a throwaway LMPIPE_TOKEN_CACHE."""
    with moto_s3() as (endpoint, client), pytest.MonkeyPatch.context() as env:
        for name, value in {
            "AWS_ENDPOINT_URL": endpoint, "LMPIPE_S3_ANON": "0", "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
            "LMPIPE_TOKEN_CACHE": str(tmp_path_factory.mktemp("token-cache")),
        }.items():  # fmt: skip
            env.setenv(name, value)
        client.create_bucket(Bucket=BUCKET)
        upload(client, tokens, "tokens")
        yield client


def upload(client: object, directory: Path, prefix: str, names: set[str] | None = None) -> str:
    """Every file of ``directory`` (or only ``names``) under s3://BUCKET/PREFIX; the URL."""
    for path in sorted(directory.iterdir()):
        if path.is_file() and (names is None or path.name in names):
            client.put_object(Bucket=BUCKET, Key=f"{prefix}/{path.name}", Body=path.read_bytes())
    return f"s3://{BUCKET}/{prefix}"


def file_states(directory: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime_ns) of every file: a download (a new file renamed into place) changes both."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in directory.iterdir() if p.is_file()}


def test_stage_copies_verified_files_once(s3: object, tokens: Path, tmp_path: Path) -> None:
    assert stage_token_dir(str(tokens), tmp_path) == tokens  # a local path is used in place

    staged = stage_token_dir("s3://lmpipe-data/tokens/", tmp_path / "cache")
    assert staged.parent == tmp_path / "cache" and staged != tokens
    names = {p.name for p in staged.iterdir() if not p.name.startswith(".")}
    assert names == STAGED | {INDEX_FILE}  # no lineage / Parquet token shards: training does not read them
    for name in STAGED:
        assert (staged / name).read_bytes() == (tokens / name).read_bytes(), name
    meta = json.loads((staged / "meta.json").read_text())
    index = json.loads((staged / INDEX_FILE).read_text())["files"]
    assert {s["file"]: s["sha256"] for s in meta["shards"]} == {n: index[n]["sha256"] for n in index if ".bin" in n}

    before = file_states(staged)
    assert stage_token_dir("s3://lmpipe-data/tokens", tmp_path / "cache") == staged  # same cache with or without "/"
    assert file_states(staged) == before  # nothing downloaded, nothing rewritten


def test_corrupted_object_is_rejected_naming_its_url(s3: object, tokens: Path, tmp_path: Path) -> None:
    url = upload(s3, tokens, "corrupt", STAGED)
    staged = stage_token_dir(url, tmp_path)
    good = (tokens / "train_00001.bin").read_bytes()
    bad = bytearray(good)
    bad[-1] ^= 0xFF  # same size: only the sha256 recorded in meta.json can tell
    s3.put_object(Bucket=BUCKET, Key="corrupt/train_00001.bin", Body=bytes(bad))

    with pytest.raises(ChecksumMismatchError, match=r"s3://lmpipe-data/corrupt/train_00001\.bin: sha256") as err:
        stage_token_dir(url, tmp_path)
    assert isinstance(err.value, TokenShardError)  # a bad-input error: not retried
    assert "meta.json" in str(err.value)
    assert (staged / "train_00001.bin").read_bytes() == good  # the verified copy stays; no partial file beside it
    assert not [p for p in staged.iterdir() if ".tmp-" in p.name]

    s3.put_object(Bucket=BUCKET, Key="corrupt/train_00001.bin", Body=good)  # repaired: stages again
    assert (stage_token_dir(url, tmp_path) / "train_00001.bin").read_bytes() == good


def test_without_records_sizes_are_checked_and_the_cache_follows_the_source(
    s3: object, tokens: Path, tmp_path: Path
) -> None:
    """No meta.json or manifest (token shards written by another tool): changed objects are downloaded again, by
    their ETag, and a shard removed from the source leaves the cache too."""
    url = upload(s3, tokens, "bare", {"tokenizer.json", "train_00000.bin", "train_00001.bin", "val_00000.bin"})
    staged = stage_token_dir(url, tmp_path)
    assert {p.name for p in staged.glob("*_*.bin")} == {"train_00000.bin", "train_00001.bin", "val_00000.bin"}
    before = file_states(staged)

    replacement = (tokens / "val_00000.bin").read_bytes()
    s3.put_object(Bucket=BUCKET, Key="bare/train_00001.bin", Body=replacement)
    s3.delete_object(Bucket=BUCKET, Key="bare/val_00000.bin")
    assert stage_token_dir(url, tmp_path) == staged
    after = file_states(staged)
    assert (staged / "train_00001.bin").read_bytes() == replacement and after["train_00001.bin"] != before[
        "train_00001.bin"
    ]
    assert after["train_00000.bin"] == before["train_00000.bin"] and "val_00000.bin" not in after


def test_missing_tokenizer_or_train_shards_names_the_url(s3: object, tokens: Path, tmp_path: Path) -> None:
    url = upload(s3, tokens, "no-tokenizer", {"train_00000.bin", "val_00000.bin"})
    with pytest.raises(FileNotFoundError, match="s3://lmpipe-data/no-tokenizer: expected tokenizer.json"):
        stage_token_dir(url, tmp_path)
    url = upload(s3, tokens, "no-train", {"tokenizer.json", "val_00000.bin"})
    with pytest.raises(FileNotFoundError, match="s3://lmpipe-data/no-train: expected .*train_"):
        stage_token_dir(url, tmp_path)
    with pytest.raises(FileNotFoundError, match="s3://lmpipe-data/nothing-here"):
        stage_token_dir("s3://lmpipe-data/nothing-here", tmp_path)


def test_training_from_s3_gives_the_losses_of_the_local_directory(s3: object, tokens: Path, tmp_path: Path) -> None:
    cfg = small_config(max_steps=6, val_every=3, warmup_steps=2, batch_size=4, val_batches=2)
    remote = run_train("s3://lmpipe-data/tokens", tmp_path / "from-s3", cfg)  # staged into LMPIPE_TOKEN_CACHE
    local = run_train(tokens, tmp_path / "local", cfg)

    for key in ("final_train_loss", "final_val_loss"):
        assert remote.extra[key] == pytest.approx(local.extra[key], abs=1e-6), key
    rows = list(zip(metrics_rows(tmp_path / "from-s3"), metrics_rows(tmp_path / "local"), strict=True))
    assert sum(1 for a, _ in rows if a["val_loss"]) == 2
    for a, b in rows:
        assert a["step"] == b["step"]
        for key in ("train_loss", "val_loss"):
            assert (a[key] == b[key] == "") or float(a[key]) == pytest.approx(float(b[key]), abs=1e-6), (key, a, b)
