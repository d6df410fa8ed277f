"""The language family: fastText lid.176 with a langid.py second opinion (pipelines/language_id.py).

Scores: ``language``, ``language_score`` (the probability the threshold is compared with),
``language_second_opinion`` (whether langid.py voted). Drop reasons ``language_not_kept`` and ``language_low_score``.
The model and the second opinion's settings are what is measured: changing them needs a re-run.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import pyarrow as pa

from pipelines.config import FilterConfig, LanguageConfig
from pipelines.filters.family import Document, FilterFamily
from pipelines.filters.words import WordSplitter
from pipelines.language_id import LanguageIdentifier


class LanguageRules(FilterFamily):
    """Keep the configured languages (``['all']``: every one) at a score of at least ``threshold``."""

    name = "language"
    prefix = "language_"
    columns = {"language": pa.string(), "language_score": pa.float64(), "language_second_opinion": pa.bool_()}
    # the model and its second opinion measure; which languages are kept, at what score, and where others go decide
    remeasured = frozenset(LanguageConfig.model_fields) - {"languages", "threshold", "route_other_languages"}

    def __init__(self, cfg: FilterConfig, splitter: WordSplitter | None = None):
        super().__init__(cfg, splitter)
        self.keep_all = "all" in self.cfg.languages
        self.languages = set(self.cfg.languages)

    @property
    def enabled(self) -> bool:
        return True  # FineWeb always identifies the language; languages=['all'] keeps every one

    @cached_property
    def identifier(self) -> LanguageIdentifier:
        return LanguageIdentifier(self.cfg)

    def load(self) -> None:
        self.identifier  # noqa: B018  (loads the model: LanguageModelNotFoundError names a missing one)

    def measure(self, doc: Document) -> dict[str, Any]:
        language, score, consulted = self.identifier.identify(doc.text)
        return {"language": language, "language_score": score, "language_second_opinion": consulted}

    def decide(self, s: dict[str, Any]) -> str | None:
        if not (self.keep_all or s["language"] in self.languages):
            return "not_kept"
        if s["language_score"] < self.cfg.threshold:
            return "low_score"
        return None

    def thresholds(self) -> dict[str, list[float]]:
        return {"language_score": [self.cfg.threshold]}
