"""The filter stage: the chain over every document of a shard, streamed by pipelines/documents.py.

    lmpipe task filter --input IN.parquet --output OUT.parquet [--annotate-only]

Adds the chain's score columns and ``drop_reason`` (pipelines/filters/chain.py), stores the config the scores were
measured with in the Parquet schema metadata (``CONFIG_METADATA_KEY``: ``explore`` checks that a what-if changes only
thresholds), counts the documents langid.py's second opinion was asked about, and with
``language.route_other_languages`` also writes the documents of non-kept languages to
``_languages/{lang}/{shard}.parquet`` beside the output (``routed_<lang>`` in the stats).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.config import FilterConfig
from pipelines.documents import BatchResult, run_documents
from pipelines.filters.chain import FilterChain
from pipelines.stats import StageStats

BATCH_ROWS = 512
CONFIG_METADATA_KEY = b"lmpipe.filter_config"


class FilterBatches:
    """run_filter's transform: the chain on each document of a batch, with the counters the stage reports."""

    def __init__(self, chain: FilterChain, output: str, route_other_languages: bool):
        self.chain = chain
        self.columns = pa.schema([pa.field("text", pa.string()), *chain.schema])
        self.languages_dir = Path(output).parent / "_languages" if route_other_languages else None
        self.name = Path(output).name
        self.second_opinions = 0
        self.routed: Counter[str] = Counter()

    def __call__(self, batch: pa.RecordBatch) -> BatchResult:
        texts = batch.column("text").to_pylist()
        urls = batch.column("url").to_pylist() if "url" in batch.schema.names else [None] * batch.num_rows
        with self.chain.splitter.batch():  # spaCy interns each word once per batch, then frees them
            outcomes = [
                self.chain(t, u, annotate=self.chain.cfg.annotate_only) for t, u in zip(texts, urls, strict=True)
            ]
        reasons = [o.drop_reason for o in outcomes]
        columns = {"text": pa.array([o.text for o in outcomes], pa.string())}
        for f in self.chain.schema:
            values = reasons if f.name == "drop_reason" else [o.scores.get(f.name) for o in outcomes]
            columns[f.name] = pa.array(values, f.type)
        self.second_opinions += sum(1 for o in outcomes if o.scores.get("language_second_opinion"))
        return BatchResult(columns, reasons)

    def route(self, rows: pa.RecordBatch) -> dict[str, pa.RecordBatch]:
        """The rows of non-kept languages, per ``_languages/{lang}/{shard}.parquet``."""
        assert self.languages_dir is not None
        other = rows.filter(pc.equal(rows.column("drop_reason"), "language_not_kept"))
        parts = {}
        for lang in sorted(set(other.column("language").to_pylist())):
            part = other.filter(pc.equal(other.column("language"), lang))
            parts[str(self.languages_dir / lang / self.name)] = part
            self.routed[lang] += part.num_rows
        return parts

    def finish(self, stats: StageStats) -> None:
        stats.extra["language_second_opinions"] = self.second_opinions
        for lang in sorted(self.routed):
            stats.extra[f"routed_{lang}"] = self.routed[lang]


def run_filter(inputs: list[str], output: str, cfg: FilterConfig, *, limit: int | None = None) -> StageStats:
    """Filter the input shard(s) into ``output``; every input row is kept or counted under one drop reason."""
    batches = FilterBatches(FilterChain(cfg), output, cfg.language.route_other_languages and not cfg.annotate_only)
    return run_documents(
        list(inputs),
        output,
        cfg,
        "filter",
        batches,
        columns=batches.columns,
        drops=True,
        annotate_only=cfg.annotate_only,
        limit=limit,
        batch_rows=BATCH_ROWS,
        # the config the scores were measured with: explore checks that a what-if changes only thresholds
        metadata={CONFIG_METADATA_KEY: json.dumps(cfg.model_dump(mode="json"))},
        side_outputs=batches.route if batches.languages_dir is not None else None,
        finish=batches.finish,
    )
