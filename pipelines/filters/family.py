"""What a filter family is: the interface each module of pipelines/filters/ implements, one module per family.

A family is one of datatrove's filters seen as numbers: it measures a document once (``measure``: score columns,
stored by the stage) and decides from those stored scores (``decide``: datatrove's comparisons in datatrove's order,
returning datatrove's rule name), so the filter stage and ``lmpipe explore`` take the same decision. It also names
its thresholds (``thresholds``: the histograms mark them) and the settings of its config section whose change needs
the documents measured again (``remeasure_reason``). ``pipelines/filters/chain.py`` lists the families in FineWeb
order; adding a family is one module with a subclass of ``FilterFamily`` and one entry in ``FAMILIES`` there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa

from pipelines.config import FilterConfig
from pipelines.filters.words import WordSplitter

REMEASURE = "changes what the filter measures, not a threshold; re-run the filter stage"


@dataclass
class Document:
    """The document the chain scores; a family that rewrites it (C4) sets ``text``, as datatrove sets doc.text."""

    text: str
    url: str | None = None


class FilterFamily(ABC):
    """One filter family, configured by its section of ``FilterConfig``.

    A disabled family is still measured, so that ``explore`` can switch it on from stored scores (C4, whose
    measuring rewrites the document, is the exception); only its decision is skipped.
    """

    name: ClassVar[str]  # its FilterConfig section (``cfg.<name>``)
    prefix: ClassVar[str]  # what its drop reasons start with: "<prefix><rule>"
    columns: ClassVar[dict[str, pa.DataType]] = {}  # its score columns and their types (unless ``fields`` says)
    remeasured: ClassVar[Collection[str]] = ()  # settings of its section that change what is measured

    def __init__(self, cfg: FilterConfig, splitter: WordSplitter | None = None):
        self.cfg = getattr(cfg, self.name)
        self.splitter = splitter  # None: the family only decides (explore); measuring needs one

    @property
    def enabled(self) -> bool:
        return bool(self.cfg.enabled)

    def fields(self) -> list[pa.Field]:
        """Its score columns with their Arrow types, in the order the filter output stores them."""
        return [pa.field(name, kind) for name, kind in self.columns.items()]

    @abstractmethod
    def measure(self, doc: Document) -> dict[str, Any]:
        """The scores of one (non-empty) document."""

    @abstractmethod
    def decide(self, scores: dict[str, Any]) -> str | None:
        """The rule the stored ``scores`` break (datatrove's name, without the prefix), or None."""

    def load(self) -> None:
        """Load what measuring needs (a model), so that a missing one fails before any input is read."""
        return None

    def thresholds(self) -> dict[str, list[float]]:
        """Score column -> the threshold(s) ``decide`` compares it with."""
        return {}

    def remeasure_reason(self, setting: str, before: Any, after: Any) -> str | None:
        """Why changing ``setting`` of this family's section from ``before`` to ``after`` cannot be answered from
        stored scores; None when it only changes decisions."""
        return REMEASURE if setting in self.remeasured else None
