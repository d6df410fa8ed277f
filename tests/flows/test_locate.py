"""`lmpipe locate SHARD OFFSET`: a random token of a real WARC's token shards back to its WARC record.

Real chain: dolma/sample-0001.warc.gz (15 pages, wget 2024) → extract → tokenize → locate → the record at the printed
warc_path / warc_offset, read with warcio, is the document the token came from.

    .venv/bin/pytest -q tests/flows/test_locate.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from typer.testing import CliRunner
from warcio.archiveiterator import ArchiveIterator

from flows.cli import app
from pipelines.config import ExtractConfig, TokenizeConfig
from pipelines.extract import run_extract
from pipelines.token_shards import read_token_bin
from pipelines.tokenizer import run_tokenize


def test_locate_maps_a_token_to_its_warc_record(shared_data: Path, tmp_path: Path) -> None:
    warc = shared_data / "warc" / "dolma" / "sample-0001.warc.gz"
    run_extract([str(warc)], str(tmp_path / "extract.parquet"), ExtractConfig())
    docs = {r["id"]: r for r in pq.read_table(tmp_path / "extract.parquet").to_pylist()}
    out = tmp_path / "tokens"
    run_tokenize([str(tmp_path / "extract.parquet")], str(out), TokenizeConfig(vocab_size=300, shard_tokens=2048))
    rng = np.random.default_rng(11)
    shards = sorted(out.glob("train_*.bin"))
    assert len(shards) >= 3
    for shard in rng.choice(shards, size=3, replace=False):
        offset = int(rng.integers(0, len(read_token_bin(shard))))
        result = CliRunner().invoke(app, ["locate", str(shard), str(offset)])
        assert result.exit_code == 0, result.output
        found = dict(line.split(": ", 1) for line in result.output.splitlines() if ": " in line)
        doc = docs[found["id"]]
        assert found["url"] == doc["url"] and found["source"] == str((tmp_path / "extract.parquet").resolve())
        # follow the chain to the WARC file: the record at warc_offset is this document's response record
        with open(found["warc_path"], "rb") as f:
            f.seek(int(found["warc_offset"]))
            record = next(iter(ArchiveIterator(f)))
        assert record.rec_headers.get_header("WARC-Record-ID") == found["id"]
        assert record.rec_headers.get_header("WARC-Target-URI") == doc["url"]

    bad = CliRunner().invoke(app, ["locate", str(shards[0]), "999999999"])
    assert bad.exit_code == 1 and "outside" in bad.output
