"""The URL family: datatrove's URLFilter (FineWeb's first step) with its bundled blocklists, offline.

Scores: ``url_block`` (the first hard rule the URL hits: domain, subdomain, url, hard_blacklisted), ``url_soft_words``
(soft-banned words in the URL), ``url_banned_subword``; together they replay URLFilter's order. Drop reasons
``url_<rule>``. The lists are what is measured: changing them needs a re-run.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import pyarrow as pa

from pipelines.config import URLFilterConfig
from pipelines.filters.family import Document, FilterFamily


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


class URLRules(FilterFamily):
    """datatrove URLFilter; the tldextract it uses reads the suffix list bundled in its wheel."""

    name = "url"
    prefix = "url_"
    columns = {"url_block": pa.string(), "url_soft_words": pa.int32(), "url_banned_subword": pa.bool_()}
    # the lists (and whether datatrove's own are used) are what a URL is measured against
    remeasured = frozenset(URLFilterConfig.model_fields) - {"enabled", "soft_word_threshold"}

    @property
    def filter(self) -> Any:
        return _url_filter(self.cfg.model_dump_json())

    def measure(self, doc: Document) -> dict[str, Any]:
        from datatrove.pipeline.filters.url_filter import normalize, normalizer

        url, f = doc.url, self.filter
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

    def thresholds(self) -> dict[str, list[float]]:
        return {"url_soft_words": [self.cfg.soft_word_threshold]}
