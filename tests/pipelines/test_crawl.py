"""Crawl listings: deterministic slices of a warc.paths.gz served over HTTP and S3; crawl ids; the crawl config.

pytest tests/pipelines/test_crawl.py
"""

from __future__ import annotations

import gzip

import pytest
from pydantic import ValidationError

from pipelines.config import CrawlConfig, PipelineConfig, load_config
from pipelines.crawl import CrawlIdError, crawl_warc_paths, validate_crawl_id
from tests.local_servers import RangeServer, moto_s3

CRAWL = "CC-MAIN-2024-10"
LISTING = f"/crawl-data/{CRAWL}/warc.paths.gz"
# The shape of a real listing entry; 20 of them stand for a crawl's ~90,000.
PATHS = [
    f"crawl-data/{CRAWL}/segments/1707947473347.{i // 10}/warc/CC-MAIN-20240220211055-20240221001055-{i:05d}.warc.gz"
    for i in range(20)
]


def listing(paths: list[str]) -> bytes:
    return gzip.compress(("\n".join(paths) + "\n").encode())


def test_slices_the_listing_deterministically() -> None:
    with RangeServer({LISTING: listing(PATHS)}) as srv:
        base = srv.url("/")
        assert crawl_warc_paths(CRAWL, max_warcs=2, base_url=base) == [base + PATHS[0], base + PATHS[1]]
        picked = crawl_warc_paths(CRAWL, max_warcs=3, offset=2, stride=5, base_url=base.rstrip("/"))
        assert picked == [base + PATHS[i] for i in (2, 7, 12)]
        assert crawl_warc_paths(CRAWL, max_warcs=3, offset=2, stride=5, base_url=base) == picked  # same again
        # Asking for more than the listing has from offset 15 gives what there is.
        assert crawl_warc_paths(CRAWL, max_warcs=50, offset=15, base_url=base) == [base + p for p in PATHS[15:]]


def test_listing_errors_name_the_url() -> None:
    with RangeServer({LISTING: listing(PATHS), "/crawl-data/CC-MAIN-2024-18/warc.paths.gz": b"not gzip"}) as srv:
        base = srv.url("/")
        with pytest.raises(FileNotFoundError, match=f"{base}crawl-data/CC-MAIN-2023-50/warc.paths.gz"):
            crawl_warc_paths("CC-MAIN-2023-50", max_warcs=1, base_url=base)
        with pytest.raises(ValueError, match=r"offset 20 selects no WARC file \(the listing has 20 entries\)"):
            crawl_warc_paths(CRAWL, max_warcs=1, offset=20, base_url=base)
        with pytest.raises(ValueError, match="CC-MAIN-2024-18/warc.paths.gz: not a gzipped list"):
            crawl_warc_paths("CC-MAIN-2024-18", max_warcs=1, base_url=base)


def test_s3_base_gives_s3_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    with moto_s3() as (endpoint, s3):
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        s3.create_bucket(Bucket="commoncrawl")
        s3.put_object(Bucket="commoncrawl", Key=LISTING.lstrip("/"), Body=listing(PATHS), ACL="public-read")
        got = crawl_warc_paths(CRAWL, max_warcs=2, offset=1, stride=2, base_url="s3://commoncrawl/")
        assert got == [f"s3://commoncrawl/{PATHS[1]}", f"s3://commoncrawl/{PATHS[3]}"]


BAD_IDS = ["CC-MAIN-2024-1", "CC-MAIN-24-10", "cc-main-2024-10", "CC-MAIN-2024-54", "CC-MAIN-2024-00", "CC-NEWS-24-10"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_invalid_crawl_ids_are_rejected_by_name(bad: str) -> None:
    with pytest.raises(CrawlIdError, match=f"invalid crawl id '{bad}': expected CC-MAIN-YYYY-WW"):
        validate_crawl_id(bad)
    with pytest.raises(ValidationError, match="crawl.crawl_id"):
        load_config(PipelineConfig, None, [f"crawl.crawl_id={bad}"])


def test_crawl_config_sets_the_output_crawl_id() -> None:
    assert validate_crawl_id("CC-MAIN-2013-20") == "CC-MAIN-2013-20"
    cfg = load_config(PipelineConfig, None, [f"crawl.crawl_id={CRAWL}", "crawl.max_warcs=4"])
    assert cfg.crawl == CrawlConfig(crawl_id=CRAWL, max_warcs=4) and cfg.extract.crawl_id == CRAWL
    assert PipelineConfig.model_validate(cfg.model_dump()) == cfg  # round-trips (a Prefect parameter)
    assert PipelineConfig().crawl is None and PipelineConfig().extract.crawl_id == "sample"
    with pytest.raises(ValidationError, match="either inputs or crawl"):
        load_config(PipelineConfig, None, [f"crawl.crawl_id={CRAWL}", "inputs=[a.warc.gz]"])
    with pytest.raises(ValidationError, match="extract.crawl_id 'CC-MAIN-2023-50' differs"):
        load_config(PipelineConfig, None, [f"crawl.crawl_id={CRAWL}", "extract.crawl_id=CC-MAIN-2023-50"])
    with pytest.raises(ValidationError, match="max_warcs"):
        CrawlConfig(crawl_id=CRAWL, max_warcs=0)
