"""The filter chain: the families in FineWeb order, the score schema they add, and the decisions they take.

``FAMILIES`` is the one ordered list everything iterates over: ``FilterChain`` (measure and judge a document),
``score_schema`` (the Parquet columns), ``FilterRules.decide`` (the decision from stored scores) and ``lmpipe explore``
(thresholds, settings that need a re-measure). A new family is a module with a ``FilterFamily`` subclass and one entry
here, at its place in the chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from pipelines.config import FilterConfig
from pipelines.filters.c4 import C4Rules
from pipelines.filters.family import Document, FilterFamily
from pipelines.filters.fineweb import FineWebRules
from pipelines.filters.gopher_quality import GopherQualityRules
from pipelines.filters.gopher_repetition import GopherRepetitionRules
from pipelines.filters.language import LanguageRules
from pipelines.filters.url import URLRules
from pipelines.filters.words import WordSplitter

FAMILIES: tuple[type[FilterFamily], ...] = (
    URLRules,
    LanguageRules,
    GopherRepetitionRules,
    GopherQualityRules,
    C4Rules,  # rewrites the text: FineWeb scores the rewrite, kept rows carry it
    FineWebRules,
)


class FilterRules:
    """The families of one config; their decisions from stored scores are what the stage applies and ``explore``
    replays (``splitter``: only to measure)."""

    def __init__(self, cfg: FilterConfig, splitter: WordSplitter | None = None):
        self.cfg = cfg
        self.families = [family(cfg, splitter) for family in FAMILIES]

    def family(self, name: str) -> FilterFamily | None:
        """The family configured by the ``FilterConfig`` section ``name``."""
        return next((f for f in self.families if f.name == name), None)

    def decide(self, s: dict[str, Any]) -> str | None:
        """The drop reason of a row of stored scores (None = kept); ``empty_text`` rows have no scores."""
        if s.get("language") is None:
            return "empty_text"
        for family in self.families:
            if family.enabled and (rule := family.decide(s)):
                return family.prefix + rule
        return None


def score_schema(cfg: FilterConfig) -> pa.Schema:
    """The columns the filter stage adds, in chain order (the Gopher n-gram columns follow the configured n)."""
    scores = [f for family in FilterRules(cfg).families for f in family.fields()]
    return pa.schema([*scores, pa.field("drop_reason", pa.string())])


SCORE_COLUMNS = [f.name for f in score_schema(FilterConfig()) if f.name != "drop_reason"]


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
        self.rules = FilterRules(cfg, self.splitter)
        for family in self.rules.families:
            family.load()
        self.schema = score_schema(cfg)
        self.columns = [f.name for f in self.schema if f.name != "drop_reason"]

    def __call__(self, text: str | None, url: str | None = None, *, annotate: bool = False) -> FilterOutcome:
        """Score and judge one document: each family measures it, then decides; the first rule broken drops it.
        ``annotate``: score every family even after a drop."""
        scores: dict[str, Any] = dict.fromkeys(self.columns)
        if text is None or not text.strip():
            return FilterOutcome(text, "empty_text", scores)
        doc = Document(text, url)
        reason: str | None = None
        for family in self.rules.families:
            scores.update(family.measure(doc))
            if reason is None and family.enabled and (rule := family.decide(scores)):
                reason = family.prefix + rule
                if not annotate:
                    break
        # FineWeb keeps C4's rewrite; dropped rows keep what they came with
        return FilterOutcome(text if reason else doc.text, reason, scores)
