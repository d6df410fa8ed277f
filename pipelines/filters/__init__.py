"""URL, language and quality filtering of one shard: FineWeb's recipe with datatrove's filters, every score kept.

    lmpipe task filter --input IN.parquet --output OUT.parquet [--annotate-only]

FineWeb's order: datatrove's URLFilter (bundled blocklists), fastText lid.176 language ID (with a langid.py second
opinion, pipelines/language_id.py), then GopherRepetitionFilter, GopherQualityFilter, C4QualityFilter (without the
terminal-punctuation rule) and FineWebQualityFilter, every parameter taken from ``FilterConfig`` (pinned to the
FineWeb values). A document stops at the first rule that rejects it; its ``drop_reason`` names the family and
datatrove's rule: ``empty_text``, ``url_<rule>``, ``language_not_kept``, ``language_low_score``,
``gopher_rep_<rule>``, ``gopher_<rule>``, ``c4_<rule>``, ``fineweb_<rule>``.

One module per family (``url``, ``language``, ``gopher_repetition``, ``gopher_quality``, ``c4``, ``fineweb``), each a
``FilterFamily`` (family.py): its score columns and their types, how it measures a document, how it decides from the
stored scores, its thresholds and the settings that need a re-measure. ``chain.FAMILIES`` lists them in order, and
the chain (``FilterChain``), the Parquet schema (``score_schema``), the decision from stored scores
(``FilterRules.decide``) and ``lmpipe explore`` all iterate over it; a parity test holds the decisions equal to
datatrove's own filter objects. A score is null when the document did not reach its family. With ``annotate_only``
every family scores every document (so ``lmpipe explore`` can also relax a threshold) and nothing is dropped; the rows
whose ``drop_reason`` is null are exactly the rows a normal run writes.

C4QualityFilter rewrites the text (drops javascript / policy / short lines, citations); FineWeb keeps that rewritten
text, and so do we: kept rows carry it and FineWeb's scores are measured on it. Dropped rows keep their original text.
With ``language.route_other_languages``, documents of non-kept languages are also written, per language, to
``_languages/{lang}/{shard}.parquet`` beside the output (still counted as ``language_not_kept``). The stage itself
(stage.py) streams shards through pipelines/documents.py.
"""

from __future__ import annotations

from pipelines.filters.chain import FAMILIES, SCORE_COLUMNS, FilterChain, FilterOutcome, FilterRules, score_schema
from pipelines.filters.family import Document, FilterFamily
from pipelines.filters.stage import BATCH_ROWS, CONFIG_METADATA_KEY, run_filter
from pipelines.language_id import (
    LanguageModelNotFoundError,
    default_language_model_path,
    identify_language,
    load_language_model,
)

__all__ = [
    "BATCH_ROWS",
    "CONFIG_METADATA_KEY",
    "FAMILIES",
    "SCORE_COLUMNS",
    "Document",
    "FilterChain",
    "FilterFamily",
    "FilterOutcome",
    "FilterRules",
    "LanguageModelNotFoundError",
    "default_language_model_path",
    "identify_language",
    "load_language_model",
    "run_filter",
    "score_schema",
]
