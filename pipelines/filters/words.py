"""datatrove's word and sentence splitting (a blank spaCy English pipeline), batched into spaCy memory zones.

Speed: datatrove tokenises each text inside a spaCy ``memory_zone`` per call, so every word is re-created in spaCy's
vocabulary for every document (most of its filter time). ``WordSplitter`` runs the same spaCy pipeline with one
memory zone per batch of documents: the same tokens, each word interned once per batch. Used by the Gopher, C4 and
FineWeb families (pipelines/filters/).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Any

from datatrove.utils.typeshelper import Languages
from datatrove.utils.word_tokenizers import load_word_tokenizer

# The heuristics are English ones (FineWeb); datatrove's English word tokenizer is a blank spaCy pipeline.
QUALITY_LANGUAGE = Languages.english


class WordSplitter:
    """datatrove's ``split_into_words`` / ``split_into_sentences`` for one language, batched into memory zones.

    Use ``with splitter.batch():`` around a batch of documents; spaCy frees the words it interned when it ends.
    """

    def __init__(self, language: str = QUALITY_LANGUAGE):
        # a fresh instance (load_word_tokenizer caches one per process): shard tasks in threads never share a pipeline
        self._tokenizer = getattr(load_word_tokenizer, "__wrapped__", load_word_tokenizer)(language)
        self._last: tuple[str, list[str]] | None = None  # Gopher's two filters split the same text

    @cached_property
    def nlp(self) -> Any:
        return self._tokenizer.tokenizer  # spacy.blank(language) + sentencizer, as datatrove builds it

    @contextmanager
    def batch(self) -> Iterator[None]:
        with self.nlp.memory_zone():
            yield

    def words(self, text: str) -> list[str]:
        # datatrove's SpaCyTokenizer.word_tokenize, including its work-around for the one string that breaks spaCy
        if self._last is not None and self._last[0] is text:
            return self._last[1]
        self.nlp.max_length = len(text) + 10
        try:
            doc = self.nlp.make_doc(text)  # tokens do not depend on the sentencizer: skip it
        except Exception:
            if "IS_ALPHA" not in text:
                raise
            doc = self.nlp.make_doc(text.replace("IS_ALPHA", ""))
        words = [s for s in (token.text.strip() for token in doc) if s]
        self._last = (text, words)
        return words

    def count_sentences(self, lines: list[str]) -> int:
        """sum(len(split_into_sentences(line)) for line in lines): datatrove cuts each line at sentence ends and
        always returns at least one part. One spaCy ``pipe`` over the lines instead of a call per line."""
        if not lines:
            return 0
        self.nlp.max_length = max(len(line) for line in lines) + 10
        try:
            return sum(max(1, sum(1 for _ in doc.sents)) for doc in self.nlp.pipe(lines))
        except Exception:
            if not any("IS_ALPHA" in line for line in lines):
                raise
            lines = [line.replace("IS_ALPHA", "") for line in lines]
            return sum(max(1, sum(1 for _ in doc.sents)) for doc in self.nlp.pipe(lines))
