"""lmpipe's filter stage decides exactly as datatrove's own filter objects with the pinned FineWeb parameters.

Real pages (extracted from ../shared/data/warc/aeb-articles.warc.gz, dolma's Common Crawl text) and edits of them that
trip each family's rules (repeated paragraphs, bullet lists, ellipses, hashtags, lost punctuation, short lines) go
through datatrove's URLFilter, GopherRepetitionFilter, GopherQualityFilter, C4QualityFilter and FineWebQualityFilter
one after the other, and through ``run_filter`` with every language kept: the same documents must be dropped for the
same reasons, and the kept texts (C4's rewrite) must be identical.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tldextract
from datatrove.data import Document
from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
    URLFilter,
)
from datatrove.pipeline.filters.base_filter import get_filter_result

from pipelines.config import ExtractConfig, FilterConfig
from pipelines.extract import run_extract
from pipelines.filters import run_filter


def edits(text: str) -> dict[str, str]:
    """Variants of a real page that exercise the rules of every family."""
    lines = [line for line in text.split("\n") if line.strip()]
    words = text.split()
    return {
        "repeated": text + "\n\n" + text,
        "bullets": "\n".join("- " + line for line in lines),
        "ellipsis": "\n".join(line.rstrip(".") + "..." for line in lines),
        "hashtags": " ".join("#" + w if i % 6 == 0 else w for i, w in enumerate(words)),
        "no_punct": "\n".join(re.sub(r"[.!?\"']+$", "", line) for line in lines),
        "short_lines": "\n".join(" ".join(words[i : i + 3]) for i in range(0, len(words), 3)),
        "head": "\n".join(lines[:3]),
        "javascript": "\n".join([lines[0], "Please enable JavaScript to see the comments below.", *lines[1:]]),
    }


@pytest.fixture(scope="module")
def documents(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    tmp = tmp_path_factory.mktemp("parity")
    aeb = shared_data / "warc" / "aeb-articles.warc.gz"
    run_extract([str(aeb)], str(tmp / "aeb.parquet"), ExtractConfig(), limit=60)
    pages = pq.read_table(tmp / "aeb.parquet", columns=["id", "url", "text"]).to_pylist()
    for f in sorted((shared_data / "text" / "dolma-cc").glob("*.gz")):
        for line in gzip.open(f, "rt"):
            d = json.loads(line)
            pages.append({"id": d["id"], "url": d["id"], "text": d["text"]})
    docs = list(pages)
    for page in pages[::3]:
        docs += [{"id": f"{page['id']}#{k}", "url": page["url"], "text": t} for k, t in edits(page["text"]).items()]
    # URLs the blocklists know: a banned word, two soft-banned words, a banned sub-word
    docs += [
        {"id": "url-hard", "url": "https://example.com/porn/page.html", "text": pages[0]["text"]},
        {"id": "url-soft", "url": "https://example.com/sexy/nude/x.html", "text": pages[1]["text"]},
        {"id": "url-subword", "url": "https://www.xvideos-clips.net/a.html", "text": pages[2]["text"]},
    ]
    return docs


def datatrove_reasons(docs: list[dict], cfg: FilterConfig) -> dict[str, tuple[str | None, str]]:
    """id -> (drop reason in lmpipe's naming, text after the chain), by datatrove's filter objects."""
    url = URLFilter(soft_word_threshold=cfg.url.soft_word_threshold)
    url.tldextractor = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)

    # lmpipe's config fields carry datatrove's argument names: every pinned value goes to datatrove as it is
    def args(family: object) -> dict:
        return family.model_dump(exclude={"enabled"})

    chain = [
        ("url_", url),
        ("gopher_rep_", GopherRepetitionFilter(**args(cfg.gopher_repetition))),
        ("", GopherQualityFilter(**args(cfg.gopher_quality))),
        ("c4_", C4QualityFilter(**args(cfg.c4))),
        ("fineweb_", FineWebQualityFilter(**args(cfg.fineweb))),
    ]
    out = {}
    for d in docs:
        doc = Document(text=d["text"], id=d["id"], metadata={"url": d["url"]})
        reason = None
        for prefix, f in chain:
            kept, why = get_filter_result(f.filter(doc))
            if not kept:
                reason = prefix + why
                break
        out[d["id"]] = (reason, doc.text)
    return out


@pytest.mark.slow
def test_decisions_and_texts_equal_datatrove(documents: list[dict], tmp_path: Path) -> None:
    # every language kept at any score: the comparison is about the URL and quality families
    cfg = FilterConfig(language={"languages": ["all"], "threshold": 0.0})
    src = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(documents), src)
    run_filter([str(src)], str(tmp_path / "out" / "in.parquet"), cfg.model_copy(update={"annotate_only": True}))
    ours = pq.read_table(tmp_path / "out" / "in.parquet").to_pylist()
    theirs = datatrove_reasons(documents, cfg)

    mismatches = [
        (r["id"], r["drop_reason"], theirs[r["id"]][0]) for r in ours if r["drop_reason"] != theirs[r["id"]][0]
    ]
    assert not mismatches, mismatches[:10]
    kept = [r for r in ours if r["drop_reason"] is None]
    assert all(r["text"] == theirs[r["id"]][1] for r in kept)  # C4's rewrite, as FineWeb keeps it

    reasons = Counter(r["drop_reason"] for r in ours)
    families = {(r or "kept").split("_")[0] for r in reasons}
    # the comparison is not vacuous: documents kept and dropped by every family
    assert {"kept", "url", "gopher", "c4", "fineweb"} <= families, reasons
    assert len(reasons) >= 10, reasons
