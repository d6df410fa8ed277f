"""PII throughput on real extracted pages: lmpipe's run_pii vs presidio's AnalyzerEngine per document, one run.

    .venv/bin/python bench/pii_throughput.py --write bench/RESULTS.md

Workload: every HTML page lmpipe's extract stage gets out of the shared WARC files (../shared/data/warc/**.warc.gz,
``run_extract`` with default settings, as ``lmpipe task extract --direct`` runs it), one Parquet shard. Peers, all
with the same presidio recognizer objects and the default PIIConfig (entities, phone regions, min_score):

- lmpipe: ``run_pii`` on the shard (Parquet read + write included), a cold scrubber each round (no cached windows);
- presidio-analyzer: ``AnalyzerEngine(nlp_engine=NoOpNlpEngine, registry=<the same recognizers>).analyze`` once per
  document, ``score_threshold=min_score`` (presidio's documented regex-only setup: no spaCy model);
- presidio-recognizers: the same recognizers called directly on each whole document, lmpipe's policy on top
  (``find_pii(prefilter=False)``): what the candidate filter and windows save, without AnalyzerEngine's overhead;
- datatrove-pii: datatrove's PIIFormatter (regex e-mails and public IPs only), for scale.

Each round runs every peer once, in a rotated order, in this one process (single-threaded); CPU seconds come from
time.process_time, so docs/s/core = documents / CPU s. The table gives each peer's median and its per-round ratio
to the AnalyzerEngine run of the same round. ``spans`` counts findings (AnalyzerEngine's after lmpipe's policy, so
the two are comparable); ``same docs`` is the share of documents where a peer's spans equal lmpipe's. Benchmarks are
not tests: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere: bench/ is not a package

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from bench.markdown import replace_section  # noqa: E402
from pipelines import pii  # noqa: E402
from pipelines.config import ExtractConfig, PIIConfig  # noqa: E402
from pipelines.extract import run_extract  # noqa: E402

SHARED_WARC = Path(__file__).resolve().parents[2] / "shared" / "data" / "warc"
SECTION_START = "<!-- pii_throughput:start -->"
SECTION_END = "<!-- pii_throughput:end -->"
WARM_UP = "Mail a.b@example.org, call +1 (415) 555-0132, 8.8.8.8, 4111 1111 1111 1111, DE89370400440532013000."


def extract_pages(workdir: Path) -> Path:
    """Every page of the shared WARCs, extracted by lmpipe's extract stage, as one shard; returns its path."""
    tables = []
    for i, warc in enumerate(sorted(SHARED_WARC.rglob("*.warc.gz"))):
        out = workdir / "extract" / f"{i:02d}.parquet"
        stats = run_extract([str(warc)], str(out), ExtractConfig())
        if stats.docs_kept:
            tables.append(pq.read_table(out, columns=["id", "url", "text"]))
    shard = workdir / "pages.parquet"
    pq.write_table(pa.concat_tables(tables), shard)
    return shard


def _spans(found: list[list[pii.Span]]) -> list[set[tuple[int, int, str]]]:
    return [{(s.start, s.end, s.entity) for s in spans} for spans in found]


def run_lmpipe(shard: Path, out: Path, cfg: PIIConfig) -> list[set[tuple[int, int, str]]]:
    pii._scrubber.cache_clear()  # cold: no window cached by an earlier round
    run_pii_out = out / "pii" / "pages.parquet"
    pii.run_pii([str(shard)], str(run_pii_out), cfg)
    rows = pq.read_table(run_pii_out, columns=["pii_spans"]).column(0).to_pylist()
    return [{(s["start"], s["end"], s["entity"]) for s in spans} for spans in rows]


def analyzer_engine(cfg: PIIConfig) -> Callable[[list[str]], list[set[tuple[int, int, str]]]]:
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NoOpNlpEngine

    from pipelines.pii_recognizers import PhonePasses

    recognizers = []
    for _, r in pii.recognizers(cfg):  # lmpipe's phone passes are presidio PhoneRecognizers: register those
        recognizers += [r.configured, r.international] if isinstance(r, PhonePasses) else [r]
    registry = RecognizerRegistry(recognizers=recognizers, supported_languages=["en"])
    engine = AnalyzerEngine(
        registry=registry,
        nlp_engine=NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}]),
        supported_languages=["en"],
    )
    entities = list(cfg.entities)

    def run(texts: list[str]) -> list[set[tuple[int, int, str]]]:
        found = []
        for text in texts:
            results = engine.analyze(text, language="en", entities=entities, score_threshold=cfg.min_score)
            # lmpipe's policy on top, so that the spans compare: public IPs, cards, phone numbers, overlaps
            spans = [
                pii.Span(r.start, r.end, r.entity_type, r.score)
                for r in results
                if pii._accept(r.entity_type, text, r.start, r.end, r.score, cfg)
            ]
            found.append(pii.resolve_overlaps(spans))
        return _spans(found)

    return run


def recognizers_direct(cfg: PIIConfig) -> Callable[[list[str]], list[set[tuple[int, int, str]]]]:
    def run(texts: list[str]) -> list[set[tuple[int, int, str]]]:
        return _spans([pii.find_pii(t, cfg, prefilter=False) for t in texts])

    return run


def datatrove_pii(texts: list[str]) -> list[set[tuple[int, int, str]]]:
    from datatrove.pipeline.formatters.pii import PIIFormatter

    formatter = PIIFormatter()
    for text in texts:
        formatter.format(text)
    return [set() for _ in texts]  # it rewrites text and reports no spans


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write", type=Path, help="replace the PII throughput section of this Markdown file")
    args = parser.parse_args(argv)
    cfg = PIIConfig()
    with tempfile.TemporaryDirectory(prefix="pii-bench-") as tmp:
        workdir = Path(tmp)
        shard = extract_pages(workdir)
        table = pq.read_table(shard, columns=["text"])
        texts = [t for t in table.column(0).to_pylist()]
        n_docs, n_chars = len(texts), sum(len(t or "") for t in texts)
        engine, direct = analyzer_engine(cfg), recognizers_direct(cfg)
        peers: dict[str, Callable[[], list[set[tuple[int, int, str]]]]] = {
            "lmpipe": lambda: run_lmpipe(shard, workdir, cfg),
            "presidio-analyzer": lambda: engine([t or "" for t in texts]),
            "presidio-recognizers": lambda: direct([t or "" for t in texts]),
            "datatrove-pii": lambda: datatrove_pii([t or "" for t in texts]),
        }
        # warm-up outside the clock: phonenumbers' metadata, presidio's lazily compiled regexes, tldextract's list
        engine([WARM_UP]), direct([WARM_UP]), pii.find_pii(WARM_UP, cfg), datatrove_pii([WARM_UP])
        load = os.getloadavg()
        cpu: dict[str, list[float]] = {p: [] for p in peers}
        wall: dict[str, list[float]] = {p: [] for p in peers}
        spans: dict[str, list[set[tuple[int, int, str]]]] = {}
        names = list(peers)
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                c0, w0 = time.process_time(), time.perf_counter()
                spans[name] = peers[name]()
                cpu[name].append(time.process_time() - c0)
                wall[name].append(time.perf_counter() - w0)
                print(f"round {r + 1} {name}: {cpu[name][-1]:.2f} CPU s, {wall[name][-1]:.2f} s", file=sys.stderr)

    base = "presidio-analyzer"
    command = ".venv/bin/python bench/pii_throughput.py" + (f" --write {args.write}" if args.write else "")
    lines = [
        SECTION_START,
        f"# PII: run_pii vs presidio's AnalyzerEngine per document ({n_docs} real pages, {n_chars:,} chars)",
        "",
        f"Produced by `{command}` (2 cores, shared machine, one process, {args.rounds} interleaved rounds); method in "
        "the script's docstring. Pages: every HTML page lmpipe's extract stage gets out of ../shared/data/warc. "
        "Default PIIConfig (entities: " + ", ".join(cfg.entities) + f"; {len(cfg.phone_regions)} phone regions).",
        "",
        "| peer | CPU s per round | docs/s/core (median) | × AnalyzerEngine per round | × median | spans | "
        "same docs as lmpipe |",
        "|---|---|---:|---|---:|---:|---:|",
    ]
    for name in names:
        ratios = [b / c for b, c in zip(cpu[base], cpu[name], strict=True)]
        same = sum(a == b for a, b in zip(spans[name], spans["lmpipe"], strict=True)) / n_docs
        found = sum(map(len, spans[name]))
        lines.append(
            f"| {name} | {' '.join(f'{c:.2f}' for c in cpu[name])} | {n_docs / statistics.median(cpu[name]):.0f} | "
            f"{' '.join(f'{x:.1f}' for x in ratios)} | {statistics.median(ratios):.1f} | "
            f"{found if name != 'datatrove-pii' else 'n/a'} | {f'{same:.3f}' if name != 'datatrove-pii' else 'n/a'} |"
        )
    lines += [
        "",
        "Wall seconds per round: " + "; ".join(f"{n} {' '.join(f'{w:.2f}' for w in wall[n])}" for n in names) + ". "
        f"Load average (1 min) before / after the rounds: {load[0]:.1f} / {os.getloadavg()[0]:.1f} on 2 cores: other "
        "work shared them, so wall time is up to ~2x CPU time and docs/s/core is taken from CPU time.",
        SECTION_END,
    ]
    section = "\n".join(lines)
    print(section)
    if args.write:
        replace_section(args.write, section, SECTION_START, SECTION_END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
