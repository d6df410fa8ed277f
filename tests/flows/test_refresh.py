"""`lmpipe refresh` on a local Common Crawl mirror: a warc.paths.gz and two real WARC files served over HTTP.

pytest tests/flows/test_refresh.py
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from flows.cli import app
from flows.refresh import resolve_inputs
from pipelines.config import CrawlConfig, ExtractConfig, PipelineConfig
from pipelines.extract import run_extract
from tests.local_servers import RangeServer

CRAWL = "CC-MAIN-2024-10"
SEGMENT = f"crawl-data/{CRAWL}/segments/1707947473347.0/warc/"
WARCS = {  # listing entry -> the real WARC in shared/data served under it
    SEGMENT + "CC-MAIN-20240220211055-20240221001055-00000.warc.gz": "warc/dolma/sample-0001.warc.gz",
    SEGMENT + "CC-MAIN-20240220211055-20240221001055-00001.warc.gz": "warc/resiliparse/warcfile.warc.gz",
    SEGMENT + "CC-MAIN-20240220211055-20240221001055-00002.warc.gz": "warc/cc-whirlwind/whirlwind.warc.gz",
}


def mirror(shared_data: Path) -> RangeServer:
    files: dict[str, Path | bytes] = {"/" + entry: shared_data / local for entry, local in WARCS.items()}
    files[f"/crawl-data/{CRAWL}/warc.paths.gz"] = gzip.compress(("\n".join(WARCS) + "\n").encode())
    return RangeServer(files)


def test_resolve_inputs_takes_the_crawl_slice(shared_data: Path) -> None:
    with mirror(shared_data) as srv:
        cfg = PipelineConfig(crawl=CrawlConfig(crawl_id=CRAWL, max_warcs=2, offset=1, base_url=srv.url("/")))
        entries = list(WARCS)
        assert resolve_inputs(cfg) == [srv.url("/") + entries[1], srv.url("/") + entries[2]]
        assert cfg.extract.crawl_id == CRAWL


def test_refresh_rejects_a_bad_crawl_id_in_one_line() -> None:
    result = CliRunner().invoke(app, ["refresh", "--crawl", "CC-MAIN-2024-99", "--max-warcs", "1"])
    assert result.exit_code == 1
    assert "error:" in result.output and "invalid crawl id 'CC-MAIN-2024-99'" in result.output


def test_refresh_cli_processes_the_first_warcs_of_a_crawl(shared_data: Path, tmp_path: Path) -> None:
    data_root = tmp_path / "data"
    with mirror(shared_data) as srv:
        base = srv.url("/")
        env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "COLUMNS": "200"}
        cmd = [sys.executable, "-m", "flows.cli", "refresh", "--crawl", CRAWL, "--max-warcs", "2"]
        cmd += ["--base-url", base, "--data-root", str(data_root)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        fetched = {path for method, path, _ in srv.requests if method == "GET"}
    entries = list(WARCS)[:2]
    assert fetched == {f"/crawl-data/{CRAWL}/warc.paths.gz"} | {"/" + e for e in entries}  # not the third WARC

    # One extract shard per WARC under {data_root}/{crawl_id}/extract/, the same documents as the local files give.
    extract_dir = data_root / CRAWL / "extract"
    shards = sorted(p.name for p in extract_dir.glob("*.parquet"))
    assert shards == [Path(e).name.removesuffix(".warc.gz") + ".parquet" for e in entries]
    docs_in = 0
    for entry in entries:
        remote = pq.read_table(extract_dir / (Path(entry).name.removesuffix(".warc.gz") + ".parquet")).to_pylist()
        local_out = tmp_path / "local" / "x.parquet"
        stats = run_extract([str(shared_data / WARCS[entry])], str(local_out), ExtractConfig(crawl_id=CRAWL))
        local = pq.read_table(local_out).to_pylist()
        assert [(r["id"], r["text"]) for r in remote] == [(r["id"], r["text"]) for r in local] and remote
        assert {r["crawl_id"] for r in remote} == {CRAWL} and {r["warc_path"] for r in remote} == {base + entry}
        docs_in += stats.docs_in
        saved = json.loads((extract_dir / "_stats" / (Path(entry).name.removesuffix(".warc.gz") + ".json")).read_text())
        assert saved["docs_in"] == stats.docs_in and saved["docs_kept"] == len(remote)

    # The funnel is printed, starting from every response record of both files; the later stages ran too.
    assert "Funnel (documents)" in proc.stdout
    extract_row = next(line for line in proc.stdout.splitlines() if line.startswith("│ extract"))
    assert extract_row.split("│")[2].strip() == str(docs_in)
    assert any(line.startswith("│ tokenize") for line in proc.stdout.splitlines())
    assert (data_root / CRAWL / "tokens" / "meta.json").exists()


def test_latest_takes_the_newest_crawl_not_yet_refreshed(shared_data: Path, tmp_path: Path) -> None:
    """The scheduled refresh (crawl_id=latest): newest crawl first, then the next older one, then nothing new."""
    from flows.refresh import data_refresh
    from pipelines.crawl import refresh_marker

    crawls = {"CC-MAIN-2024-22": "warc/resiliparse/warcfile.warc.gz", CRAWL: "warc/dolma/sample-0001.warc.gz"}
    files: dict[str, Path | bytes] = {
        "/collinfo.json": json.dumps([{"id": c, "name": f"{c} crawl"} for c in [CRAWL, "CC-MAIN-2024-22"]]).encode()
    }
    for crawl, local in crawls.items():
        entry = f"crawl-data/{crawl}/segments/1/warc/{crawl}-00000.warc.gz"
        files[f"/crawl-data/{crawl}/warc.paths.gz"] = gzip.compress(entry.encode() + b"\n")
        files["/" + entry] = shared_data / local
    root = tmp_path / "data"
    with RangeServer(files) as srv:
        crawl_cfg = {
            "crawl_id": "latest",
            "max_warcs": 1,
            "base_url": srv.url("/"),
            "index_url": srv.url("/collinfo.json"),
        }
        cfg = PipelineConfig(data_root=str(root), crawl=crawl_cfg, tokenize={"vocab_size": 512})
        assert cfg.extract.crawl_id == "latest"
        chosen = []
        for _ in range(3):
            data_refresh(cfg)
            done = sorted(p.parent.name for p in root.glob(f"*/{refresh_marker('', 'x').name}"))
            chosen.append(done)
        fetched = [path for method, path, _ in srv.requests if method == "GET" and path.endswith(".warc.gz")]
    assert chosen == [["CC-MAIN-2024-22"], [CRAWL, "CC-MAIN-2024-22"], [CRAWL, "CC-MAIN-2024-22"]]
    # The third run found both crawls done and re-ran the newest: all cache hits, no WARC fetched again.
    assert len(fetched) == 2
    assert (root / "CC-MAIN-2024-22" / "extract").is_dir() and (root / CRAWL / "tokens" / "meta.json").is_file()
