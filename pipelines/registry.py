"""Every stage declared once: the ``StageSpec`` registry that the CLI, the Prefect tasks, the cache check and the
data-refresh DAG are all derived from.

    lmpipe stages                 # the registry as a table
    from pipelines.registry import StageSpec, register, unregister
    register(StageSpec(name="wordcount", summary="…", config=WordCountConfig, entry=run_wordcount,
                       shape="map", order=45, annotates=True))   # now in `lmpipe task`, the refresh flow, the cache

A stage is a function ``run(inputs, output, cfg, *, limit=None) -> StageStats`` plus what the rest of lmpipe needs
to know about it:

- ``shape``: ``map`` writes one output shard per input shard (embarrassingly parallel: one task per shard);
  ``reduce`` reads all shards of the run into one output directory (one task: dedup's clusters, the tokenizer).
- ``order``: its place in the data chain (extract 10 → filter 20 → dedup 30 → pii 40 → tokenize 50); each stage
  reads what the one before it wrote. ``None``: not a data-refresh stage (train runs after it, in its own flow).
- ``takes``: what ``lmpipe task`` feeds it — ``warc`` files, ``parquet`` shards, or one ``tokens`` directory.
- ``outputs`` / ``complete``: the files it writes for given inputs, and how a cached result is known to be still
  there and made from these inputs with this config (the manifest by default; a stage adds its own checks).

Entries and completeness checks are ``"module:function"`` strings, imported on first use, so listing the stages
imports neither trafilatura nor torch.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from pipelines import CODE_VERSION
from pipelines import config as C
from pipelines.errors import ConfigError
from pipelines.shards import Manifest, config_hash, fingerprint, shard_id
from pipelines.stats import StageStats

StageFunction = Callable[..., StageStats]


def _resolve(ref: str | Callable[..., Any]) -> Callable[..., Any]:
    if callable(ref):
        return ref
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def manifest_complete(paths: list[Path], inputs: list[str], cfg: BaseModel | None) -> bool:
    """True when each path exists, matches its manifest entry, and was made from ``inputs`` with ``cfg``.

    The last two matter when a config (or input) goes A → B → A: the cache key of A is a hit again, but the files
    on disk are B's."""
    want = config_hash(cfg) if cfg is not None else None
    try:
        current = {str(p): fingerprint(p) for p in inputs}
    except (OSError, ValueError):  # an input is missing (its producer will remake it): recompute
        return False
    for path in paths:
        manifest = Manifest(path.parent)
        if not manifest.valid(path):
            return False
        entry = manifest.load()[path.name]
        if (want is not None and entry.get("config_hash") != want) or entry.get("inputs") != current:
            return False
    return True


def one_output(inputs: list[str], output: str) -> list[Path]:
    """A map stage's output: the one shard file it was given."""
    return [Path(output)]


def shards_in_dir(inputs: list[str], output: str) -> list[Path]:
    """A reduce stage that writes one shard per input shard into its output directory (dedup)."""
    return [Path(output) / f"{shard_id(p)}.parquet" for p in inputs]


@dataclass(frozen=True)
class StageSpec:
    """One stage, declared once (see the module docstring)."""

    name: str
    summary: str
    config: type[BaseModel]
    entry: str | StageFunction
    shape: Literal["map", "reduce"]
    order: int | None
    takes: Literal["warc", "parquet", "tokens"] = "parquet"
    folder: str | None = None  # its directory under {data_root}/{crawl_id}/ (default: the name)
    annotates: bool = False  # has ``annotate_only`` (mark, keep every row)
    outputs: str | Callable[[list[str], str], list[Path]] = one_output
    complete_check: str | Callable[..., bool] | None = None  # extra check(inputs, output, cfg) -> bool
    version: str = CODE_VERSION  # part of the cache key (a plugin bumps its own)

    @property
    def directory(self) -> str:
        return self.folder or self.name

    def run(self, inputs: list[str], output: str, cfg: BaseModel, *, limit: int | None = None) -> StageStats:
        """Call the stage: a ``tokens`` stage gets its one directory, every other stage the list of inputs."""
        source: Any = inputs[0] if self.takes == "tokens" else list(inputs)
        return _resolve(self.entry)(source, output, cfg, limit=limit)

    def output_files(self, inputs: list[str], output: str) -> list[Path]:
        return _resolve(self.outputs)(list(inputs), output)

    def complete(self, inputs: list[str], output: str, cfg: BaseModel | None = None) -> bool:
        """Whether the outputs for these inputs are all there, unchanged, and from this config (cache check)."""
        if self.complete_check is not None and not _resolve(self.complete_check)(list(inputs), output, cfg):
            return False
        paths = self.output_files(inputs, output)
        return not paths or manifest_complete(paths, list(inputs), cfg)

    def downstream(self, inputs: list[str], output: str) -> list[str]:
        """The shards the next stage of the chain reads (a map stage's output; a reduce stage's shard files)."""
        return [output] if self.shape == "map" else [str(p) for p in shards_in_dir(inputs, output)]


_REGISTRY: dict[str, StageSpec] = {}


def register(spec: StageSpec) -> StageSpec:
    """Add a stage (a plugin's, or one of lmpipe's own below). Names are unique."""
    if spec.name in _REGISTRY:
        raise ConfigError(f"stage {spec.name!r} is already registered")
    if spec.shape not in ("map", "reduce"):
        raise ConfigError(f"stage {spec.name!r}: shape must be 'map' or 'reduce', not {spec.shape!r}")
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def get(name: str) -> StageSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown stage {name!r}; stages: {', '.join(_REGISTRY)}") from None


def all_stages() -> list[StageSpec]:
    """Every registered stage: the data chain in order, then the others (train)."""
    return sorted(_REGISTRY.values(), key=lambda s: (s.order is None, s.order or 0))


def data_chain() -> list[StageSpec]:
    """The data-refresh stages in chain order (each reads what the one before it wrote)."""
    return [s for s in all_stages() if s.order is not None]


def stage_config(config: C.PipelineConfig, name: str) -> BaseModel:
    """The config a run gives stage ``name``: its section of PipelineConfig, or ``stage_options[name]``."""
    spec = get(name)
    section = getattr(config, name, None)
    if isinstance(section, spec.config):
        return section
    return spec.config.model_validate(config.stage_options.get(name, {}))


def tokens_complete(inputs: list[str], output: str, cfg: BaseModel | None) -> bool:
    """meta.json is written last, after every shard: without it the directory is not done."""
    return (Path(output) / "meta.json").exists()


def tokens_outputs(inputs: list[str], output: str) -> list[Path]:
    """The token shards and tokenizer its manifest lists (none listed yet: not complete)."""
    entries = Manifest(output).load()
    return [Path(output) / name for name in entries] or [Path(output) / "_none"]


def train_outputs(inputs: list[str], output: str) -> list[Path]:
    return []


def train_complete(inputs: list[str], output: str, cfg: BaseModel | None) -> bool:
    """A finished run: its summary and last checkpoint exist and were made with this config."""
    out = Path(output)
    if not (out / "summary.json").exists() or not (out / "checkpoints" / "last.ckpt").exists():
        return False
    recorded = out / "train_config.json"
    return cfg is None or recorded.exists() and json.loads(recorded.read_text()) == cfg.model_dump(mode="json")


for _spec in (
    StageSpec(
        name="extract",
        summary="WARC records → main text (trafilatura), one Parquet shard per WARC file",
        config=C.ExtractConfig,
        entry="pipelines.extract:run_extract",
        shape="map",
        order=10,
        takes="warc",
    ),
    StageSpec(
        name="filter",
        summary="language ID + URL, Gopher, C4 and FineWeb rules; scores stored per row",
        config=C.FilterConfig,
        entry="pipelines.filters:run_filter",
        shape="map",
        order=20,
        annotates=True,
    ),
    StageSpec(
        name="dedup",
        summary="MinHash LSH near-duplicate clusters over all shards (and earlier crawls' index)",
        config=C.DedupConfig,
        entry="pipelines.dedup:run_dedup",
        shape="reduce",
        order=30,
        annotates=True,
        outputs=shards_in_dir,
        complete_check="pipelines.dedup:index_complete",
    ),
    StageSpec(
        name="pii",
        summary="e-mails, phones, IPs, cards, IBANs … replaced (presidio recognizers)",
        config=C.PIIConfig,
        entry="pipelines.pii:run_pii",
        shape="map",
        order=40,
        annotates=True,
    ),
    StageSpec(
        name="tokenize",
        summary="BPE tokenizer trained on the run, train/val token shards (llm.c .bin + Parquet)",
        config=C.TokenizeConfig,
        entry="pipelines.tokenizer:run_tokenize",
        shape="reduce",
        order=50,
        folder="tokens",
        outputs=tokens_outputs,
        complete_check=tokens_complete,
    ),
    StageSpec(
        name="train",
        summary="GPT pre-training with Lightning on a token directory (checkpoints, losses, sample)",
        config=C.TrainConfig,
        entry="pipelines.train:run_train",
        shape="reduce",
        order=None,
        takes="tokens",
        outputs=train_outputs,
        complete_check=train_complete,
    ),
):
    register(_spec)
