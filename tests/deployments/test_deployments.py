"""Deployments: prefect.yaml and serve.py describe the same flows, schedules and typed parameter forms."""

from __future__ import annotations

from pathlib import Path

import yaml
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema

from deployments.serve import build_deployments
from flows.end_to_end import end_to_end
from flows.refresh import data_refresh
from pipelines.config import PipelineConfig

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
    refresh_yaml, refresh = from_yaml["monthly-refresh"], served["monthly-refresh"]
    crons = [(s["cron"], s["timezone"]) for s in refresh_yaml["schedules"]]
    assert crons == [(s.schedule.cron, s.schedule.timezone) for s in refresh.schedules] == [("0 3 1 * *", "UTC")]
    assert refresh_yaml["parameters"] == refresh.parameters == {"config": {"crawl": {"crawl_id": "latest"}}}
    limit = refresh_yaml["concurrency_limit"]
    assert (limit["limit"], limit["collision_strategy"]) == (1, "CANCEL_NEW")
    assert refresh.concurrency_limit == 1 and refresh.concurrency_options.collision_strategy == "CANCEL_NEW"
    PipelineConfig.model_validate(refresh.parameters["config"])  # the scheduled run's parameters are valid


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


def test_forms_expose_runner_data_root_and_launcher_and_refuse_bad_values() -> None:
    """The end-to-end form has the runner (local/ray), the data root and the training launcher; the same JSON schema
    check the Prefect server applies to a run's parameters (enforce_parameter_schema) refuses a bad value up front."""
    from prefect.utilities.schema_tools.validation import is_valid, preprocess_schema

    schema = preprocess_schema(parameter_schema(end_to_end.fn).model_dump())
    definitions = schema["definitions"]
    assert definitions["RunnerConfig"]["properties"]["kind"]["enum"] == ["local", "ray"]
    assert definitions["PipelineConfig"]["properties"]["data_root"]["type"] == "string"
    train = definitions["TrainConfig"]["properties"]
    assert train["launcher"]["enum"] == ["local", "torchrun", "slurm"]
    assert "SlurmConfig" in definitions and "rdzv_endpoint" in train

    good = {"config": {"data_root": "s3://bucket/lmpipe", "runner": {"kind": "ray", "address": "auto"},
                       "train": {"launcher": "slurm", "num_nodes": 2, "slurm": {"partition": "gpu"}}}}  # fmt: skip
    assert is_valid(good, schema)
    for bad in (
        {"train": {"launcher": "mpirun"}},
        {"runner": {"kind": "spark"}},
        {"runner": {"kind": "ray", "address": "not an address"}},
        {"train": {"rdzv_endpoint": "head node:29400"}},
        {"train": {"slurm": {"time_limit": "a day"}}},
        {"train": {"max_steps": 0}},
    ):
        assert not is_valid({"config": bad}, schema), bad
