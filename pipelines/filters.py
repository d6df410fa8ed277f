"""URL, language and quality filtering of one shard: FineWeb's recipe with datatrove's filters, every score kept.

    lmpipe task filter --input IN.parquet --output OUT.parquet [--annotate-only]

FineWeb's order: datatrove's URLFilter (bundled blocklists), fastText lid.176 language ID (with a langid.py second
opinion, pipelines/language_id.py), then GopherRepetitionFilter, GopherQualityFilter, C4QualityFilter (without the
terminal-punctuation rule) and FineWebQualityFilter, every parameter taken from ``FilterConfig`` (pinned to the
FineWeb values). A document stops at the first rule that rejects it; its ``drop_reason`` names the family and
datatrove's rule: ``empty_text``, ``url_<rule>``, ``language_not_kept``, ``language_low_score``,
``gopher_rep_<rule>``, ``gopher_<rule>``, ``c4_<rule>``, ``fineweb_<rule>``.

Each family's scores are measured once (pipelines/quality_scores.py) and the decision is taken from those scores,
replaying datatrove's comparisons in datatrove's order; a parity test holds the decisions equal to datatrove's own
filter objects. Columns added: ``FilterChain.schema`` (``drop_reason`` null when kept). A score is null when the
document did not reach its family. With ``annotate_only`` every family scores every document (so ``lmpipe explore``
can also relax a threshold) and nothing is dropped; the rows whose ``drop_reason`` is null are exactly the rows a
normal run writes.

C4QualityFilter rewrites the text (drops javascript / policy / short lines, citations); FineWeb keeps that rewritten
text, and so do we: kept rows carry it and FineWeb's scores are measured on it. Dropped rows keep their original text.
With ``language.route_other_languages``, documents of non-kept languages are also written, per language, to
``_languages/{lang}/{shard}.parquet`` beside the output (still counted as ``language_not_kept``).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.config import FilterConfig
from pipelines.language_id import (
    LanguageIdentifier,
    LanguageModelNotFoundError,
    default_language_model_path,
    identify_language,
    load_language_model,
)
from pipelines.quality_scores import (
    C4Rules,
    FineWebRules,
    GopherQualityRules,
    GopherRepetitionRules,
    URLRules,
    WordSplitter,
)
from pipelines.shards import read_tables, shard_id, write_shard, write_table
from pipelines.stats import StageStats

__all__ = [
    "SCORE_COLUMNS",
    "FilterChain",
    "FilterRules",
    "LanguageModelNotFoundError",
    "default_language_model_path",
    "identify_language",
    "load_language_model",
    "run_filter",
    "score_schema",
]

logger = logging.getLogger(__name__)

BATCH_ROWS = 512
CONFIG_METADATA_KEY = b"lmpipe.filter_config"


def score_schema(cfg: FilterConfig) -> pa.Schema:
    """The columns the filter stage adds, in chain order (the Gopher n-gram columns follow the configured n)."""
    rep = GopherRepetitionRules(cfg.gopher_repetition, None)
    floats = [pa.field(name, pa.float64()) for name in rep.columns()]
    quality = [
        pa.field(n, pa.int32() if n in ("gopher_words", "gopher_stop_words") else pa.float64())
        for n in GopherQualityRules.COLUMNS
    ]
    return pa.schema(
        [
            ("url_block", pa.string()),
            ("url_soft_words", pa.int32()),
            ("url_banned_subword", pa.bool_()),
            ("language", pa.string()),
            ("language_score", pa.float64()),
            ("language_second_opinion", pa.bool_()),
            *floats,
            *quality,
            ("c4_doc_rule", pa.string()),
            ("c4_sentences", pa.int32()),
            ("c4_lines_removed_frac", pa.float64()),
            *(pa.field(n, pa.float64()) for n in FineWebRules.COLUMNS),
            ("drop_reason", pa.string()),
        ]
    )


SCORE_SCHEMA = score_schema(FilterConfig())
SCORE_COLUMNS = [f.name for f in SCORE_SCHEMA if f.name != "drop_reason"]


class FilterRules:
    """The decisions of the chain as a function of stored scores: what the stage applies and ``explore`` replays."""

    def __init__(self, cfg: FilterConfig, splitter: WordSplitter | None = None):
        self.cfg = cfg
        self.url = URLRules(cfg.url)
        self.gopher_repetition = GopherRepetitionRules(cfg.gopher_repetition, splitter)
        self.gopher_quality = GopherQualityRules(cfg.gopher_quality, splitter)
        self.c4 = C4Rules(cfg.c4, splitter)
        self.fineweb = FineWebRules(cfg.fineweb, splitter)
        self.keep_all = "all" in cfg.language.languages
        self.languages = set(cfg.language.languages)

    def language(self, s: dict[str, Any]) -> str | None:
        if not (self.keep_all or s["language"] in self.languages):
            return "not_kept"
        if s["language_score"] < self.cfg.language.threshold:
            return "low_score"
        return None

    def steps(self) -> list[tuple[str, bool, Any]]:
        """(drop-reason prefix, enabled, decide(scores) -> rule | None) in FineWeb order."""
        c = self.cfg
        return [
            ("url_", c.url.enabled, self.url.decide),
            ("language_", True, self.language),
            ("gopher_rep_", c.gopher_repetition.enabled, self.gopher_repetition.decide),
            ("", c.gopher_quality.enabled, self.gopher_quality.decide),  # GopherQuality's reasons carry gopher_
            ("c4_", c.c4.enabled, self.c4.decide),
            ("fineweb_", c.fineweb.enabled, self.fineweb.decide),
        ]

    def decide(self, s: dict[str, Any]) -> str | None:
        """The drop reason of a row of stored scores (None = kept); ``empty_text`` rows have no scores."""
        if s.get("language") is None:
            return "empty_text"
        for prefix, enabled, decide in self.steps():
            if enabled and (rule := decide(s)):
                return prefix + rule
        return None


@dataclass
class FilterOutcome:
    """What the chain decided for one document: the text to write, the drop reason (None = kept), the scores."""

    text: str | None
    drop_reason: str | None
    scores: dict[str, Any] = field(default_factory=dict)


class FilterChain:
    """URL filter, language ID and datatrove's quality filters in FineWeb order, configured from ``FilterConfig``."""

    def __init__(self, cfg: FilterConfig):
        self.cfg = cfg
        self.splitter = WordSplitter()
        self.identifier = LanguageIdentifier(cfg.language)
        self.rules = FilterRules(cfg, self.splitter)
        self.schema = score_schema(cfg)
        self.columns = [f.name for f in self.schema if f.name != "drop_reason"]

    def __call__(self, text: str | None, url: str | None = None, *, annotate: bool = False) -> FilterOutcome:
        """Score and judge one document. ``annotate``: score every family even after a drop."""
        scores: dict[str, Any] = dict.fromkeys(self.columns)
        if text is None or not text.strip():
            return FilterOutcome(text, "empty_text", scores)
        r = self.rules
        reason: str | None = None

        def judge(prefix: str, enabled: bool, decide: Any) -> bool:
            """Record the first failing rule; True when scoring can stop."""
            nonlocal reason
            if reason is None and enabled and (rule := decide(scores)):
                reason = prefix + rule
            return reason is not None and not annotate

        steps = iter(r.steps())
        scores.update(r.url.scores(url))
        if judge(*next(steps)):
            return FilterOutcome(text, reason, scores)
        language, score, consulted = self.identifier.identify(text)
        scores.update(language=language, language_score=score, language_second_opinion=consulted)
        if judge(*next(steps)):
            return FilterOutcome(text, reason, scores)
        scores.update(r.gopher_repetition.scores(text))
        if judge(*next(steps)):
            return FilterOutcome(text, reason, scores)
        scores.update(r.gopher_quality.scores(text))
        if judge(*next(steps)):
            return FilterOutcome(text, reason, scores)
        c4 = r.c4.run(text) if self.cfg.c4.enabled else None
        if c4 is not None:
            scores.update(c4.scores)
        if judge(*next(steps)):
            return FilterOutcome(text, reason, scores)
        rewritten = c4.text if c4 is not None else text
        scores.update(r.fineweb.scores(rewritten))
        judge(*next(steps))
        # FineWeb keeps C4's rewrite; dropped rows keep what they came with
        return FilterOutcome(text if reason else rewritten, reason, scores)


def _filter_rows(
    table: pa.Table, chain: FilterChain, stats: StageStats, texts: list[str | None], columns: dict[str, list[Any]]
) -> None:
    urls = table.column("url") if "url" in table.column_names else pa.nulls(table.num_rows, pa.string())
    batches = pa.table({"text": table.column("text"), "url": urls}).to_batches(max_chunksize=BATCH_ROWS)
    for batch in batches:
        with chain.splitter.batch():  # spaCy interns each word once per batch, then frees them
            for text, url in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
                stats.bytes_in += len(text.encode("utf-8")) if text else 0
                outcome = chain(text, url, annotate=chain.cfg.annotate_only)
                texts.append(outcome.text)
                for name in chain.columns:
                    columns[name].append(outcome.scores.get(name))
                columns["drop_reason"].append(outcome.drop_reason)
        logger.info("filter %s: %d/%d docs", stats.shard, len(texts), table.num_rows)


def _route_languages(table: pa.Table, output: str, stats: StageStats) -> None:
    """Write the non-kept-language rows to ``_languages/{lang}/{shard}.parquet`` beside ``output``."""
    routed = table.filter(pc.equal(table.column("drop_reason"), "language_not_kept"))
    if routed.num_rows == 0:
        return
    base = Path(output).parent / "_languages"
    for lang in sorted(set(routed.column("language").to_pylist())):
        rows = routed.filter(pc.equal(routed.column("language"), lang))
        write_table(rows, base / lang / Path(output).name)
        stats.extra[f"routed_{lang}"] = rows.num_rows


def run_filter(inputs: list[str], output: str, cfg: FilterConfig, *, limit: int | None = None) -> StageStats:
    """Filter the input shard(s) into ``output``; every input row is kept or counted under one drop reason."""
    started = time.perf_counter()
    chain = FilterChain(cfg)
    table = read_tables(list(inputs))
    if limit is not None:
        table = table.slice(0, limit)
    stats = StageStats(stage="filter", shard=shard_id(output), docs_in=table.num_rows)

    texts: list[str | None] = []
    columns: dict[str, list[Any]] = {name: [] for name in chain.schema.names}
    _filter_rows(table, chain, stats, texts, columns)

    reasons = Counter(r for r in columns["drop_reason"] if r is not None)
    if cfg.annotate_only:
        stats.docs_kept = table.num_rows
        for reason, n in reasons.items():
            stats.extra[f"would_drop_{reason}"] = n
    else:
        stats.docs_kept = table.num_rows - sum(reasons.values())
        for reason, n in reasons.items():
            stats.drop(reason, n)
    stats.extra["language_second_opinions"] = sum(1 for v in columns["language_second_opinion"] if v)

    table = table.drop_columns([c for c in chain.schema.names if c in table.column_names])
    table = table.set_column(table.column_names.index("text"), "text", pa.array(texts, pa.string()))
    for f in chain.schema:
        table = table.append_column(f, pa.array(columns[f.name], f.type))
    # the config the scores were measured with: explore checks that a what-if changes only thresholds
    metadata = {**(table.schema.metadata or {}), CONFIG_METADATA_KEY: json.dumps(cfg.model_dump(mode="json"))}
    table = table.replace_schema_metadata(metadata)
    if cfg.language.route_other_languages and not cfg.annotate_only:
        _route_languages(table, output, stats)
    if not cfg.annotate_only:
        table = table.filter(pc.is_null(table.column("drop_reason")))
    stats.seconds = time.perf_counter() - started
    logger.info("filter %s: kept %d of %d %s", stats.shard, stats.docs_kept, stats.docs_in, dict(reasons))
    return write_shard(table, output, stats, cfg, list(inputs))
