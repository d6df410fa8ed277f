"""PII detection quality per entity type on the labelled cases in ../shared/data/pii: precision and recall.

    .venv/bin/python bench/pii_quality.py                            # print the table
    .venv/bin/python bench/pii_quality.py --write bench/RESULTS.md   # and replace its section in RESULTS.md

Two sources, scored as documented in ``score_presidio_cases`` and ``score_datatrove_cases``:
- presidio's own recognizer tests (presidio_recognizer_cases.jsonl): span-level, exact (start, end). All pattern
  entities run at once, as the pipeline runs them (overlap resolution included); the public-IP policy is off here
  because these cases label private addresses as IPs too.
- datatrove's PIIFormatter test (pii_removal_input_output.json): the spans datatrove's own PIIFormatter replaces in
  the input are the gold e-mails and public IPs, run with lmpipe's default policy (public IPs only).
A third source is made here, not read: the fresh Faker set of bench/pii_fresh_set.py (``--fresh N`` sentences per
type and split, dev and heldout), scored span-level by ``score_fresh`` for lmpipe and for presidio's default
recognizers alone (``presidio_alone_found``).
tests/pipelines/test_pii.py holds lmpipe to the acceptance figures with these same scorers.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_args

from bench.markdown import replace_section
from bench.pii_fresh_set import ENTITIES as FRESH_ENTITIES
from bench.pii_fresh_set import Example, generate
from pipelines.config import PIIConfig, PIIEntity
from pipelines.pii import PIIScrubber, find_pii, recognizers

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pii"
PRESIDIO_CASES = "presidio-analyzer-cases/presidio_recognizer_cases.jsonl"
DATATROVE_CASES = "datatrove/pii_removal_input_output.json"
PRESIDIO_DEFAULT_LENIENCY = 1  # PhoneRecognizer's default, which lmpipe uses
PATTERN_ENTITIES = [e for e in get_args(PIIEntity) if e not in ("PERSON", "LOCATION")]  # no NER model here
SECTION_START = "<!-- pii_quality:start -->"
SECTION_END = "<!-- pii_quality:end -->"


@dataclass
class Score:
    """Span counts for one entity type on one source."""

    entity: str
    source: str
    cases: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0
    optional: int = 0  # positives presidio itself scores below min_score: neither required nor a false positive
    skipped: int = 0  # cases for another recognizer setting (phone leniency)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    def __add__(self, other: Score) -> Score:
        return Score(
            self.entity,
            "all",
            *(getattr(self, f) + getattr(other, f) for f in ("cases", "tp", "fp", "fn", "optional", "skipped")),
        )


def presidio_cases(data: Path = DEFAULT_DATA) -> list[dict]:
    return [json.loads(line) for line in (data / PRESIDIO_CASES).read_text().splitlines() if line.strip()]


def datatrove_constants(data: Path = DEFAULT_DATA) -> dict[str, str]:
    return json.loads((data / DATATROVE_CASES).read_text())["constants"]


def presidio_config(entities: list[str] | None = None) -> PIIConfig:
    return PIIConfig(entities=entities or PATTERN_ENTITIES, public_ips_only=False)


def score_presidio_cases(entity: str, cases: list[dict], cfg: PIIConfig) -> Score:
    """Span-level counts of lmpipe on presidio's cases for ``entity`` (only spans of that entity count).

    - a TP is an exact (start, end) match with ``expected_positions`` / ``expected_res`` (a labelled span is first
      trimmed of whitespace: one UK_NINO label includes the space before the number, which presidio's current
      recognizer does not); cases that give only ``expected_len`` are matched by count;
    - positives that presidio itself scores below ``cfg.min_score`` (its label's upper bound, or the recognizer's
      own score on the text: the 0.1-score IPv6 "::", the 0.05-score bare 9-digit SSNs) are optional: a
      precision-oriented scrubber need not redact them, and finding one is no FP;
    - phone cases with a ``leniency`` other than presidio's default describe another recognizer setting: skipped.
    """
    score = Score(entity, "presidio")
    recognizer = dict(recognizers(cfg))[entity]
    for case in cases:
        if case["entity"] != entity:
            continue
        if case.get("leniency", PRESIDIO_DEFAULT_LENIENCY) != PRESIDIO_DEFAULT_LENIENCY:
            score.skipped += 1
            continue
        score.cases += 1
        text = case.get("text", case.get("iban"))
        expected = [_trim(text, *p) for p in case.get("expected_positions", case.get("expected_res", []))]
        ranges = case.get("expected_score_ranges") or []
        own = {(r.start, r.end): r.score for r in recognizer.analyze(text, entities=[entity], nlp_artifacts=None)}
        optional = {p for p, (_, high) in zip(expected, ranges, strict=False) if high != "max" and high < cfg.min_score}
        optional |= {p for p in expected if own.get(p, 1.0) < cfg.min_score}
        found = [(s.start, s.end) for s in find_pii(text, cfg) if s.entity == entity]
        if expected:
            required = [p for p in expected if p not in optional]
            tp = sum(p in found for p in required)
            score.tp += tp
            score.fn += len(required) - tp
            score.fp += sum(f not in expected for f in found)
            score.optional += len(optional)
        else:
            tp = min(len(found), case["expected_len"])
            score.tp += tp
            score.fn += case["expected_len"] - tp
            score.fp += len(found) - tp
    return score


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def datatrove_spans(text: str) -> dict[str, list[tuple[int, int]]]:
    """The (start, end) spans of ``text`` that datatrove's own PIIFormatter replaces, per entity type.

    Its e-mail replacer runs first and the IP replacer on the result, as in ``PIIFormatter.format``; both keep a
    match the validator rejects (a private IP) as it is.
    """
    from datatrove.pipeline.formatters.pii import PIIFormatter

    formatter = PIIFormatter()
    emails = [m.span() for m in formatter.emails_replacer.regex.finditer(text)]
    # After e-mails became a replacement, the IP regex runs on what is left: IPs inside an e-mail are gone.
    ips = [
        m.span()
        for m in formatter.ip_replacer.regex.finditer(text)
        if formatter.ip_replacer.validator(m.group(0)) and not any(a <= m.start() < b for a, b in emails)
    ]
    return {"EMAIL_ADDRESS": emails, "IP_ADDRESS": ips}


def score_datatrove_cases(constants: dict[str, str], cfg: PIIConfig | None = None) -> dict[str, Score]:
    """lmpipe against datatrove's PIIFormatter on datatrove's test inputs, line by line.

    Gold = the spans datatrove replaces (``datatrove_spans``). A gold span is a TP when one lmpipe span of the same
    type covers it, else an FN; an lmpipe span that overlaps no gold span of its type is an FP. (Covering, not exact:
    where datatrove redacts only 'email@example.com' of 'email..email@example.com', lmpipe's span is the whole
    address.)
    """
    cfg = cfg or PIIConfig(entities=["EMAIL_ADDRESS", "IP_ADDRESS"])
    scores = {e: Score(e, "datatrove") for e in ("EMAIL_ADDRESS", "IP_ADDRESS")}
    for key in ("EMAIL_TEST_INPUT", "IP_TEST_INPUT"):
        for line in constants[key].split("\n"):
            gold = datatrove_spans(line)
            found = find_pii(line, cfg)
            for entity, score in scores.items():
                ours = [(s.start, s.end) for s in found if s.entity == entity]
                score.cases += bool(line.strip())
                for a, b in gold[entity]:
                    covered = any(s <= a and b <= e for s, e in ours)
                    score.tp += covered
                    score.fn += not covered
                score.fp += sum(not any(s < b and a < e for a, b in gold[entity]) for s, e in ours)
    return scores


def quality_table(data: Path = DEFAULT_DATA) -> list[Score]:
    cases = presidio_cases(data)
    cfg = presidio_config()
    rows = [score_presidio_cases(entity, cases, cfg) for entity in PATTERN_ENTITIES]
    dt = score_datatrove_cases(datatrove_constants(data))
    for entity in ("EMAIL_ADDRESS", "IP_ADDRESS"):
        i = next(i for i, r in enumerate(rows) if r.entity == entity)
        rows[i + 1 : i + 1] = [dt[entity], rows[i] + dt[entity]]
    return rows


# ---------------------------------------------------------------------------------------------------------------
# The fresh Faker set (bench/pii_fresh_set.py)

Found = list[list[tuple[str, int, int]]]  # per sentence: (entity, start, end) of each detected span


@dataclass
class FreshScore:
    """Span-level counts on one split for one detector: recall per type, precision over every detection."""

    detector: str
    split: str
    sentences: int = 0
    tp: Counter[str] = field(default_factory=Counter)  # gold spans found, per type
    fn: Counter[str] = field(default_factory=Counter)
    hits: int = 0  # detections that overlap a gold span of their own type
    fp: Counter[str] = field(default_factory=Counter)  # other detections, per detected type

    def recall(self, entity: str) -> float:
        """Share of ``entity``'s gold spans found (1.0 when there are none)."""
        n = self.tp[entity] + self.fn[entity]
        return self.tp[entity] / n if n else 1.0

    @property
    def precision(self) -> float:
        n = self.hits + sum(self.fp.values())
        return self.hits / n if n else 1.0


def score_fresh(examples: list[Example], found: Found, detector: str, split: str) -> FreshScore:
    """A gold span is found when a detected span of its type overlaps it; a detection that overlaps no gold span of
    its own type (on a negative sentence, or of the wrong type) is a false positive."""
    score = FreshScore(detector, split, sentences=len(examples))
    for ex, spans in zip(examples, found, strict=True):
        for entity, a, b in ex.gold:
            hit = any(e == entity and s < b and a < t for e, s, t in spans)
            score.tp[entity] += hit
            score.fn[entity] += not hit
        for e, s, t in spans:
            if any(e == entity and s < b and a < t for entity, a, b in ex.gold):
                score.hits += 1
            else:
                score.fp[e] += 1
    return score


def lmpipe_found(examples: list[Example], cfg: PIIConfig | None = None) -> Found:
    """lmpipe's default PIIConfig (every default pattern type runs, so any of them can be a false positive), each
    sentence with its language, as run_pii passes a document's ``language`` column."""
    scrubber = PIIScrubber(cfg or PIIConfig())
    spans = scrubber.find_batch([ex.text for ex in examples], languages=[ex.language for ex in examples])
    return [[(s.entity, s.start, s.end) for s in row] for row in spans]


def presidio_alone_found(examples: list[Example]) -> Found:
    """presidio-analyzer's default recognizers for the five types, each called on the whole text with its defaults
    (phone regions, leniency, patterns); every result with a score > 0 counts, as AnalyzerEngine's default
    threshold keeps. The e-mail recognizer's tldextract reads the suffix list bundled in its wheel (no network)."""
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
    )

    from pipelines.pii import _offline_tld_extractor

    class OfflineSuffixEmail(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return _offline_tld_extractor()(pattern_text).fqdn != ""

    recognizers_ = [CreditCardRecognizer(), IbanRecognizer(), IpRecognizer(), PhoneRecognizer(), OfflineSuffixEmail()]
    found: Found = []
    for ex in examples:
        row = []
        for rec in recognizers_:
            for r in rec.analyze(ex.text, entities=rec.supported_entities, nlp_artifacts=None):
                if r.score > 0:
                    row.append((r.entity_type, r.start, r.end))
        found.append(row)
    return found


def fresh_table(n: int, splits: tuple[str, ...] = ("dev", "heldout")) -> list[FreshScore]:
    """lmpipe and presidio alone on each split of the fresh set, ``n`` positives per type and ``n`` negatives."""
    rows = []
    for split in splits:
        examples = generate(split, n)
        rows.append(score_fresh(examples, lmpipe_found(examples), "lmpipe", split))
        rows.append(score_fresh(examples, presidio_alone_found(examples), "presidio alone", split))
    return rows


def fresh_markdown(rows: list[FreshScore], n: int) -> list[str]:
    """The fresh-set table's Markdown lines: per split and detector, recall per type, precision, FPs by type."""
    lines = [
        "",
        f"## Fresh Faker set (bench/pii_fresh_set.py): {n} sentences per type + {n} without PII, per split",
        "",
        "Span-level: a value counts as found when a detected span of its type overlaps it; precision over every "
        "detected span (all of lmpipe's default types), negatives included. dev was looked at while tuning; "
        "heldout (other seed, templates and locales) only at the end.",
        "",
        "| split | detector | " + " | ".join(f"{e} R" for e in FRESH_ENTITIES) + " | precision | FP by type |",
        "|---|---|" + "---:|" * (len(FRESH_ENTITIES) + 1) + "---|",
    ]
    for r in rows:
        recalls = " | ".join(f"{r.recall(e):.3f}" for e in FRESH_ENTITIES)
        fps = ", ".join(f"{e} {k}" for e, k in sorted(r.fp.items())) or "none"
        lines.append(f"| {r.split} | {r.detector} | {recalls} | {r.precision:.3f} | {fps} |")
    return lines


def markdown(rows: list[Score], command: str, fresh: list[str] | None = None) -> str:
    counts = Counter(c["entity"] for c in presidio_cases())
    unsupported = sorted(e for e in counts if e not in PATTERN_ENTITIES)
    lines = [
        SECTION_START,
        "# PII: detection quality per entity type (../shared/data/pii)",
        "",
        f"Produced by `{command}`; method in the script's docstring. Exact spans on presidio's cases; datatrove's "
        "PIIFormatter output as gold on datatrove's cases (public IPs only, as FineWeb).",
        "",
        "| entity | source | cases | TP | FP | FN | optional | precision | recall |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.entity} | {r.source} | {r.cases} | {r.tp} | {r.fp} | {r.fn} | {r.optional} | "
            f"{r.precision:.3f} | {r.recall:.3f} |"
        )
    lines += [
        "",
        f"Not scored: presidio cases for types lmpipe does not run ({', '.join(unsupported)}: weak patterns "
        "without a checksum); phone cases for a non-default leniency "
        f"({sum(r.skipped for r in rows if r.source == 'presidio')}).",
        *(fresh or []),
        SECTION_END,
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the pii/ folder of ../shared/data")
    parser.add_argument("--write", type=Path, help="replace the PII quality section of this Markdown file")
    parser.add_argument("--fresh", type=int, default=400, help="fresh-set sentences per type and split (0: none)")
    parser.add_argument("--split", choices=("dev", "heldout", "both"), default="both", help="fresh-set split(s)")
    args = parser.parse_args(argv)
    rows = quality_table(args.data)
    command = ".venv/bin/python bench/pii_quality.py" + (f" --write {args.write}" if args.write else "")
    splits = ("dev", "heldout") if args.split == "both" else (args.split,)
    fresh = fresh_markdown(fresh_table(args.fresh, splits), args.fresh) if args.fresh else None
    section = markdown(rows, command, fresh)
    print(section)
    if args.write:
        replace_section(args.write, section, SECTION_START, SECTION_END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
