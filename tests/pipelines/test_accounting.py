"""The run's books (pipelines/accounting.py) on a real chain: two real WARC files of ../shared/data/warc through every
data stage and phase (no Prefect), then each kind of violation made for real — a stage that reads fewer documents
than the one before it kept, a shard that never arrives, a published file missing a row, token counts that differ
between the .bin headers, the Parquet token shards and meta.json — must fail naming the stage and the shard or file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines import registry
from pipelines.accounting import AccountingError, PhaseRun, check_chain, check_token_dir
from pipelines.config import PipelineConfig
from pipelines.token_shards import HEADER_BYTES

WARCS = ("warc/dolma/sample-0001.warc.gz", "warc/cc-whirlwind/whirlwind.warc.gz")


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, Any]:
    """Every phase of the data chain run in this process, as the flow plans it: the PhaseRuns check_chain gets."""
    root = tmp_path_factory.mktemp("books")
    cfg = PipelineConfig.model_validate({"data_root": str(root), "tokenize": {"vocab_size": 512}})
    previous = [str(shared_data / w) for w in WARCS]
    runs: list[PhaseRun] = []
    for spec in registry.data_chain():
        stage_cfg = registry.stage_config(cfg, spec.name)
        out = str(root / cfg.extract.crawl_id / spec.directory)
        for phase, calls in registry.plan_phases(spec, previous, out, stage_cfg):
            runs.append(PhaseRun(spec.name, phase, calls, [phase.run(c.inputs, c.output, stage_cfg) for c in calls]))
        previous = [f for call in runs[-1].calls for f in call.produces]
    return {"runs": runs, "tokens": root / cfg.extract.crawl_id / "tokens"}


def _replace(runs: list[PhaseRun], phase: str, shard: str, **change: Any) -> list[PhaseRun]:
    """The same runs with one result of one phase changed (what a stage that miscounts would have returned)."""
    out = []
    for run in runs:
        if run.phase.name == phase:
            results = [r.model_copy(update=change) if r.shard == shard else r for r in run.results]
            run = PhaseRun(run.stage, run.phase, run.calls, results)
        out.append(run)
    return out


def _shard(runs: list[PhaseRun], phase: str) -> str:
    return next(run for run in runs if run.phase.name == phase).results[0].shard


def test_the_books_of_a_real_chain_balance(chain: dict[str, Any]) -> None:
    books = check_chain(chain["runs"])
    assert list(books) == [s.name for s in registry.data_chain()]
    for before, after in zip(list(books.values()), list(books.values())[1:], strict=False):
        assert after["docs_in"] == before["docs_kept"] and after["shards"] == before["shards"] == 2
    assert books["filter"]["docs_kept"] < books["filter"]["docs_in"]  # the data really moves through the filters
    meta = json.loads((chain["tokens"] / "meta.json").read_text())
    assert books["tokenize"]["tokens"] == sum(meta["tokens"].values()) > 0
    assert books["tokenize"]["docs_kept"] == sum(meta["documents"].values()) == books["pii"]["docs_kept"]


def _fewer(*fields: str) -> Any:
    return lambda r: {f: getattr(r, f) - 1 for f in fields}


def _one_lost(r: Any) -> dict[str, Any]:
    """One document fewer kept, counted as dropped: the counts reconcile, the published file disagrees."""
    return {"docs_kept": r.docs_kept - 1, "dropped": {**r.dropped, "lost": r.dropped.get("lost", 0) + 1}}


MISCOUNTS = {  # phase → (what its result says instead of the truth, the error)
    "extract": (_one_lost, "holds .* rows, but the stage reports"),
    "filter": (_fewer("docs_in", "docs_kept"), "read .* documents, but the stage before it kept"),
    "dedup_signatures": (_fewer("docs_in", "docs_kept"), "read .* documents, but the stage before it kept"),
    "dedup_pairs": (_fewer("docs_in", "docs_kept"), "read .* documents of the .* the stage was given"),
    "dedup_apply": (_one_lost, "holds .* rows, but the stage reports"),
    "pii": (_fewer("docs_kept"), r"in=.* != kept="),
    "tokenize_encode": (_fewer("docs_in", "docs_kept"), "read .* documents, but the stage before it kept"),
    "tokenize_index": (lambda r: {"tokens": r.tokens + 1}, "the stage reports .* tokens, its shards hold"),
}


@pytest.mark.parametrize("phase", list(MISCOUNTS))
def test_a_miscounting_phase_fails_naming_stage_and_shard(chain: dict[str, Any], phase: str) -> None:
    runs = chain["runs"]
    shard = _shard(runs, phase)
    result = next(r for run in runs if run.phase.name == phase for r in run.results if r.shard == shard)
    change, message = MISCOUNTS[phase]
    stage = next(run.stage for run in runs if run.phase.name == phase)
    with pytest.raises(AccountingError, match=message) as e:
        check_chain(_replace(runs, phase, shard, **change(result)))
    assert f"stage {stage}" in str(e.value) and f"shard {shard}" in str(e.value)


def test_a_shard_that_never_reaches_the_next_stage_is_lost_loudly(chain: dict[str, Any]) -> None:
    runs = chain["runs"]
    lost = _shard(runs, "pii")
    cut = [
        PhaseRun(r.stage, r.phase, r.calls, [x for x in r.results if x.shard != lost]) if r.stage == "pii" else r
        for r in runs
    ]
    cut = [
        PhaseRun(r.stage, r.phase, [c for c in r.calls if not c.output.endswith(f"{lost}.parquet")], r.results)
        if r.stage == "pii"
        else r
        for r in cut
    ]
    with pytest.raises(AccountingError, match=f"stage pii, shard {lost}: never processed"):
        check_chain(cut)


def test_a_published_shard_missing_a_row_fails(chain: dict[str, Any], tmp_path: Path) -> None:
    runs = chain["runs"]
    run = next(r for r in runs if r.stage == "dedup" and r.phase.name == "dedup_apply")
    path = Path(run.calls[0].output)
    saved = tmp_path / "saved.parquet"
    shutil.copy(path, saved)
    try:
        table = pq.read_table(path)
        pq.write_table(table.slice(0, table.num_rows - 1), path)
        with pytest.raises(AccountingError, match=f"shard {path.stem}: {path} holds {table.num_rows - 1} rows"):
            check_chain(runs)
    finally:
        shutil.copy(saved, path)
    check_chain(runs)  # restored: balanced again


def _copy_tokens(chain: dict[str, Any], tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    out = tmp_path / "tokens"
    shutil.copytree(chain["tokens"], out)
    return out, json.loads((out / "meta.json").read_text())


def test_the_token_counts_agree_three_ways(chain: dict[str, Any]) -> None:
    meta = json.loads((chain["tokens"] / "meta.json").read_text())
    assert check_token_dir(chain["tokens"], sum(meta["tokens"].values())) == meta["tokens"]
    with pytest.raises(AccountingError, match="the stage reports"):
        check_token_dir(chain["tokens"], sum(meta["tokens"].values()) + 1)


def test_a_bin_header_that_disagrees_with_meta_json_fails(chain: dict[str, Any], tmp_path: Path) -> None:
    out, meta = _copy_tokens(chain, tmp_path)
    shard = meta["shards"][0]
    data = (out / shard["file"]).read_bytes()
    header = np.frombuffer(data[:HEADER_BYTES], dtype="<i4").copy()
    header[2] -= 1  # one token fewer in the header, the file cut to match (a valid but short shard)
    itemsize = 2 if meta["format"]["dtype"] == "uint16" else 4
    (out / shard["file"]).write_bytes(header.tobytes() + data[HEADER_BYTES : len(data) - itemsize])
    with pytest.raises(AccountingError, match=f"{shard['file']}: header says {shard['tokens'] - 1} tokens"):
        check_token_dir(out)


def test_parquet_token_shards_that_disagree_with_the_bins_fail(chain: dict[str, Any], tmp_path: Path) -> None:
    out, meta = _copy_tokens(chain, tmp_path)
    shard = meta["shards"][0]
    table = pq.read_table(out / shard["parquet"])
    tokens = table.column("tokens").to_pylist()
    tokens[0] = tokens[0][:-1]  # the first document one token short
    pq.write_table(table.set_column(1, "tokens", [tokens]).cast(table.schema), out / shard["parquet"])
    with pytest.raises(AccountingError, match=f"split {shard['split']}: token counts disagree"):
        check_token_dir(out)


def test_meta_json_totals_that_disagree_with_its_shards_fail(chain: dict[str, Any], tmp_path: Path) -> None:
    out, meta = _copy_tokens(chain, tmp_path)
    meta["documents"]["train"] += 1
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(AccountingError, match="split train: .* documents in the shards"):
        check_token_dir(out)
