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
- ``plan``: its tasks (``Call``: inputs, output, the files the next stage reads) for given inputs; by default one
  per shard (map) or one over all (reduce). dedup's pairs phase plans one task per group of LSH bands.
- ``phases``: a composite stage (dedup, tokenize) is a sequence of stages of its own, registered with ``part_of``;
  the refresh flow runs each phase's tasks (map phases in parallel, each task waiting only for the tasks that
  write its inputs), ``lmpipe task dedup`` runs them one after the other in one process, and the composite is
  complete when every task of every phase is.

    dedup    = dedup_signatures (map, per shard) → dedup_pairs (map, per band group) → dedup_clusters (reduce)
               → dedup_apply (map, per shard)
    tokenize = tokenize_tokenizer (reduce) → tokenize_encode (map, per shard) → tokenize_index (reduce)

Entries and completeness checks are ``"module:function"`` strings, imported on first use, so listing the stages
imports neither trafilatura nor torch.
"""

from __future__ import annotations

import importlib
import json
import re
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
class Call:
    """One task of a stage: the files it reads, where it writes, and the files of it the next stage reads
    (default: ``output`` itself)."""

    inputs: list[str]
    output: str
    files: list[str] | None = None

    @property
    def produces(self) -> list[str]:
        return [self.output] if self.files is None else list(self.files)


# plan(sources, previous, out_dir, cfg) -> calls. ``sources``: what the stage (or the composite a phase belongs to)
# reads from the stage before it; ``previous``: what the phase before wrote (== sources for a first phase).
PlanFunction = Callable[[list[str], list[str], str, Any], list[Call]]


def check_shard_ids(inputs: list[str]) -> list[str]:
    """Refuse, when a stage's tasks are planned (before any work), inputs whose shard ids (file names without data
    suffixes: the output names of every map stage and of dedup's per-shard outputs) are not one safe path
    component, or are shared by two inputs (their outputs would overwrite each other). Returns ``inputs``."""
    seen: dict[str, str] = {}
    for path in inputs:
        sid = shard_id(path)
        if not re.fullmatch(C.PATH_COMPONENT, sid):
            raise ConfigError(f"{path}: shard id {sid!r} is not a safe file name (letters, digits, '.', '_', '-')")
        if sid in seen:
            raise ConfigError(f"{path} and {seen[sid]} have the same shard id {sid!r}: their outputs would collide")
        seen[sid] = path
    return inputs


def plan_map(sources: list[str], previous: list[str], out_dir: str, cfg: Any) -> list[Call]:
    """A map stage: one task per shard, ``{out_dir}/{shard_id}.parquet``."""
    return [Call([p], str(Path(out_dir) / f"{shard_id(p)}.parquet")) for p in previous]


def plan_reduce(sources: list[str], previous: list[str], out_dir: str, cfg: Any) -> list[Call]:
    """A reduce stage: one task over all shards, writing one shard per input into ``out_dir``."""
    return [Call(list(previous), out_dir, [str(p) for p in shards_in_dir(previous, out_dir)])]


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
    plan: str | PlanFunction | None = None  # its tasks for given inputs (default: by shape, plan_map / plan_reduce)
    phases: tuple[str, ...] = ()  # a composite: these stages, in order, make it (the flow runs them as tasks)
    part_of: str | None = None  # a phase: the composite whose directory and config it shares

    @property
    def directory(self) -> str:
        return self.folder or self.name

    def run(self, inputs: list[str], output: str, cfg: BaseModel, *, limit: int | None = None) -> StageStats:
        """Call the stage: a ``tokens`` stage gets its one directory, every other stage the list of inputs; a
        composite runs its phases one after the other."""
        if self.phases:
            return run_phases(self, list(inputs), output, cfg, limit=limit)
        source: Any = inputs[0] if self.takes == "tokens" else list(inputs)
        return _resolve(self.entry)(source, output, cfg, limit=limit)

    def calls(self, sources: list[str], previous: list[str], out_dir: str, cfg: Any) -> list[Call]:
        """This stage's tasks (see PlanFunction)."""
        plan = self.plan or (plan_map if self.shape == "map" else plan_reduce)
        return _resolve(plan)(list(sources), list(previous), out_dir, cfg)

    def expand(self) -> list[StageSpec]:
        """The stages the flow runs for this one: its phases, or itself."""
        return [get(name) for name in self.phases] or [self]

    def output_files(self, inputs: list[str], output: str) -> list[Path]:
        return _resolve(self.outputs)(list(inputs), output)

    def complete(self, inputs: list[str], output: str, cfg: BaseModel | None = None) -> bool:
        """Whether the outputs for these inputs are all there, unchanged, and from this config (cache check); a
        composite, when every task of every phase is."""
        if self.phases:
            return all(
                phase.complete(call.inputs, call.output, cfg)
                for phase, calls in plan_phases(self, inputs, output, cfg)
                for call in calls
            )
        if self.complete_check is not None and not _resolve(self.complete_check)(list(inputs), output, cfg):
            return False
        paths = self.output_files(inputs, output)
        return not paths or manifest_complete(paths, list(inputs), cfg)


def plan_phases(spec: StageSpec, inputs: list[str], output: str, cfg: Any) -> list[tuple[StageSpec, list[Call]]]:
    """Each phase of a composite (a plain stage: itself) with its tasks, for a run on ``inputs`` into ``output``."""
    previous, planned = check_shard_ids(list(inputs)), []
    for phase in spec.expand():
        calls = phase.calls(inputs, previous, output, cfg)
        planned.append((phase, calls))
        previous = [f for call in calls for f in call.produces]
    return planned


def stage_stats(spec: StageSpec, results: list[list[StageStats]]) -> StageStats:
    """One StageStats for a stage from its tasks' results, per phase: the last phase's counts (merged over its
    tasks, under the stage's name), plus the counters of the reduce phases before it (dedup's cluster figures)."""
    from pipelines.stats import merge

    phases = spec.expand()
    if phases[-1].shape == "map":
        total = merge(results[-1], spec.name)
    else:
        total = results[-1][0].model_copy(deep=True, update={"stage": spec.name})
    for phase, stats in zip(phases[:-1], results[:-1], strict=True):
        if phase.shape == "reduce":
            for st in stats:
                total.extra.update(st.extra)
    return total


def run_phases(
    spec: StageSpec, inputs: list[str], output: str, cfg: BaseModel, *, limit: int | None = None
) -> StageStats:
    """Run a composite's phases in this process, each task after the other (what the flow spreads over tasks)."""
    planned = plan_phases(spec, list(inputs), output, cfg)
    return stage_stats(
        spec, [[phase.run(c.inputs, c.output, cfg, limit=limit) for c in calls] for phase, calls in planned]
    )


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
    if spec.part_of:  # a phase runs with its composite's config
        return stage_config(config, spec.part_of)
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


def _phases(of: str, config: type[BaseModel], module: str, *phases: tuple[Any, ...]) -> list[StageSpec]:
    """A composite's phases, each ``(short, shape, summary[, extra fields])``: named ``{of}_{short}``, run by
    ``{module}:run_{short}``, planned by ``{module}:plan_{short}``, sharing the composite's config and directory."""
    return [
        StageSpec(
            f"{of}_{short}",
            f"{of} phase {i}: {summary}",
            config,
            f"{module}:run_{short}",
            shape,
            None,
            plan=f"{module}:plan_{short}",
            part_of=of,
            **(rest[0] if rest else {}),
        )  # fmt: skip
        for i, (short, shape, summary, *rest) in enumerate(phases, start=1)
    ]


# name, summary, config, entry, shape, order (in the data chain; None: not a refresh stage), then what differs
_DEDUP_PHASES = _phases(
    "dedup", C.DedupConfig, "pipelines.dedup",
    ("signatures", "map", "MinHash signatures → LSH band hashes and keys, per shard"),
    ("pairs", "map", "candidate pairs of a group of LSH bands over the whole run, per band group"),
    ("clusters", "reduce", "connected components, survivors, earlier-crawl drops, index update (one task)",
     {"outputs": "pipelines.dedup:clusters_outputs", "complete_check": "pipelines.dedup:clusters_complete"}),
    ("apply", "map", "annotate each shard with its cluster, drop the duplicates, per shard", {"annotates": True}),
)  # fmt: skip
_TOKENIZE_PHASES = _phases(
    "tokenize", C.TokenizeConfig, "pipelines.tokenizer",
    ("tokenizer", "reduce", "train the BPE on a seeded sample of all shards (or load tokenizer_file)"),
    ("encode", "map", "encode one shard on all cores (tokens, split, place in the input)"),
    ("index", "reduce", "pack the encoded shards into .bin/Parquet token shards, lineage and meta.json",
     {"outputs": "pipelines.tokenizer:index_outputs", "complete_check": tokens_complete}),
)  # fmt: skip
for _spec in (
    StageSpec("extract", "WARC records → main text (trafilatura), one Parquet shard per WARC file",
              C.ExtractConfig, "pipelines.extract:run_extract", "map", 10, takes="warc"),
    StageSpec("filter", "language ID + URL, Gopher, C4 and FineWeb rules; scores stored per row",
              C.FilterConfig, "pipelines.filters:run_filter", "map", 20, annotates=True),
    StageSpec("dedup", "MinHash LSH near-duplicate clusters over all shards (and earlier crawls' index)",
              C.DedupConfig, "pipelines.dedup:run_dedup", "reduce", 30, annotates=True, outputs=shards_in_dir,
              phases=tuple(p.name for p in _DEDUP_PHASES)),
    StageSpec("pii", "e-mails, phones, IPs, cards, IBANs … replaced (presidio recognizers)",
              C.PIIConfig, "pipelines.pii:run_pii", "map", 40, annotates=True),
    StageSpec("tokenize", "BPE tokenizer trained on the run, train/val token shards (llm.c .bin + Parquet)",
              C.TokenizeConfig, "pipelines.tokenizer:run_tokenize", "reduce", 50, folder="tokens",
              outputs=tokens_outputs, phases=tuple(p.name for p in _TOKENIZE_PHASES)),
    StageSpec("train", "GPT pre-training with Lightning on a token directory (checkpoints, losses, sample)",
              C.TrainConfig, "pipelines.train:run_train", "reduce", None, takes="tokens", outputs=train_outputs,
              complete_check=train_complete),
    *_DEDUP_PHASES,
    *_TOKENIZE_PHASES,
):  # fmt: skip
    register(_spec)
