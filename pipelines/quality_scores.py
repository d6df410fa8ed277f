"""The scores behind datatrove's URL, Gopher, C4 and FineWeb filters, and the decisions they imply.

datatrove's filters return only a verdict. lmpipe needs the numbers (stored as columns, re-thresholded by
``lmpipe explore``), so each family here is a pair: ``<family>_scores(text) -> dict`` measures a document with
datatrove's own helpers (find_duplicates, find_top_duplicate, find_all_duplicate, get_n_grams, its spaCy word and
sentence splitting, its stop words, punctuation set and C4 regexes), and ``<Family>Rules.decide(scores)`` applies the
thresholds in the exact order and with the exact comparisons of the datatrove filter, returning datatrove's reason
name (or None). ``tests/pipelines/test_filter_parity.py`` runs datatrove's filter objects beside these on real pages
and requires identical decisions and identical C4-rewritten text.

Speed: datatrove tokenises each text inside a spaCy ``memory_zone`` per call, so every word is re-created in spaCy's
vocabulary for every document (most of its filter time). ``WordSplitter`` runs the same spaCy pipeline with one
memory zone per batch of documents: the same tokens, each word interned once per batch.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

import numpy as np
from datatrove.pipeline.filters.c4_filters import CITATION_REGEX, ELLIPSIS, END_PUNCTUATION, POLICY_SUBSTRINGS
from datatrove.pipeline.filters.gopher_quality_filter import STOP_WORDS
from datatrove.pipeline.filters.gopher_repetition_filter import (
    find_all_duplicate,
    find_duplicates,
    find_top_duplicate,
    get_n_grams,
)
from datatrove.utils.text import PUNCTUATION_SET, TERMINAL_PUNCTUATION
from datatrove.utils.typeshelper import Languages
from datatrove.utils.word_tokenizers import load_word_tokenizer

from pipelines.config import (
    C4QualityConfig,
    FineWebQualityConfig,
    GopherQualityConfig,
    GopherRepetitionConfig,
    URLFilterConfig,
)

# The heuristics are English ones (FineWeb); datatrove's English word tokenizer is a blank spaCy pipeline.
QUALITY_LANGUAGE = Languages.english
_PARAGRAPH = re.compile(r"\n{2,}")
_LINES = re.compile("\n+")


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


# --------------------------------------------------------------------------------------------------- URL
@lru_cache(maxsize=2)
def _url_filter(cfg_json: str) -> Any:
    """One URLFilter per process and configuration: loading its blocklists takes seconds."""
    import tldextract
    from datatrove.pipeline.filters import URLFilter

    cfg = URLFilterConfig.model_validate_json(cfg_json)
    url_filter = URLFilter(
        soft_word_threshold=cfg.soft_word_threshold,
        extra_domains=cfg.extra_domains or None,
        extra_urls=cfg.extra_urls or None,
        banned_words=cfg.banned_words or None,
        banned_subwords=cfg.banned_subwords or None,
        soft_banned_words=cfg.soft_banned_words or None,
        use_integrated_lists=cfg.use_integrated_lists,
    )
    # URLFilter's TLDExtract() would download the public-suffix list on first use
    url_filter.tldextractor = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)
    url_filter.download_data()  # unpacks datatrove's bundled lists once (file-locked)
    return url_filter


class URLRules:
    """datatrove URLFilter with its bundled blocklists; the tldextract it uses reads the bundled suffix list."""

    def __init__(self, cfg: URLFilterConfig):
        self.cfg = cfg

    @property
    def filter(self) -> Any:
        return _url_filter(self.cfg.model_dump_json())

    def scores(self, url: str | None) -> dict[str, Any]:
        """``url_block``: the first hard rule the URL hits (domain, subdomain, url, hard_blacklisted); the number of
        soft-banned words; whether a banned sub-word occurs. Together they replay URLFilter's order."""
        from datatrove.pipeline.filters.url_filter import normalize, normalizer

        f = self.filter
        if not url:
            return {"url_block": None, "url_soft_words": 0, "url_banned_subword": False}
        info = f.tldextractor(url)
        block = None
        if info.registered_domain in f.block_listed_domains:
            block = "domain"
        elif info.fqdn in f.block_listed_domains:
            block = "subdomain"
        elif url in f.block_listed_url:
            block = "url"
        words = set(normalizer.split(url))
        if block is None and any(word in words for word in f.banned_words):
            block = "hard_blacklisted"
        subword = bool(f.banned_subwords) and next(f.banned_subwords_automaton.iter(normalize(url)), False) is not False
        return {
            "url_block": block,
            "url_soft_words": sum(word in words for word in f.soft_banned_words),
            "url_banned_subword": subword,
        }

    def decide(self, s: dict[str, Any]) -> str | None:
        if s["url_block"]:
            return s["url_block"]
        if s["url_soft_words"] >= self.cfg.soft_word_threshold:
            return "soft_blacklisted"
        if s["url_banned_subword"]:
            return "blacklisted_subword"
        return None


# --------------------------------------------------------------------------------------------------- Gopher
class GopherRepetitionRules:
    """GopherRepetitionFilter: duplicated paragraphs / lines, top n-gram and duplicated n-gram character fractions."""

    def __init__(self, cfg: GopherRepetitionConfig, splitter: WordSplitter):
        self.cfg, self.splitter = cfg, splitter

    def scores(self, text: str) -> dict[str, Any]:
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
        for key, thr in (
            ("dup_para_frac", c.dup_para_frac),
            ("dup_para_char_frac", c.dup_para_char_frac),
            ("dup_line_frac", c.dup_line_frac),
            ("dup_line_char_frac", c.dup_line_char_frac),
        ):
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

    def columns(self) -> list[str]:
        return [
            "gopher_rep_dup_para_frac",
            "gopher_rep_dup_para_char_frac",
            "gopher_rep_dup_line_frac",
            "gopher_rep_dup_line_char_frac",
            *(f"gopher_rep_top_{n}_gram_frac" for n, _ in self.cfg.top_n_grams),
            *(f"gopher_rep_dup_{n}_gram_frac" for n, _ in self.cfg.dup_n_grams),
        ]


class GopherQualityRules:
    """GopherQualityFilter: word counts and lengths, symbol ratios, bullet / ellipsis lines, alphabetic words, stop
    words (datatrove's list: the, be, to, of, and, that, have, with)."""

    COLUMNS = [
        "gopher_words",
        "gopher_mean_word_length",
        "gopher_hash_ratio",
        "gopher_ellipsis_ratio",
        "gopher_bullet_lines_ratio",
        "gopher_end_ellipsis_lines_ratio",
        "gopher_alpha_words_ratio",
        "gopher_stop_words",
    ]

    def __init__(self, cfg: GopherQualityConfig, splitter: WordSplitter):
        self.cfg, self.splitter = cfg, splitter
        self.stop_words = set(STOP_WORDS)

    def scores(self, text: str) -> dict[str, Any]:
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


# --------------------------------------------------------------------------------------------------- C4
@dataclass
class C4Result:
    scores: dict[str, Any]
    text: str  # the rewritten text (kept lines), as C4QualityFilter leaves it in doc.text


class C4Rules:
    """C4QualityFilter (split_paragraph=True, as FineWeb): line rules rewrite the text, then doc rules decide.

    Scores: ``c4_doc_rule`` (lorem_ipsum / curly_bracket: the document rule the first offending kept line hits),
    ``c4_sentences`` (sentences in the kept lines), ``c4_lines_removed_frac``. The line rules (word length,
    citations, terminal punctuation, words per line, javascript, policy) shape the text and so every later score:
    they are not re-thresholdable from stored scores.
    """

    COLUMNS = ["c4_doc_rule", "c4_sentences", "c4_lines_removed_frac"]

    def __init__(self, cfg: C4QualityConfig, splitter: WordSplitter):
        if not cfg.split_paragraph:
            raise ValueError("filter.c4.split_paragraph=false is not supported (FineWeb splits on lines)")
        self.cfg, self.splitter = cfg, splitter

    def run(self, text: str) -> C4Result:
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
        return C4Result(scores, "\n".join(kept).strip())

    def decide(self, s: dict[str, Any]) -> str | None:
        if s["c4_doc_rule"]:
            return s["c4_doc_rule"]
        if s["c4_sentences"] < self.cfg.min_num_sentences:
            return "too_few_sentences"
        return None


# --------------------------------------------------------------------------------------------------- FineWeb
class FineWebRules:
    """FineWebQualityFilter on the C4-rewritten text: punctuated lines, short lines, duplicated-line characters,
    newlines per word."""

    COLUMNS = ["fineweb_line_punct_ratio", "fineweb_short_line_ratio", "fineweb_char_dup_ratio", "fineweb_list_ratio"]

    def __init__(self, cfg: FineWebQualityConfig, splitter: WordSplitter):
        self.cfg, self.splitter = cfg, splitter
        self.stop_chars = tuple(TERMINAL_PUNCTUATION)  # datatrove's default stop_chars, named explicitly

    def scores(self, text: str) -> dict[str, Any]:
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
