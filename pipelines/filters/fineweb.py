"""The FineWeb family: datatrove's FineWebQualityFilter, measured on the text C4 left (pipelines/filters/c4.py).

Scores: the fraction of lines ending in terminal punctuation, of short lines, of characters in duplicated lines, and
newlines per word. Drop reasons ``fineweb_<rule>``. What counts as a short line (``short_line_length``) is measured.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from datatrove.pipeline.filters.gopher_repetition_filter import find_duplicates
from datatrove.utils.text import TERMINAL_PUNCTUATION

from pipelines.config import FilterConfig
from pipelines.filters.family import Document, FilterFamily
from pipelines.filters.words import WordSplitter


class FineWebRules(FilterFamily):
    """FineWebQualityFilter: punctuated lines, short lines, duplicated-line characters, newlines per word."""

    name = "fineweb"
    prefix = "fineweb_"
    remeasured = ("short_line_length",)
    COLUMNS = ("fineweb_line_punct_ratio", "fineweb_short_line_ratio", "fineweb_char_dup_ratio", "fineweb_list_ratio")
    columns = dict.fromkeys(COLUMNS, pa.float64())

    def __init__(self, cfg: FilterConfig, splitter: WordSplitter | None = None):
        super().__init__(cfg, splitter)
        self.stop_chars = tuple(TERMINAL_PUNCTUATION)  # datatrove's default stop_chars, named explicitly

    def measure(self, doc: Document) -> dict[str, Any]:
        text = doc.text
        lines = [line for line in text.split("\n") if line.strip() != ""]
        if not lines:
            return dict.fromkeys(self.COLUMNS)
        words = self.splitter.words(text)
        return {
            "fineweb_line_punct_ratio": sum(1 for line in lines if line.endswith(self.stop_chars)) / len(lines),
            "fineweb_short_line_ratio": sum(1 for line in lines if len(line) <= self.cfg.short_line_length)
            / len(lines),
            "fineweb_char_dup_ratio": find_duplicates(lines)[1] / len(text.replace("\n", "")),
            "fineweb_list_ratio": text.count("\n") / len(words) if words else float("inf"),
        }

    def decide(self, s: dict[str, Any]) -> str | None:
        c = self.cfg
        if s["fineweb_line_punct_ratio"] is None:
            return "empty"
        ratio = s["fineweb_line_punct_ratio"]
        if ratio < c.line_punct_thr and not (ratio == 0 and c.line_punct_exclude_zero):
            return "line_punct_ratio"
        if s["fineweb_short_line_ratio"] > c.short_line_thr:
            return "short_line_ratio"
        if s["fineweb_char_dup_ratio"] > c.char_duplicates_ratio:
            return "char_dup_ratio"
        if s["fineweb_list_ratio"] > c.new_line_ratio:
            return "list_ratio"
        return None

    def thresholds(self) -> dict[str, list[float]]:
        c = self.cfg
        return {
            "fineweb_line_punct_ratio": [c.line_punct_thr],
            "fineweb_short_line_ratio": [c.short_line_thr],
            "fineweb_char_dup_ratio": [c.char_duplicates_ratio],
            "fineweb_list_ratio": [c.new_line_ratio],
        }
