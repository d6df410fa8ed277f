"""The run's books: every document of a refresh is accounted for, stage to stage and shard to shard.

Each task checks its own counts when it commits a shard (``StageStats.check``: in = kept + Σ dropped[reason]). What
no single task can see is checked here, once the chain has run (the refresh flow calls ``check_chain``):

- per stage and shard, what a stage read is what the stage before it kept (``docs_in`` of every per-shard phase ==
  the previous stage's ``docs_kept`` for that shard), and no shard went missing between stages;
- what a stage says it kept is what its output holds (the rows of each per-shard Parquet it published);
- a phase over all shards (dedup's pairs and clusters, tokenize's index) read every document the stage was given;
- the token counts agree three ways: the .bin headers, the Parquet token shards (each document's tokens plus its
  end-of-text separator) and meta.json, and those with the stage's own figure (``check_token_dir``).

A violation raises ``AccountingError`` naming the stage, the phase and the shard (or file): the run fails instead of
reporting a funnel that does not add up.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.errors import LmpipeError
from pipelines.shards import shard_id
from pipelines.stats import StageStats
from pipelines.token_shards import read_header


class AccountingError(LmpipeError, ValueError):
    """Documents or tokens do not add up between stages, shards or files (a lost or duplicated document)."""


@dataclass(frozen=True)
class PhaseRun:
    """What one phase of one chain stage did: the stage, the phase's spec, its planned calls (``registry.Call``) and
    the StageStats each call returned (in call order)."""

    stage: str
    phase: Any  # registry.StageSpec (not imported: registry imports the stages, which may import this module)
    calls: Sequence[Any]
    results: Sequence[StageStats]


def _fail(run: PhaseRun, shard: str, message: str) -> None:
    where = run.stage if run.phase.name == run.stage else f"{run.stage} ({run.phase.name})"
    raise AccountingError(f"accounting: stage {where}, shard {shard}: {message}")


def _reconciled(run: PhaseRun) -> None:
    """Every result's own counts reconcile (a cached result is checked again, not trusted)."""
    for r in run.results:
        if r.docs_kept + sum(r.dropped.values()) != r.docs_in:
            _fail(run, r.shard, f"in={r.docs_in} != kept={r.docs_kept} + dropped={sum(r.dropped.values())}")


def _per_shard(run: PhaseRun, shards: set[str]) -> bool:
    return any(r.shard in shards for r in run.results)


def _check_inputs(run: PhaseRun, given: dict[str, int]) -> None:
    """A per-shard phase read exactly what the stage was given, shard by shard, and left no shard out; a phase over
    all shards read all of it (or counts no documents at all, like the tokenizer's sampler)."""
    if _per_shard(run, set(given)):
        seen = {r.shard for r in run.results}
        for r in run.results:
            if r.shard not in given:
                _fail(run, r.shard, "a shard the stage before it never produced")
            elif r.docs_in != given[r.shard]:
                _fail(run, r.shard, f"read {r.docs_in} documents, but the stage before it kept {given[r.shard]}")
        for missing in sorted(set(given) - seen):
            _fail(run, missing, f"never processed ({given[missing]} documents kept by the stage before it are lost)")
        return
    total = sum(given.values())
    for r in run.results:
        if r.docs_in and r.docs_in != total:
            _fail(run, r.shard, f"read {r.docs_in} documents of the {total} the stage was given")


def _check_rows(run: PhaseRun, kept: dict[str, int]) -> None:
    """The per-shard Parquet files the phase published hold exactly the documents it says it kept."""
    for call in run.calls:
        for path in call.produces:
            sid = shard_id(path)
            if str(path).endswith(".parquet") and sid in kept and Path(path).exists():
                rows = pq.read_metadata(path).num_rows
                if rows != kept[sid]:
                    _fail(run, sid, f"{path} holds {rows} rows, but the stage reports {kept[sid]} kept")


def check_stage(runs: Sequence[PhaseRun], given: dict[str, int] | None) -> dict[str, int]:
    """Check one chain stage's phases against what the stage before it kept (``given``, per shard; None for the
    first stage, whose inputs are the WARC files). Returns what this stage kept, per shard."""
    for run in runs:
        _reconciled(run)
    if given is None:  # the first stage: its own per-shard inputs are the reference
        given = {r.shard: r.docs_in for r in runs[0].results}
    for run in runs:
        _check_inputs(run, given)
    shard_runs = [run for run in runs if _per_shard(run, set(given))]
    kept = {r.shard: r.docs_kept for r in shard_runs[-1].results} if shard_runs else dict(given)
    for run in runs[runs.index(shard_runs[-1]) if shard_runs else len(runs) :]:
        _check_rows(run, kept)
        for r in run.results:
            if r.shard not in kept and r.docs_kept and r.docs_kept != sum(kept.values()):
                _fail(run, r.shard, f"reports {r.docs_kept} documents kept, its shards {sum(kept.values())}")
    return kept


def check_token_dir(directory: str | Path, tokens: int | None = None, documents: int | None = None) -> dict[str, int]:
    """The token counts of a tokenize output agree: each .bin header with its meta.json entry, the Parquet token
    shards (tokens + one separator per document) with the .bin shards of their split, meta.json's totals with its
    shards, and (when given) with the stage's own ``tokens`` and ``documents``. Returns tokens per split."""
    directory = Path(directory)
    meta_path = directory / "meta.json"
    meta = json.loads(meta_path.read_text())
    # split → [bin tokens, documents, parquet tokens + documents]; a split meta.json counts but no shard holds is 0
    per_split: dict[str, list[int]] = {split: [0, 0, 0] for split in meta["tokens"]}
    for entry in meta["shards"]:
        acc = per_split.setdefault(entry["split"], [0, 0, 0])
        _, _, count, _ = read_header(directory / entry["file"])
        if count != entry["tokens"]:
            raise AccountingError(f"accounting: {directory / entry['file']}: header says {count} tokens, "
                                  f"{meta_path} {entry['tokens']}")  # fmt: skip
        acc[0] += count
        acc[1] += entry["documents"]
        if entry.get("parquet"):
            table = pq.read_table(directory / entry["parquet"], columns=["tokens"])
            if table.num_rows != entry["documents"]:
                raise AccountingError(f"accounting: {directory / entry['parquet']}: {table.num_rows} documents, "
                                      f"{meta_path} {entry['documents']}")  # fmt: skip
            acc[2] += int(pc.sum(pc.list_value_length(table.column("tokens"))).as_py() or 0) + table.num_rows
    for split, (bins, docs, parquet) in per_split.items():
        has_parquet = any(e.get("parquet") for e in meta["shards"] if e["split"] == split)
        figures = {
            ".bin headers": bins,
            "meta.json tokens": meta["tokens"].get(split, 0),
            **({"Parquet token shards": parquet} if has_parquet else {}),
        }
        if len(set(figures.values())) != 1:
            raise AccountingError(f"accounting: {directory}, split {split}: token counts disagree: {figures}")
        if docs != meta["documents"].get(split, 0):
            raise AccountingError(f"accounting: {directory}, split {split}: {docs} documents in the shards, "
                                  f"{meta['documents'].get(split, 0)} in {meta_path}")  # fmt: skip
    total = {split: acc[0] for split, acc in per_split.items()}
    if tokens is not None and sum(total.values()) != tokens:
        raise AccountingError(f"accounting: {directory}: the stage reports {tokens} tokens, its shards hold "
                              f"{sum(total.values())}")  # fmt: skip
    if documents is not None and sum(meta["documents"].values()) != documents:
        raise AccountingError(f"accounting: {directory}: the stage reports {documents} documents kept, meta.json "
                              f"lists {sum(meta['documents'].values())}")  # fmt: skip
    return total


def _token_outputs(runs: Sequence[PhaseRun], kept: dict[str, int]) -> int:
    """Check every token directory (a ``meta.json`` beside the outputs) a stage wrote; the tokens it holds."""
    total = 0
    shard_tokens = sum(r.tokens for run in runs for r in run.results if r.shard in kept)
    for run in runs:
        for call, r in zip(run.calls, run.results, strict=True):
            if (Path(call.output) / "meta.json").exists():
                try:
                    total += sum(check_token_dir(call.output, r.tokens, r.docs_kept).values())
                except AccountingError as e:
                    _fail(run, r.shard, str(e).removeprefix("accounting: "))
                if shard_tokens and shard_tokens != r.tokens:
                    _fail(run, r.shard, f"reports {r.tokens} tokens, its shards {shard_tokens}")
    return total


def check_chain(runs: Sequence[PhaseRun]) -> dict[str, dict[str, int]]:
    """Check the books of a whole chain (its phase runs in chain order); per stage: shards, documents in and kept,
    and tokens where it wrote token shards. Raises AccountingError at the first thing that does not add up."""
    stages: dict[str, list[PhaseRun]] = {}
    for run in runs:
        stages.setdefault(run.stage, []).append(run)
    given: dict[str, int] | None = None
    books: dict[str, dict[str, int]] = {}
    for stage, stage_runs in stages.items():
        stage_in = sum(given.values()) if given is not None else sum(r.docs_in for r in stage_runs[0].results)
        kept = check_stage(stage_runs, given)
        books[stage] = {"shards": len(kept), "docs_in": stage_in, "docs_kept": sum(kept.values())}
        if tokens := _token_outputs(stage_runs, kept):
            books[stage]["tokens"] = tokens
        given = kept
    return books
