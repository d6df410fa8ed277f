"""Invalid configuration is refused before any work, naming the field: from load_config (the CLI's --set), from the
Prefect API (the flow's parameter schema, validated the way the server validates a flow run's parameters) and from
the refresh flow itself (inputs whose outputs would collide or escape their folder)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools import ValidationError as SchemaValidationError
from prefect.utilities.schema_tools import validate
from pydantic import ValidationError

from flows.end_to_end import end_to_end
from flows.refresh import data_refresh
from pipelines.config import BUNDLED_LANGUAGES, PipelineConfig, load_config
from pipelines.errors import ConfigError

LMPIPE = Path(sys.executable).parent / "lmpipe"

# (--set override, the field the error must name)
REFUSED = [
    ("extract.crawl_id=../../x", "extract.crawl_id"),
    ("extract.crawl_id=a/b", "extract.crawl_id"),
    ("extract.crawl_id=.hidden", "extract.crawl_id"),
    ("extract.crawl_id=''", "extract.crawl_id"),
    ("filter.language.threshold=-0.1", "filter.language.threshold"),
    ("filter.language.languages=[en, english]", "filter.language"),
    ("filter.language.languages=[en, xx]", "filter.language"),
    ("filter.gopher_quality.min_doc_words=-5", "filter.gopher_quality.min_doc_words"),
    ("dedup.jaccard_threshold=1.5", "dedup.jaccard_threshold"),
    ("dedup.num_bands=0", "dedup.num_bands"),
    ("tokenize.vocab_size=100", "tokenize.vocab_size"),
    ("train.block_size=4096", "train"),
    ("pii.phone_regions=[XX]", "pii.phone_regions"),
]


@pytest.mark.parametrize(("override", "field"), REFUSED, ids=[o for o, _ in REFUSED])
def test_load_config_refuses_naming_the_field(override: str, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        load_config(PipelineConfig, None, [override])
    locations = {".".join(str(p) for p in e["loc"]) for e in err.value.errors()}
    assert any(loc.startswith(field) for loc in locations), locations


def test_bundled_languages_are_the_labels_of_the_bundled_models() -> None:
    from pipelines.language_id import load_language_model, load_second_opinion

    labels: set[str] = set()
    for text in ("hello world", "x", "日本語", "Привет", "مرحبا", "γειά", "שלום", "1234 !!"):
        found, _ = load_language_model().predict(text, k=-1, threshold=-1.0)
        labels |= {label.removeprefix("__label__") for label in found}
    labels |= {"no" if c == "nb" else c for c in load_second_opinion().nb_classes}
    assert len(labels) > 200 and labels == BUNDLED_LANGUAGES
    assert load_config(PipelineConfig, None, ["filter.language.languages=[en, de, yue]"])


def _api_refusal(flow: object, parameters: dict) -> str | None:
    """What the Prefect server answers a flow run with these parameters: its schema check of the deployment's
    parameter_openapi_schema (prefect.utilities.schema_tools.validate, as in create_flow_run_from_deployment)."""
    schema = parameter_schema(flow).model_dump_for_openapi()
    try:
        validate(parameters, schema, raise_on_error=True, preprocess=True)
    except SchemaValidationError as e:
        return str(e)
    return None


@pytest.mark.parametrize("flow", [data_refresh, end_to_end], ids=["data-refresh", "end-to-end"])
@pytest.mark.parametrize("crawl_id", ["../../x", "a/b", ".."])
def test_the_prefect_api_refuses_a_crawl_id_that_escapes_the_data_root(flow: object, crawl_id: str) -> None:
    refusal = _api_refusal(flow, {"config": {"extract": {"crawl_id": crawl_id}}})
    assert refusal is not None and "crawl_id" in refusal
    assert _api_refusal(flow, {"config": {"extract": {"crawl_id": "CC-MAIN-2024-10"}}}) is None


def test_the_prefect_api_refuses_out_of_range_numbers() -> None:
    for section, value in (("tokenize", {"vocab_size": 100}), ("filter", {"language": {"threshold": -1}})):
        refusal = _api_refusal(data_refresh, {"config": {section: value}})
        assert refusal is not None, section


def test_cli_run_refuses_a_traversing_crawl_id_before_any_work(tmp_path: Path) -> None:
    root = tmp_path / "deep" / "root"
    result = subprocess.run(
        [str(LMPIPE), "run", "--data-root", str(root), "--set", "extract.crawl_id=../../x"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "extract.crawl_id" in result.stdout
    assert list(tmp_path.rglob("*")) == []  # nothing written, inside the data root or two folders above it


def test_refresh_refuses_inputs_whose_outputs_would_collide(shared_data: Path, tmp_path: Path) -> None:
    warc = shared_data / "warc" / "aeb-articles.warc.gz"
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        shutil.copy(warc, tmp_path / d / warc.name)
    config = PipelineConfig(data_root=str(tmp_path / "out"), inputs=[str(tmp_path / d / warc.name) for d in "ab"])
    with pytest.raises(ConfigError, match="same shard id 'aeb-articles'"):
        data_refresh(config)
    assert not (tmp_path / "out").exists()


def test_a_single_stage_refuses_colliding_inputs_when_it_plans_its_tasks(tmp_path: Path) -> None:
    # `lmpipe task dedup --input a/x.parquet b/x.parquet` plans its phases the same way (registry.run_phases)
    from pipelines import registry
    from pipelines.config import DedupConfig

    inputs = [str(tmp_path / d / "x.parquet") for d in "ab"]
    with pytest.raises(ConfigError, match="same shard id 'x'"):
        list(registry.plan_phases(registry.get("dedup"), inputs, str(tmp_path / "out"), DedupConfig()))
