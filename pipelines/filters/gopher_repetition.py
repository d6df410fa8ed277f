"""The Gopher repetition family: datatrove's GopherRepetitionFilter with its own helpers.

Scores: duplicated paragraphs / lines (count and character fractions), the character fraction of the most frequent
n-gram per configured n, and of duplicated n-grams per configured n. Drop reasons ``gopher_rep_<rule>``. The n-grams'
thresholds can change from stored scores, their n cannot (the scores are stored per n).
"""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa
from datatrove.pipeline.filters.gopher_repetition_filter import (
    find_all_duplicate,
    find_duplicates,
    find_top_duplicate,
    get_n_grams,
)

from pipelines.filters.family import Document, FilterFamily

_PARAGRAPH = re.compile(r"\n{2,}")
_LINES = re.compile("\n+")
FRACTIONS = ("dup_para_frac", "dup_para_char_frac", "dup_line_frac", "dup_line_char_frac")


class GopherRepetitionRules(FilterFamily):
    """GopherRepetitionFilter: duplicated paragraphs / lines, top n-gram and duplicated n-gram character fractions."""

    name = "gopher_repetition"
    prefix = "gopher_rep_"

    def fields(self) -> list[pa.Field]:
        names = [
            *(f"gopher_rep_{key}" for key in FRACTIONS),
            *(f"gopher_rep_top_{n}_gram_frac" for n, _ in self.cfg.top_n_grams),
            *(f"gopher_rep_dup_{n}_gram_frac" for n, _ in self.cfg.dup_n_grams),
        ]
        return [pa.field(name, pa.float64()) for name in names]

    def measure(self, doc: Document) -> dict[str, Any]:
        text = doc.text
        paragraphs = _PARAGRAPH.split(text.strip())
        para_dups, para_chars = find_duplicates(paragraphs)
        lines = _LINES.split(text)
        line_dups, line_chars = find_duplicates(lines)
        s: dict[str, Any] = {
            "gopher_rep_dup_para_frac": para_dups / len(paragraphs),
            "gopher_rep_dup_para_char_frac": para_chars / len(text),
            "gopher_rep_dup_line_frac": line_dups / len(lines),
            "gopher_rep_dup_line_char_frac": line_chars / len(text),
        }
        words = self.splitter.words(text)
        for n, _ in self.cfg.top_n_grams:
            n_grams = get_n_grams(words, n)
            s[f"gopher_rep_top_{n}_gram_frac"] = find_top_duplicate(n_grams) / len(text) if n_grams else None
        for n, _ in self.cfg.dup_n_grams:
            s[f"gopher_rep_dup_{n}_gram_frac"] = find_all_duplicate(words, n) / len(text)
        return s

    def decide(self, s: dict[str, Any]) -> str | None:
        c = self.cfg
        # datatrove skips a rule whose threshold is falsy (None or 0)
        for key in FRACTIONS:
            thr = getattr(c, key)
            if thr and s[f"gopher_rep_{key}"] > thr:
                return key
        for n, thr in c.top_n_grams:
            value = s.get(f"gopher_rep_top_{n}_gram_frac")
            if value is not None and value > thr:
                return f"top_{n}_gram"
        for n, thr in c.dup_n_grams:
            if s[f"gopher_rep_dup_{n}_gram_frac"] > thr:
                return f"duplicated_{n}_n_grams"
        return None

    def thresholds(self) -> dict[str, list[float]]:
        c = self.cfg
        return {
            **{f"gopher_rep_{key}": [getattr(c, key)] for key in FRACTIONS},
            **{f"gopher_rep_top_{n}_gram_frac": [t] for n, t in c.top_n_grams},
            **{f"gopher_rep_dup_{n}_gram_frac": [t] for n, t in c.dup_n_grams},
        }

    def remeasure_reason(self, setting: str, before: Any, after: Any) -> str | None:
        if setting in ("top_n_grams", "dup_n_grams"):
            old_n, new_n = [n for n, _ in before], [n for n, _ in after]
            if old_n != new_n:
                return f"scores are stored for n={old_n} only; re-run to change n"
        return None
