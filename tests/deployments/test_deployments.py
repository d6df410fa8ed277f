"""Deployments: prefect.yaml and serve.py describe the same flows, schedules and typed parameter forms."""

from __future__ import annotations

from pathlib import Path

import yaml
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema

from deployments.serve import build_deployments
from flows.end_to_end import end_to_end
from flows.refresh import data_refresh

ROOT = Path(__file__).resolve().parents[2]


def test_prefect_yaml_entrypoints_load_and_match_serve() -> None:
    spec = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())
    from_yaml = {d["name"]: d for d in spec["deployments"]}
    served = {d.name: d for d in build_deployments()}
    assert set(from_yaml) == set(served) == {"end-to-end", "monthly-refresh", "train"}
    for name, d in from_yaml.items():
        path, func = d["entrypoint"].split(":")
        flow = load_flow_from_entrypoint(str(ROOT / path) + ":" + func)
        assert flow.name == served[name].flow_name, name
    crons = [s["cron"] for s in from_yaml["monthly-refresh"]["schedules"]]
    assert crons == [served["monthly-refresh"].schedules[0].schedule.cron] == ["0 3 1 * *"]
    assert from_yaml["monthly-refresh"]["concurrency_limit"] == 1


def test_parameter_forms_are_typed() -> None:
    """The UI renders a form from each flow's parameter schema (what a deployment sends to the API)."""
    schema = parameter_schema(end_to_end.fn).model_dump()
    config = schema["definitions"]["PipelineConfig"]["properties"]
    assert {"data_root", "inputs", "extract", "filter", "dedup", "pii", "tokenize", "train"} <= set(config)
    train = schema["definitions"]["TrainConfig"]["properties"]
    assert train["max_steps"]["type"] == "integer" and train["max_steps"]["default"] == 300
    assert train["strategy"]["enum"] == ["auto", "ddp", "fsdp"]
    refresh = parameter_schema(data_refresh.fn).model_dump()
    assert "PipelineConfig" in refresh["definitions"]
