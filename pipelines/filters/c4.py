"""The C4 family: datatrove's C4QualityFilter as FineWeb runs it (split_paragraph=True, no terminal-punctuation rule).

Its line rules (word length, citations, terminal punctuation, words per line, javascript, policy) rewrite the text,
and FineWeb keeps that rewrite: measuring a document sets its text to the kept lines, which the FineWeb family then
scores and the stage writes for kept rows. Scores: ``c4_doc_rule`` (lorem_ipsum / curly_bracket: the document rule
the first offending kept line hits), ``c4_sentences`` (sentences in the kept lines), ``c4_lines_removed_frac``.
Drop reasons ``c4_<rule>``. Only ``min_num_sentences`` is a threshold: every other setting shapes the text.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from datatrove.pipeline.filters.c4_filters import CITATION_REGEX, ELLIPSIS, END_PUNCTUATION, POLICY_SUBSTRINGS

from pipelines.config import FilterConfig
from pipelines.filters.family import REMEASURE, Document, FilterFamily
from pipelines.filters.words import WordSplitter


class C4Rules(FilterFamily):
    """C4QualityFilter: line rules rewrite the text, then document rules decide."""

    name = "c4"
    prefix = "c4_"
    columns = {"c4_doc_rule": pa.string(), "c4_sentences": pa.int32(), "c4_lines_removed_frac": pa.float64()}

    def __init__(self, cfg: FilterConfig, splitter: WordSplitter | None = None):
        super().__init__(cfg, splitter)
        if not self.cfg.split_paragraph:
            raise ValueError("filter.c4.split_paragraph=false is not supported (FineWeb splits on lines)")

    def measure(self, doc: Document) -> dict[str, Any]:
        if not self.enabled:  # a disabled C4 leaves the text alone: FineWeb scores the original
            return {}
        doc.text, scores = self.rewrite(doc.text)
        return scores

    def rewrite(self, text: str) -> tuple[str, dict[str, Any]]:
        """(the kept lines, as C4QualityFilter leaves them in doc.text; the scores)."""
        c = self.cfg
        lines = text.splitlines()
        kept: list[str] = []
        doc_rule = None
        for line in lines:
            line = line.strip()
            words = line.split()
            if c.max_word_length != -1 and any(len(word) > c.max_word_length for word in words):
                continue
            if c.remove_citations:
                line = CITATION_REGEX.sub("", line)
            if c.filter_no_terminal_punct and (not line.endswith(END_PUNCTUATION) or line.endswith(ELLIPSIS)):
                continue
            if len(words) < c.min_words_per_line:
                continue
            line_l = line.lower()
            if c.filter_lorem_ipsum and "lorem ipsum" in line_l:
                doc_rule = "lorem_ipsum"
                break
            if c.filter_javascript and "javascript" in line_l:
                continue
            if c.filter_curly_bracket and "{" in line:
                doc_rule = "curly_bracket"
                break
            if c.filter_policy and any(p in line_l for p in POLICY_SUBSTRINGS):
                continue
            kept.append(line)
        sentences = None
        if doc_rule is None:
            sentences = self.splitter.count_sentences(kept) if c.min_num_sentences != -1 else 0
        scores = {
            "c4_doc_rule": doc_rule,
            "c4_sentences": sentences,
            "c4_lines_removed_frac": 1 - len(kept) / len(lines) if lines and doc_rule is None else None,
        }
        return "\n".join(kept).strip(), scores

    def decide(self, s: dict[str, Any]) -> str | None:
        if s["c4_doc_rule"]:
            return s["c4_doc_rule"]
        if s["c4_sentences"] < self.cfg.min_num_sentences:
            return "too_few_sentences"
        return None

    def thresholds(self) -> dict[str, list[float]]:
        return {"c4_sentences": [self.cfg.min_num_sentences]}

    def remeasure_reason(self, setting: str, before: Any, after: Any) -> str | None:
        if setting == "enabled":
            return "C4 rewrites the text FineWeb scores; re-run the filter stage"
        return None if setting == "min_num_sentences" else REMEASURE
