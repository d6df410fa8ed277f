"""Real documents for the dedup benchmarks, controlled edits, and the RESULTS.md section writer they share.

    from bench.dedup_corpus import real_documents
    docs = real_documents()   # 1,116 texts from ../shared/data

The documents: the 181 AEB gold article bodies, the same pages as five published extractors saw them (905), and 30
dolma-cc Common Crawl documents. They are read from ../shared/data, never copied into the repository.
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

from bench.markdown import replace_section

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
_VOCAB = "data model time system people world report study market water energy policy city music game".split()


def real_documents(shared: Path = SHARED_DATA, *, gold_only: bool = False) -> list[str]:
    """AEB gold texts (+ extractor outputs and dolma-cc unless ``gold_only``)."""
    if not shared.is_dir():
        raise SystemExit(f"real evaluation data not found at {shared} (../shared/data beside the checkout)")
    aeb = shared / "extraction/aeb"
    docs = [g["articleBody"] for g in json.loads((aeb / "ground-truth.json").read_text()).values()]
    if gold_only:
        return docs
    for f in sorted((aeb / "reference-outputs").glob("*.json")):
        data = json.loads(f.read_text())
        pages = next((v for v in data.values() if isinstance(v, dict) and len(v) > 100), data)
        docs += [p["articleBody"] for p in pages.values()]
    for f in sorted((shared / "text/dolma-cc").glob("*.gz")):
        with gzip.open(f, "rt") as fh:
            docs += [json.loads(line)["text"] for line in fh if line.strip()]
    return docs


def edit(text: str, rate: float, rng: random.Random) -> str:
    """Each word is, with probability ``rate``, replaced, deleted, or followed by an inserted word (1/3 each)."""
    out = []
    for w in text.split():
        if rng.random() >= rate:
            out.append(w)
            continue
        op = rng.randrange(3)
        if op == 0:
            out.append(rng.choice(_VOCAB))
        elif op == 2:
            out += [w, rng.choice(_VOCAB)]
    return " ".join(out)


def write_section(results: Path, name: str, markdown: str) -> None:
    """Replace (or append) the section between ``<!-- dedup:NAME -->`` markers in RESULTS.md."""
    begin, end = f"<!-- dedup:{name} -->", f"<!-- /dedup:{name} -->"
    replace_section(results, f"{begin}\n{markdown.rstrip()}\n{end}\n", begin, end)
