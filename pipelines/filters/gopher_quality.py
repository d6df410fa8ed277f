"""The Gopher quality family: datatrove's GopherQualityFilter with its word splitting, stop words and punctuation.

Scores: word count (words with a non-punctuation character), mean word length, '#' and ellipsis per word, bullet and
ellipsis-ending line fractions, the fraction of words with a letter, the number of stop words. Its drop reasons carry
datatrove's ``gopher_`` names already (``gopher_short_doc``): the prefix is empty.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from datatrove.pipeline.filters.gopher_quality_filter import STOP_WORDS
from datatrove.utils.text import PUNCTUATION_SET

from pipelines.config import FilterConfig
from pipelines.filters.family import Document, FilterFamily
from pipelines.filters.words import WordSplitter

COLUMNS = (
    "gopher_words",
    "gopher_mean_word_length",
    "gopher_hash_ratio",
    "gopher_ellipsis_ratio",
    "gopher_bullet_lines_ratio",
    "gopher_end_ellipsis_lines_ratio",
    "gopher_alpha_words_ratio",
    "gopher_stop_words",
)
COUNTS = ("gopher_words", "gopher_stop_words")


class GopherQualityRules(FilterFamily):
    """GopherQualityFilter: word counts and lengths, symbol ratios, bullet / ellipsis lines, alphabetic words, stop
    words (datatrove's list: the, be, to, of, and, that, have, with)."""

    name = "gopher_quality"
    prefix = ""  # GopherQualityFilter's reasons carry gopher_
    columns = {name: pa.int32() if name in COUNTS else pa.float64() for name in COLUMNS}

    def __init__(self, cfg: FilterConfig, splitter: WordSplitter | None = None):
        super().__init__(cfg, splitter)
        self.stop_words = set(STOP_WORDS)

    def measure(self, doc: Document) -> dict[str, Any]:
        text = doc.text
        words = self.splitter.words(text)
        n_words = len(words)
        non_symbol = [w for w in words if any(ch not in PUNCTUATION_SET for ch in w)]
        lines = text.splitlines()
        return {
            "gopher_words": len(non_symbol),
            "gopher_mean_word_length": float(np.mean([len(w) for w in non_symbol])) if non_symbol else None,
            "gopher_hash_ratio": text.count("#") / n_words if n_words else None,
            "gopher_ellipsis_ratio": (text.count("...") + text.count("…")) / n_words if n_words else None,
            "gopher_bullet_lines_ratio": (
                sum(s.lstrip().startswith("•") or s.lstrip().startswith("-") for s in lines) / len(lines)
                if lines
                else None
            ),
            "gopher_end_ellipsis_lines_ratio": (
                sum(s.rstrip().endswith("...") or s.rstrip().endswith("…") for s in lines) / len(lines)
                if lines
                else None
            ),
            "gopher_alpha_words_ratio": sum(any(c.isalpha() for c in w) for w in words) / n_words if n_words else None,
            "gopher_stop_words": len(self.stop_words.intersection(words)),
        }

    def decide(self, s: dict[str, Any]) -> str | None:
        c = self.cfg
        if c.min_doc_words and s["gopher_words"] < c.min_doc_words:
            return "gopher_short_doc"
        if c.max_doc_words and s["gopher_words"] > c.max_doc_words:
            return "gopher_long_doc"
        mean = s["gopher_mean_word_length"]
        mean = float("nan") if mean is None else mean  # np.mean([]) is nan: every comparison is False
        if c.min_avg_word_length and mean < c.min_avg_word_length:
            return "gopher_below_avg_threshold"
        if c.max_avg_word_length and mean > c.max_avg_word_length:
            return "gopher_above_avg_threshold"
        for key, thr, reason in (
            ("gopher_hash_ratio", c.max_symbol_word_ratio, "gopher_too_many_hashes"),
            ("gopher_ellipsis_ratio", c.max_symbol_word_ratio, "gopher_too_many_ellipsis"),
            ("gopher_bullet_lines_ratio", c.max_bullet_lines_ratio, "gopher_too_many_bullets"),
            ("gopher_end_ellipsis_lines_ratio", c.max_ellipsis_lines_ratio, "gopher_too_many_end_ellipsis"),
        ):
            if thr and s[key] is not None and s[key] > thr:
                return reason
        if c.max_non_alpha_words_ratio and s["gopher_alpha_words_ratio"] < c.max_non_alpha_words_ratio:
            return "gopher_below_alpha_threshold"
        if c.min_stop_words and s["gopher_stop_words"] < c.min_stop_words:
            return "gopher_enough_stop_words"
        return None

    def thresholds(self) -> dict[str, list[float]]:
        c = self.cfg
        return {
            "gopher_words": [c.min_doc_words, c.max_doc_words],
            "gopher_mean_word_length": [c.min_avg_word_length, c.max_avg_word_length],
            "gopher_hash_ratio": [c.max_symbol_word_ratio],
            "gopher_ellipsis_ratio": [c.max_symbol_word_ratio],
            "gopher_bullet_lines_ratio": [c.max_bullet_lines_ratio],
            "gopher_end_ellipsis_lines_ratio": [c.max_ellipsis_lines_ratio],
            "gopher_alpha_words_ratio": [c.max_non_alpha_words_ratio],
            "gopher_stop_words": [c.min_stop_words],
        }
