"""Typed, documented configuration: one frozen pydantic model per stage, defaults = the FineWeb recipe.

Flows take these models as parameters, so the Prefect UI renders each as a documented, validated form.
``lmpipe task <stage> --config STAGE.yaml --set key=value`` builds the same models (see ``load_config``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipelines.crawl import COLLINFO_URL, COMMON_CRAWL_HTTPS, LATEST, validate_crawl_id

logger = logging.getLogger(__name__)


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _section(config: type[_Config], description: str = "") -> Any:
    """A field holding a nested config, by default all of its defaults."""
    return Field(default_factory=config, description=description)


class SampleConfig(_Config):
    """The built-in, deterministic sample crawl (planted duplicates, PII, low-quality pages, languages)."""

    pages: int = Field(520, ge=50, le=100_000, description="HTML pages across all sample WARC files.")
    files: int = Field(4, ge=1, le=64, description="Number of WARC files (= shards) the pages are spread over.")
    seed: int = Field(1234, description="Random seed; the same seed gives byte-identical WARC files.")


# One safe path component (a crawl id is a folder under data_root): no '/', no '..', no hidden name, no empty name.
PATH_COMPONENT = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
RAY_ADDRESS = r"^(auto|ray://[A-Za-z0-9.\-]+:\d{1,5}|[A-Za-z0-9.\-]+:\d{1,5})$"


class RunnerConfig(_Config):
    """Where the data stages' tasks run: threads of the flow's process, or a Ray cluster (prefect-ray)."""

    kind: Literal["local", "ray"] = Field(
        "local", description="local: a thread pool in the flow's process; ray: tasks on a Ray cluster (lmpipe[ray])."
    )
    address: str | None = Field(
        None,
        pattern=RAY_ADDRESS,
        description="Ray cluster: 'auto' (the flow runs on a node of it), 'ray://HOST:10001' (Ray Client) or "
        "'HOST:6379' (the head's GCS); unset: a Ray instance on this machine for the run only.",
    )
    cpus_per_task: float = Field(1.0, gt=0, description="Ray: CPUs each task reserves (num_cpus).")
    memory_per_task_mb: int | None = Field(None, gt=0, description="Ray: memory each task reserves (MiB).")

    def ray_options(self) -> dict[str, Any]:
        """Options of each task's ``ray.remote``."""
        opts: dict[str, Any] = {"num_cpus": self.cpus_per_task}
        if self.memory_per_task_mb is not None:
            opts["memory"] = self.memory_per_task_mb * 2**20
        return opts


class CrawlConfig(_Config):
    """Which WARC files of a Common Crawl crawl a run processes (a deterministic slice of its warc.paths.gz)."""

    crawl_id: str = Field(
        ...,
        description="Crawl id, CC-MAIN-YYYY-WW (e.g. CC-MAIN-2024-10), or 'latest': the newest crawl of the index "
        "whose slice has no completed refresh under data_root yet (for scheduled refreshes).",
    )
    max_warcs: int = Field(1, ge=1, description="Process at most this many WARC files (~1 GB each).")
    offset: int = Field(0, ge=0, description="Skip this many entries of the listing first.")
    stride: int = Field(1, ge=1, description="Then take every stride-th entry (spreads a sample over the crawl).")
    base_url: str = Field(
        COMMON_CRAWL_HTTPS,
        description="Where crawl-data/ lives: https://data.commoncrawl.org/, s3://commoncrawl/ or a mirror.",
    )

    index_url: str = Field(
        COLLINFO_URL, description="Crawl index (collinfo.json) that crawl_id 'latest' is resolved against."
    )

    @field_validator("crawl_id")
    @classmethod
    def _valid_crawl_id(cls, value: str) -> str:
        return value if value == LATEST else validate_crawl_id(value)

    def selection(self) -> dict[str, object]:
        """The slice of a crawl this config takes, as recorded in a completed refresh's marker."""
        return self.model_dump(include={"max_warcs", "offset", "stride", "base_url"})


class ExtractConfig(_Config):
    """WARC → main text with trafilatura (FineWeb settings: favour precision, no comments)."""

    crawl_id: str = Field(
        "sample",
        pattern=PATH_COMPONENT,
        description="Crawl id written to every row (e.g. CC-MAIN-2024-10); also the folder under data_root, so one "
        "path component: letters, digits, '.', '_', '-', not starting with '.'.",
    )
    favor_precision: bool = Field(True, description="trafilatura favor_precision (FineWeb: true).")
    include_comments: bool = Field(False, description="Keep user comments below articles (FineWeb: false).")
    include_tables: bool = Field(True, description="Keep text from HTML tables.")
    deduplicate: bool = Field(True, description="trafilatura's in-document duplicate-segment removal.")
    max_page_bytes: int = Field(
        2_000_000, ge=1_000, description="HTTP payloads above this size are skipped (counted as page_too_large)."
    )
    timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="Hard limit per page in CPU seconds of the extraction worker (so independent of the machine's "
        "load); a page that uses more is killed and counted (timeout). Wall time is bounded at 6x this.",
    )
    min_text_chars: int = Field(1, ge=0, description="Documents with less extracted text are counted as empty.")
    strategy: Literal["fast_first", "fineweb"] = Field(
        "fast_first",
        description=(
            "fineweb: every page through trafilatura's full cascade (its own extractor compared with readability and "
            "justext), exactly as FineWeb. fast_first: trafilatura's fast mode first, the full cascade only for pages "
            "where fast mode yields fewer than full_retry_chars or less than full_retry_p_share of the page's <p> "
            "text. Measured (bench/RESULTS.md, bench/extract_fresh_set.py): the same F1 as fineweb on AEB (0.964 with "
            "the baseline fallback) and on both splits of a fresh page set, with 20-25 % fewer CPU-seconds on AEB."
        ),
    )
    full_retry_chars: int = Field(
        250,
        ge=1,
        description="fast_first: a fast-mode text shorter than this is re-extracted with the full cascade "
        "(250 = trafilatura's own MIN_EXTRACTED_SIZE, below which it reaches for its fallbacks).",
    )
    full_retry_p_share: float = Field(
        0.5,
        ge=0,
        description="fast_first: a fast-mode text shorter than this share of the characters in the page's <p> "
        "elements is re-extracted with the full cascade (fast mode missed most of the article: the full cascade's "
        "readability comparison takes over from text twice as long; 0.5 mirrors that rule). 0 turns the test off "
        "(the old criterion: AEB F1 0.003 below fineweb).",
    )
    fallback: Literal["none", "baseline", "readability", "justext"] = Field(
        "baseline",
        description=(
            "Extractor for pages trafilatura returns nothing for: trafilatura.baseline, or readability / justext as "
            "trafilatura ships them; 'none' drops them (empty_text). Its text passes trafilatura's duplicate-document "
            "test like any other. baseline raises AEB F1 (bench/RESULTS.md)."
        ),
    )


# Every label the bundled models give (lid.176.ftz and py3langid; tests/flows/test_config_refusals.py checks it): a
# language to keep must be one of them (or 'all'), else nothing would ever be kept. A configured model_path
# (GlotLID, …) has labels of its own and is not checked here.
BUNDLED_LANGUAGES = frozenset(
    (
        "ace af als am an ar ary arz as ast av az azb ba bar bcl be bg bh bn bo bpy br bs bxr ca cbk ce ceb "
        "ckb co crh cs cv cy da de diq dsb dty dv dz el eml en eo es et eu ext fa fi fo fr frr fuv fy ga gcf "
        "gcr gd gl gn gom grc gu gug guw gv ha hbo he hi hif hr hsb ht hu hy ia id ie ig ilo io is it ja jbo "
        "jv ka kab kik kk km kn ko krc ku kv kw ky la lb lez lg li lij lmo ln lo lrc lt ltg lv mai mg mhr min "
        "mk ml mn mr mrj ms mt mwl my myv mzn nah nap nds ne new nl nn no nso oc om or os pa pam pcm pfl pl "
        "pms pnb ps pt qu rm ro ru rue rw sa sah sc scn sco sd sdh se sh si sk sl sn so sq sr st su sv sw ta "
        "te tg th tk tl tr tt tyv ug uk ur uz uzs vec vep vi vls vo wa war wuu xal xh xmf yi yo yue zh zu zxx "
    ).split()
)


class LanguageConfig(_Config):
    """fastText lid.176 language identification."""

    languages: list[Annotated[str, Field(pattern=r"^(all|[a-z]{2,3}(_[A-Z][a-z]{3})?)$")]] = Field(
        default_factory=lambda: ["en"],
        description="ISO 639-1 codes to keep; ['all'] keeps every language (scores are still written).",
    )
    threshold: float = Field(0.65, ge=0.0, le=1.0, description="Minimum confidence of the kept language.")
    model_path: str | None = Field(
        None, description="Path to a fastText model (lid.176.bin, GlotLID). Default: the lid.176.ftz shipped offline."
    )
    second_opinion: Literal["langid", "none"] = Field(
        "langid",
        description="Second model asked when fastText is unsure or would keep the document: langid (py3langid, "
        "offline, 142 languages); the two distributions are averaged. 'none' = fastText alone.",
    )
    second_opinion_below: float = Field(
        0.5, ge=0.0, le=1.01, description="Ask the second opinion when fastText's top probability is below this."
    )
    second_opinion_keep_below: float = Field(
        0.95,
        ge=0.0,
        le=1.01,
        description="A kept label is also checked by the second opinion unless fastText's probability reaches this "
        "(near-certain labels, e.g. most web pages, skip it).",
    )
    second_opinion_weight: float = Field(
        0.6,
        ge=0.0,
        le=1.0,
        description="Weight of the second opinion in the averaged distribution (langid.py is the more accurate of the "
        "two on short texts: bench/langid_eval.py).",
    )
    second_opinion_combine: Literal["average", "veto"] = Field(
        "veto",
        description="How the second opinion's vote is used. average: the label with the highest weighted mean wins, "
        "with that mean as its score. veto: the same, except for a label fastText would keep: that label stands, "
        "scored with the higher of fastText's probability and the mean, unless langid.py gives it less than "
        "second_opinion_veto_below (a second model that is merely less sure on a short text cannot drop it; one that "
        "clearly objects still can).",
    )
    second_opinion_veto_below: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="veto: langid.py's probability for fastText's kept label below which the averaged vote decides.",
    )
    route_other_languages: bool = Field(
        False,
        description="Write documents of non-kept languages to per-language side outputs "
        "(_languages/{lang}/{shard}.parquet beside the output) instead of only counting them as dropped.",
    )

    @model_validator(mode="after")
    def _languages_known(self) -> LanguageConfig:
        unknown = sorted(set(self.languages) - BUNDLED_LANGUAGES - {"all"})
        if unknown and self.model_path is None:
            raise ValueError(f"languages: {', '.join(unknown)} not known to the bundled models (ISO 639 codes)")
        return self


class URLFilterConfig(_Config):
    """datatrove URLFilter (FineWeb's first step): blocklisted domains, URLs and words, with its bundled lists."""

    enabled: bool = True
    soft_word_threshold: int = Field(2, ge=1, description="Drop URLs containing at least this many soft-banned words.")
    use_integrated_lists: bool = Field(True, description="Use the blocklists shipped with datatrove (offline).")
    extra_domains: list[str] = Field(default_factory=list, description="More domains to block.")
    extra_urls: list[str] = Field(default_factory=list, description="More exact URLs to block.")
    banned_words: list[str] = Field(default_factory=list, description="More words that block a URL.")
    banned_subwords: list[str] = Field(default_factory=list, description="More substrings that block a URL.")
    soft_banned_words: list[str] = Field(default_factory=list, description="More soft-banned words.")


class GopherRepetitionConfig(_Config):
    """datatrove GopherRepetitionFilter, pinned to the FineWeb values."""

    enabled: bool = True
    dup_line_frac: float = Field(0.3, ge=0, le=1, description="Max fraction of duplicated lines.")
    dup_para_frac: float = Field(0.3, ge=0, le=1, description="Max fraction of duplicated paragraphs.")
    dup_line_char_frac: float = Field(0.2, ge=0, le=1, description="Max fraction of chars in duplicated lines.")
    dup_para_char_frac: float = Field(0.2, ge=0, le=1, description="Max fraction of chars in duplicated paragraphs.")
    top_n_grams: list[tuple[int, float]] = Field(
        default_factory=lambda: [(2, 0.2), (3, 0.18), (4, 0.16)],
        description="(n, max fraction of chars covered by the most frequent n-gram).",
    )
    dup_n_grams: list[tuple[int, float]] = Field(
        default_factory=lambda: [(5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)],
        description="(n, max fraction of chars covered by duplicated n-grams).",
    )


class GopherQualityConfig(_Config):
    """datatrove GopherQualityFilter, pinned to the FineWeb values."""

    enabled: bool = True
    min_doc_words: int = Field(50, ge=0, description="Minimum number of words.")
    max_doc_words: int = Field(100_000, ge=1, description="Maximum number of words.")
    min_avg_word_length: float = Field(3, ge=0, description="Minimum mean word length.")
    max_avg_word_length: float = Field(10, ge=0, description="Maximum mean word length.")
    max_symbol_word_ratio: float = Field(0.1, ge=0, description="Max ratio of '#' and '...' to words.")
    max_bullet_lines_ratio: float = Field(0.9, ge=0, le=1, description="Max fraction of lines starting with a bullet.")
    max_ellipsis_lines_ratio: float = Field(0.3, ge=0, le=1, description="Max fraction of lines ending in '...'.")
    max_non_alpha_words_ratio: float = Field(
        0.8, ge=0, le=1, description="Min fraction of words with an alphabetic char (datatrove's naming)."
    )
    min_stop_words: int = Field(2, ge=0, description="Min count of English stop words (the, be, to, of, ...).")


class C4QualityConfig(_Config):
    """datatrove C4QualityFilter as FineWeb runs it (no terminal-punctuation rule)."""

    enabled: bool = True
    split_paragraph: bool = Field(True, description="Apply line rules to newline-separated lines.")
    remove_citations: bool = Field(True, description="Remove wikipedia-style [1] citations.")
    filter_no_terminal_punct: bool = Field(False, description="Drop lines without terminal punctuation (FineWeb: off).")
    min_num_sentences: int = Field(5, ge=0, description="Drop documents with fewer sentences.")
    min_words_per_line: int = Field(3, ge=0, description="Drop lines with fewer words.")
    max_word_length: int = Field(1000, ge=1, description="Drop lines with a longer word.")
    filter_lorem_ipsum: bool = Field(True, description="Drop documents containing 'lorem ipsum'.")
    filter_javascript: bool = Field(True, description="Drop lines mentioning javascript.")
    filter_curly_bracket: bool = Field(True, description="Drop documents with '{'.")
    filter_policy: bool = Field(True, description="Drop lines with cookie/terms-of-use boilerplate.")


class FineWebQualityConfig(_Config):
    """datatrove FineWebQualityFilter, pinned to the FineWeb values."""

    enabled: bool = True
    line_punct_thr: float = Field(0.12, ge=0, le=1, description="Min fraction of lines ending in punctuation.")
    line_punct_exclude_zero: bool = Field(False, description="Do not drop documents with no punctuated line.")
    short_line_thr: float = Field(0.67, ge=0, le=1, description="Max fraction of short lines.")
    short_line_length: int = Field(30, ge=1, description="A line shorter than this (chars) is short.")
    char_duplicates_ratio: float = Field(0.01, ge=0, le=1, description="Max fraction of chars in duplicated lines.")
    new_line_ratio: float = Field(0.3, ge=0, le=1, description="Max ratio of newlines to words.")


class FilterConfig(_Config):
    """URL, language and quality filtering (FineWeb order: URL, language, Gopher repetition, Gopher quality, C4,
    FineWeb)."""

    url: URLFilterConfig = _section(URLFilterConfig, "URL blocklist.")
    language: LanguageConfig = _section(LanguageConfig, "Language identification.")
    gopher_repetition: GopherRepetitionConfig = _section(GopherRepetitionConfig)
    gopher_quality: GopherQualityConfig = _section(GopherQualityConfig)
    c4: C4QualityConfig = _section(C4QualityConfig)
    fineweb: FineWebQualityConfig = _section(FineWebQualityConfig)
    annotate_only: bool = Field(False, description="Write every row with scores and drop_reason; drop nothing.")


class DedupConfig(_Config):
    """MinHash near-duplicate removal. ``preset`` picks the LSH shape and the candidate check; a field given
    explicitly overrides its preset value. fineweb: FineWeb's (datatrove MinhashConfig) 5-grams, 14 bands x 8 rows
    = 112 permutations, no check. verified (the default): 18 bands x 6 rows = 108 permutations, whose steeper
    S-curve finds nearly every pair of Jaccard >= 0.8, and the exact shingle Jaccard check (>= 0.7) rejects the
    extra candidates below it (bench/RESULTS.md, fresh set)."""

    preset: Literal["fineweb", "verified"] = Field(
        "verified",
        description="fineweb: exactly FineWeb's 14x8 bands, no check. verified: 18x6 bands + exact Jaccard check "
        "(recall >= 0.98 at Jaccard >= 0.8, no false positive at <= 0.5 on the held-back set).",
    )
    ngram: int = Field(5, ge=1, le=32, description="Word n-gram size of the shingles.")
    num_bands: int = Field(18, ge=1, description="LSH bands (the preset's: fineweb 14, verified 18).")
    rows_per_band: int = Field(
        6, ge=1, description="Rows (hash values) per band (the preset's: fineweb 8, verified 6)."
    )
    seed: int = Field(1, description="Permutation seed (same seed = same signatures as datasketch.MinHash).")
    jaccard_check: bool = Field(
        True,
        description="Verify candidate pairs with exact shingle Jaccard before joining clusters (the preset's: "
        "fineweb off, verified on).",
    )
    jaccard_threshold: float = Field(0.7, ge=0, le=1, description="Minimum exact Jaccard when jaccard_check is on.")
    annotate_only: bool = Field(False, description="Keep duplicates; write minhash_cluster and is_duplicate only.")
    scope: Literal["crawl", "global"] = Field(
        "crawl",
        description="crawl: dedup within this run's crawl (FineWeb); global: also drop documents whose band hashes "
        "match a crawl added to the index before this one.",
    )
    index_dir: str | None = Field(
        None,
        description="Persisted band-hash index of earlier crawls (local dir). The refresh flow uses "
        "{data_root}/_dedup_index when unset; scope=global needs it.",
    )
    update_index: bool = Field(
        True, description="With index_dir: add this run's band hashes to the index under the inputs' crawl_id."
    )
    workers: int = Field(0, ge=0, le=256, description="Threads/processes for signatures and band grouping; 0 = cores.")
    batch_docs: int = Field(4096, ge=16, le=1_000_000, description="Documents read and hashed per batch.")

    @staticmethod
    def presets() -> dict[str, dict[str, Any]]:
        """The fields each preset sets (fineweb: datatrove's MinhashConfig defaults, n_grams 5, num_buckets 14,
        hashes_per_bucket 8, seed 1)."""
        return {
            "fineweb": {"ngram": 5, "num_bands": 14, "rows_per_band": 8, "seed": 1, "jaccard_check": False},
            "verified": {
                "ngram": 5, "num_bands": 18, "rows_per_band": 6, "seed": 1, "jaccard_check": True,
                "jaccard_threshold": 0.7,
            },
        }  # fmt: skip

    @model_validator(mode="before")
    @classmethod
    def _preset_fills_unset_fields(cls, data: Any) -> Any:
        """The preset's values for the fields not given (so ``preset=fineweb`` alone is FineWeb's recipe)."""
        if not isinstance(data, dict):
            return data
        values = cls.presets().get(data.get("preset", cls.model_fields["preset"].default))
        return data if values is None else {**values, **data}  # an unknown preset: the Literal names it

    @model_validator(mode="after")
    def _global_scope_needs_index(self) -> DedupConfig:
        if self.scope == "global" and not self.index_dir:
            raise ValueError("scope=global needs index_dir (the band-hash index of earlier crawls)")
        return self

    @property
    def num_perm(self) -> int:
        return self.num_bands * self.rows_per_band


PIIEntity = Literal[
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "IP_ADDRESS",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "CRYPTO",
    "MAC_ADDRESS",
    "UK_NINO",
    "URL",
    "PERSON",  # NER: needs spacy_model
    "LOCATION",  # NER: needs spacy_model
]
PIIReplacement = Literal["placeholder", "fake", "keep"]


class PIIConfig(_Config):
    """PII scrubbing with presidio-analyzer's recognizers: pattern + checksum ones need no NLP model; PERSON and
    LOCATION need an installed spaCy pipeline (``spacy_model``), which is never downloaded."""

    entities: list[PIIEntity] = Field(
        # every type but the NER ones and URL (links are content, not personal data)
        default_factory=lambda: [e for e in get_args(PIIEntity) if e not in ("URL", "PERSON", "LOCATION")],
        min_length=1,
        description="presidio entity types to find. PERSON and LOCATION switch on spaCy NER (see spacy_model).",
    )
    min_score: float = Field(0.4, ge=0, le=1, description="Minimum presidio score for a span to count.")
    phone_regions: list[Annotated[str, Field(pattern=r"^[A-Z]{2}$")]] = Field(
        default_factory=lambda: ["US", "GB", "DE", "FR", "ES", "IT", "NL", "IN", "CA", "AU", "BR", "CH"],
        min_length=1,
        description="Regions phonenumbers tries for numbers without a '+' prefix.",
    )
    public_ips_only: bool = Field(
        True, description="FineWeb policy: private, loopback, link-local and documentation IPs are not PII."
    )
    replacement: dict[PIIEntity, PIIReplacement] = Field(
        default_factory=dict,
        description="Per entity type: 'placeholder' writes <ENTITY> (e.g. <EMAIL_ADDRESS>; the default for types "
        "not listed), 'fake' writes fake_values[ENTITY], 'keep' leaves the text as it is (the span is still "
        "reported in pii_spans and pii_counts).",
    )
    fake_values: dict[PIIEntity, str] = Field(
        default_factory=lambda: {
            "EMAIL_ADDRESS": "email@example.com",  # FineWeb's (datatrove PIIFormatter) first replacement
            "PHONE_NUMBER": "555-0100",  # 555-0100..0199: reserved for fiction
            "IP_ADDRESS": "192.0.2.1",  # TEST-NET-1 (RFC 5737): documentation, not PII under public_ips_only
            "CREDIT_CARD": "4111 1111 1111 1111",  # the usual Visa test number
            "IBAN_CODE": "GB82 WEST 1234 5698 7654 32",  # the ECBS example IBAN
            "US_SSN": "078-05-1120",  # the voided Woolworth wallet-card SSN
            "CRYPTO": "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2",  # the Bitcoin wiki's example address
            "MAC_ADDRESS": "00:00:5E:00:53:01",  # RFC 7042 documentation range
            "UK_NINO": "QQ 12 34 56 C",  # HMRC's example prefix QQ
            "URL": "https://example.com/",
            "PERSON": "Jane Doe",
            "LOCATION": "Springfield",
        },
        description="The fixed fake value written for each entity type whose replacement is 'fake'.",
    )
    spacy_model: str = Field(
        "en_core_web_lg",
        min_length=1,
        description="spaCy pipeline (installed package name or directory) for PERSON and LOCATION; used only when "
        "entities lists one of them. Never downloaded: a missing model is an error naming it.",
    )
    ner_batch_size: int = Field(32, ge=1, le=4096, description="Documents per spaCy nlp.pipe batch (NER only).")
    annotate_only: bool = Field(False, description="Do not replace; write pii_spans and pii_counts only.")

    @field_validator("phone_regions")
    @classmethod
    def _known_regions(cls, regions: list[str]) -> list[str]:
        import phonenumbers

        unknown = sorted(set(regions) - phonenumbers.SUPPORTED_REGIONS)
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not a region phonenumbers knows (ISO 3166-1 alpha-2)")
        return regions

    @model_validator(mode="after")
    def _fake_values_cover_fake_replacements(self) -> PIIConfig:
        missing = sorted(e for e, how in self.replacement.items() if how == "fake" and e not in self.fake_values)
        if missing:
            raise ValueError(f"replacement: 'fake' for {', '.join(missing)} needs fake_values for it")
        return self


class TokenizeConfig(_Config):
    """Byte-level BPE training (tokenizers) and llm.c-format token shards with Parquet copies and lineage."""

    vocab_size: int = Field(32_768, ge=260, le=1 << 20, description="Target vocabulary size (incl. specials).")
    min_frequency: int = Field(2, ge=1, description="Minimum pair frequency for a merge.")
    train_bytes: int = Field(
        1_000_000_000,
        ge=1,
        description="UTF-8 bytes of train-split text, chosen by a seeded hash of the document id, to train the BPE on.",
    )
    val_fraction: float = Field(0.05, gt=0, lt=1, description="Fraction of documents (by id hash) in the val split.")
    shard_tokens: int = Field(
        100_000_000, ge=1024, le=2**31 - 1, description="Tokens per .bin shard (the last of a split is shorter)."
    )
    eot_token: str = Field("<|endoftext|>", description="Document separator (first special token, id 0).")
    special_tokens: list[str] = Field(
        default_factory=list, description="Further special tokens, given ids 1, 2, … after the end-of-text token."
    )
    tokenizer_file: str | None = Field(
        None,
        description="Encode with this tokenizer.json instead of training one (keeps token ids across refreshes).",
    )
    shuffle_seed: int | None = Field(
        None, description="Shuffle each split's documents across its shards with this seed; None keeps input order."
    )
    parquet_tokens: bool = Field(True, description="Also write Parquet token shards (id, tokens) beside the .bin.")
    seed: int = Field(0, description="Seed for the train/val hash and the tokenizer's training sample.")


# The context length of each TrainConfig.preset (pipelines/train/model.PRESETS takes it from here): GPT-2 124M's
# n_positions, and tiny's own. A longer block_size is refused: it is not the preset's model any more.
PRESET_CONTEXT: dict[str, int] = {"tiny": 128, "gpt2-124m": 1024, "gpt2-350m": 1024, "gpt-1b": 2048}


class SlurmConfig(_Config):
    """How ``launcher=slurm`` submits the training: one sbatch job, ``srun`` starting one task per device."""

    partition: str | None = Field(None, description="sbatch --partition (None: the cluster's default).")
    account: str | None = Field(None, description="sbatch --account.")
    time_limit: str = Field("24:00:00", pattern=r"^[0-9:-]+$", description="sbatch --time (D-HH:MM:SS).")
    cpus_per_task: int = Field(1, ge=1, description="sbatch --cpus-per-task.")
    gpus_per_node: int = Field(0, ge=0, description="sbatch --gpus-per-node (0: a CPU job).")
    extra_args: list[str] = Field(
        default_factory=list, description="More #SBATCH options, e.g. ['--qos=high', '--constraint=h100']."
    )
    poll_seconds: float = Field(5.0, gt=0, le=600, description="How often the task asks Slurm for the job's state.")


class TrainConfig(_Config):
    """GPT pre-training with Lightning (nanoGPT-style model)."""

    preset: Literal["tiny", "gpt2-124m", "gpt2-350m", "gpt-1b"] = Field(
        "tiny", description="Model size preset (gpt-1b: FSDP on GPUs)."
    )
    block_size: int | None = Field(
        None, ge=8, description="Context length; default and maximum: the preset's (tiny 128, gpt2-124m 1024)."
    )
    batch_size: int = Field(16, ge=1, description="Sequences per device per micro-step.")
    accumulate_grad_batches: int = Field(1, ge=1, description="Gradient accumulation steps.")
    max_steps: int = Field(300, ge=1, description="Optimizer steps.")
    learning_rate: float = Field(3e-3, gt=0, description="Peak learning rate (AdamW).")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Final LR as a fraction of the peak (cosine).")
    warmup_steps: int = Field(30, ge=0, description="Linear warmup steps.")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay on 2-D weights.")
    grad_clip: float = Field(1.0, ge=0, description="Gradient norm clip (0 = off).")
    val_every: int = Field(50, ge=1, description="Validate every N steps.")
    val_batches: int = Field(20, ge=1, description="Batches per validation.")
    precision: str = Field("auto", description="'auto' = bf16-mixed on GPU, 32 on CPU; or any Lightning value.")
    devices: int | str = Field("auto", description="Devices per node.")
    num_nodes: int = Field(1, ge=1, description="Nodes.")
    strategy: Literal["auto", "ddp", "fsdp"] = Field("auto", description="Distributed strategy.")
    compile: bool = Field(False, description="torch.compile the model.")
    activation_checkpointing: bool = Field(
        False, description="Recompute each block's activations in backward (less memory, ~30 % more compute)."
    )
    launcher: Literal["local", "torchrun", "slurm"] = Field(
        "local",
        description="How the ranks start: local (a subprocess; Lightning starts the other local ranks), torchrun "
        "(torchrun on this machine; with rdzv_endpoint one node of several), slurm (sbatch + srun, followed to the "
        "job's end).",
    )
    rdzv_endpoint: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9.\-]+:[0-9]{1,5}$",
        description="launcher=torchrun with num_nodes > 1: the c10d rendezvous HOST:PORT every node joins.",
    )
    slurm: SlurmConfig = Field(default_factory=SlurmConfig, description="launcher=slurm: the sbatch settings.")
    seed: int = Field(1337, description="Seed for init and data order.")
    peak_flops: float | None = Field(None, gt=0, description="Device peak FLOP/s for MFU; default by device type.")
    sample_prompt: str = Field("The", description="Prompt of the text sample generated after training.")
    sample_tokens: int = Field(60, ge=1, description="Tokens generated for the sample.")

    @model_validator(mode="after")
    def _block_size_within_context(self) -> TrainConfig:
        context = PRESET_CONTEXT[self.preset]
        if self.block_size is not None and self.block_size > context:
            raise ValueError(f"block_size {self.block_size} exceeds preset {self.preset}'s context of {context}")
        return self


class PipelineConfig(_Config):
    """Everything an end-to-end run needs."""

    data_root: str = Field("data", description="Root of all stage outputs (local path or fsspec URL).")
    lock_wait_seconds: float = Field(
        0.0,
        ge=0,
        description="Another run holds the data root: wait this long for it, then refuse (0: refuse at once).",
    )
    inputs: list[str] = Field(
        default_factory=list, description="WARC paths/globs/URLs; empty = the built-in sample (generated on demand)."
    )
    crawl: CrawlConfig | None = Field(
        None, description="Take the inputs from a Common Crawl crawl (sets extract.crawl_id); excludes inputs."
    )
    sample: SampleConfig = _section(SampleConfig, "Built-in sample settings.")
    extract: ExtractConfig = _section(ExtractConfig)
    filter: FilterConfig = _section(FilterConfig)
    dedup: DedupConfig = _section(DedupConfig)
    pii: PIIConfig = _section(PIIConfig)
    tokenize: TokenizeConfig = _section(TokenizeConfig)
    train: TrainConfig = _section(TrainConfig)
    stage_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Config of stages registered by plugins (pipelines.registry), by stage name.",
    )
    runner: RunnerConfig = _section(RunnerConfig, "Where the data stages' tasks run (local threads or Ray).")

    @classmethod
    def _cluster_paths_are_absolute(cls, data: Any) -> Any:
        """On Ray, tasks run in other processes (and machines) with another working directory: a local data root
        is made absolute before anything is derived from it."""
        if not isinstance(data, dict):
            return data
        runner = data.get("runner") or {}
        kind = runner.kind if isinstance(runner, RunnerConfig) else runner.get("kind")
        root = data.get("data_root", cls.model_fields["data_root"].default)
        if kind != "ray" or not isinstance(root, str) or "://" in root:
            return data
        return {**data, "data_root": str(Path(root).absolute())}

    @model_validator(mode="before")
    @classmethod
    def _crawl_sets_crawl_id(cls, data: Any) -> Any:
        """With a crawl, outputs go to {data_root}/{crawl_id}/...: extract.crawl_id follows crawl.crawl_id."""
        if not isinstance(data, dict) or not data.get("crawl"):
            return data
        if data.get("inputs"):
            raise ValueError("set either inputs or crawl, not both")
        crawl, extract = data["crawl"], data.get("extract") or {}
        crawl_id = crawl.crawl_id if isinstance(crawl, CrawlConfig) else crawl.get("crawl_id")
        if crawl_id is None:
            return data  # validation reports the missing crawl.crawl_id
        current = extract.crawl_id if isinstance(extract, ExtractConfig) else extract.get("crawl_id")
        if current not in (None, ExtractConfig.model_fields["crawl_id"].default, crawl_id):
            raise ValueError(f"extract.crawl_id {current!r} differs from crawl.crawl_id {crawl_id!r}")
        if isinstance(extract, ExtractConfig):
            extract = extract.model_copy(update={"crawl_id": crawl_id})
        else:
            extract = {**extract, "crawl_id": crawl_id}
        return {**data, "extract": extract}

    @model_validator(mode="before")
    @classmethod
    def _dedup_index_under_data_root(cls, data: Any) -> Any:
        """The cross-crawl dedup index lives at {data_root}/_dedup_index unless dedup.index_dir names another
        (local data roots only): each refresh adds its crawl, and dedup.scope=global reads the earlier ones."""
        if not isinstance(data, dict):
            return data
        data = cls._cluster_paths_are_absolute(data)
        root = data.get("data_root", cls.model_fields["data_root"].default)
        if not isinstance(root, str) or "://" in root:
            return data
        index_dir = str(Path(root) / "_dedup_index")
        dedup = data.get("dedup") or {}
        if isinstance(dedup, DedupConfig):
            if dedup.index_dir is None:
                dedup = dedup.model_copy(update={"index_dir": index_dir})
        elif isinstance(dedup, dict) and dedup.get("index_dir") is None:
            dedup = {**dedup, "index_dir": index_dir}
        if isinstance(dedup, dict):
            dedup = _adopt_index_preset(dedup)
        return {**data, "dedup": dedup}


# The DedupConfig fields an index is built with (pipelines/dedup.band_index): a run must use the index's values.
INDEX_PARAMS = ("ngram", "num_bands", "rows_per_band", "seed")


def _adopt_index_preset(dedup: dict[str, Any]) -> dict[str, Any]:
    """A data root whose dedup index was built with another preset's parameters (e.g. ``fineweb``'s, the default
    before ``verified``) keeps using them while the config names no MinHash parameter of its own: the scheduled
    refresh of an existing data root goes on instead of refusing the index (IndexMismatchError). Choosing a preset
    or a parameter explicitly still refuses a mismatching index."""
    if any(key in dedup for key in ("preset", *INDEX_PARAMS)) or not dedup.get("index_dir"):
        return dedup
    meta = Path(str(dedup["index_dir"])) / "index.json"
    try:
        params = json.loads(meta.read_text())["params"] if meta.is_file() else None
    except (OSError, ValueError, KeyError):
        return dedup  # unreadable: the dedup stage names the file
    for name, values in DedupConfig.presets().items():
        if params == {key: values[key] for key in INDEX_PARAMS} and name != DedupConfig.model_fields["preset"].default:
            logger.warning("%s was built with the %s preset's parameters: dedup uses them (dedup.preset=%s)",
                           meta, name, name)  # fmt: skip
            return {**dedup, "preset": name}
    return dedup


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def load_config(
    model: type[_Config],
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    base: _Config | None = None,
) -> Any:
    """Build a config from ``base`` (default: the model's defaults), then an optional YAML file, then
    ``dotted.key=value`` overrides (values parsed as YAML).

    Unknown or invalid fields raise pydantic's ValidationError naming the field.
    """
    data: dict[str, Any] = base.model_dump(mode="json") if base is not None else {}
    if path:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of {model.__name__} fields")
        data.update(loaded)
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"--set expects dotted.key=value, got {item!r}")
        key, raw = item.split("=", 1)
        _set_dotted(data, key.strip(), yaml.safe_load(raw))
    return model.model_validate(data)
