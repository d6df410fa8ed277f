"""The ``lmpipe`` command line.

lmpipe run                                   # whole pipeline on the built-in sample → model + report
lmpipe refresh --crawl CC-MAIN-2024-10 --max-warcs N [--offset K] [--stride S] [--base-url URL]
                                             # data stages on WARC files of a Common Crawl crawl → funnel
lmpipe sample --output DIR                   # write the sample WARC files and their ground truth
lmpipe task extract --input X.warc.gz --output OUT.parquet [--direct]
lmpipe task filter|pii --input IN.parquet --output OUT.parquet [--annotate-only]
lmpipe task dedup --input A.parquet B.parquet --output OUT_DIR [--annotate-only]
lmpipe task tokenize --input A.parquet … --output OUT_DIR [--vocab-size N]
lmpipe task train --data TOKENS_DIR --output RUN_DIR [--max-steps N] [--preset tiny|gpt2-124m]
                                             # --set launcher=torchrun|slurm; --data s3://… is staged and checked
lmpipe train-job slurm|kubernetes --data D --output R [--set …]   # the sbatch script / PyTorchJob to submit
lmpipe explore --input FILTER_DIR --set gopher_quality.min_doc_words=100   # what-if on stored scores
lmpipe generate --run RUN_DIR --prompt "…"
lmpipe export --run RUN_DIR --to hf [--output DIR]  # Hugging Face GPT-2 checkpoint + tokenizer
lmpipe locate TOKENS_DIR/train_00000.bin OFFSET  # the document (id, url, WARC record) holding that token
lmpipe serve                                 # deployments + schedules for the Prefect UI (deployments/cli.py)
"""

from __future__ import annotations

import json
import logging
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

import flows  # noqa: F401  (sets PREFECT_LOGGING_EXTRA_LOGGERS before prefect loads)
from pipelines import config as C
from pipelines import registry
from pipelines.errors import ConfigError, LmpipeError
from pipelines.stats import StageStats, funnel_rows

app = typer.Typer(add_completion=False, no_args_is_help=True, help="lmpipe: Common Crawl WARC → trained GPT.")
console = Console(width=None if sys.stdout.isatty() else 120)  # logs and CI: do not wrap the funnel at 80


def _quiet_libraries(direct: bool = False) -> None:
    """Stage logs (``pipelines.*``) at INFO, libraries at WARNING and chatty extractors at ERROR.

    Under Prefect the ``pipelines`` logger already has Prefect's console and API handlers (see flows/__init__.py),
    so a root handler is installed only for ``--direct`` runs; otherwise each line would print twice.
    """
    if direct:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pipelines").setLevel(logging.INFO)
    for name in ("httpx", "httpcore", "docket", "uvicorn"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("trafilatura", "htmldate", "courlan", "presidio-analyzer", "lightning", "datatrove"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from loguru import logger as loguru_logger  # datatrove logs through loguru

        loguru_logger.remove()
        loguru_logger.add(sys.stderr, level="WARNING")
    except ImportError:
        pass


def print_funnel(stats: list[StageStats]) -> None:
    table = Table(title="Funnel (documents)")
    for col in ("stage", "docs_in", "kept", "dropped", "reason", "tokens"):
        table.add_column(col, justify="left" if col in ("stage", "reason") else "right")
    for row in funnel_rows(stats):
        table.add_row(*(str(row[k]) for k in ("stage", "docs_in", "kept", "dropped", "reason", "tokens")))
    console.print(table)


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code=1)


class Runner(StrEnum):
    local = "local"
    ray = "ray"


RunnerOption = Annotated[Runner, typer.Option(help="Where the data stages' tasks run: local threads or Ray.")]
RayAddressOption = Annotated[
    str | None, typer.Option(help="--runner ray: auto, ray://HOST:10001 or HOST:6379 (unset: a local Ray).")
]


def _runner_overrides(runner: Runner, ray_address: str | None) -> list[str]:
    if ray_address and runner is not Runner.ray:
        _fail("--ray-address needs --runner ray")
    return [f"runner.kind={runner.value}"] + ([f"runner.address={ray_address}"] if ray_address else [])


@app.command()
def run(
    data_root: Annotated[str, typer.Option(help="Where all stage outputs go.")] = "data",
    inputs: Annotated[list[str] | None, typer.Option("--input", help="WARC files/globs/URLs (default: sample)")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML with PipelineConfig fields.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="dotted.key=value override (repeatable).")] = None,
    runner: RunnerOption = Runner.local,
    ray_address: RayAddressOption = None,
) -> None:
    """Run the whole pipeline (default: on the built-in sample) and print the funnel, losses and a sample."""
    _quiet_libraries()
    overrides = [f"data_root={data_root}", *_runner_overrides(runner, ray_address)]
    if not inputs:
        # The sample is ~0.5 M tokens: a small vocabulary and a larger val share suit it.
        overrides += ["tokenize.vocab_size=4096", "tokenize.val_fraction=0.1"]
    else:
        overrides.append(f"inputs={json.dumps(inputs)}")
    try:
        cfg = C.load_config(C.PipelineConfig, config, overrides + (set_ or []))
    except Exception as e:
        _fail(str(e))
    from flows.end_to_end import end_to_end

    t0 = time.monotonic()
    result = end_to_end(cfg)
    stats = [StageStats.model_validate(s) for s in result["stats"]]
    train = StageStats.model_validate(result["train"])
    print_funnel(stats)
    x = train.extra
    console.print(
        f"train loss {x.get('final_train_loss'):.4f} · val loss {x.get('final_val_loss'):.4f} · "
        f"unigram-entropy baseline {x.get('unigram_entropy'):.4f} (nats/token)"
    )
    console.print(f"[bold]sample:[/bold] {x.get('sample', '')}", highlight=False)
    console.print(f"report: {result['report']} · {time.monotonic() - t0:.1f} s")


@app.command()
def refresh(
    crawl: Annotated[str | None, typer.Option(help="Common Crawl crawl id, e.g. CC-MAIN-2024-10, or latest.")] = None,
    inputs: Annotated[
        list[str] | None, typer.Option("--input", help="WARC files/globs/URLs instead of a crawl.")
    ] = None,
    max_warcs: Annotated[int, typer.Option(help="Process at most this many WARC files (~1 GB each).")] = 1,
    offset: Annotated[int, typer.Option(help="Skip this many entries of the crawl's warc.paths.gz first.")] = 0,
    stride: Annotated[int, typer.Option(help="Then take every stride-th entry.")] = 1,
    base_url: Annotated[str, typer.Option(help="Where crawl-data/ lives (https://, s3:// or a mirror).")] = (
        C.CrawlConfig.model_fields["base_url"].default
    ),
    data_root: Annotated[str, typer.Option(help="Where all stage outputs go ({data_root}/{crawl}/{stage}/).")] = "data",
    config: Annotated[Path | None, typer.Option(help="YAML with PipelineConfig fields.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="dotted.key=value override (repeatable).")] = None,
    runner: RunnerOption = Runner.local,
    ray_address: RayAddressOption = None,
) -> None:
    """Run the data stages (no training) on WARC files of a Common Crawl crawl, or on --input files, and print the
    funnel.

    Shards done before with the same code and config are cache hits: a larger --max-warcs adds only new ones.
    """
    _quiet_libraries()
    if (crawl is None) == (not inputs):
        _fail("refresh needs either --crawl or --input")
    overrides = [f"data_root={data_root}", *_runner_overrides(runner, ray_address)]
    if crawl is not None:
        selection = {
            "crawl_id": crawl,
            "max_warcs": max_warcs,
            "offset": offset,
            "stride": stride,
            "base_url": base_url,
        }
        overrides.append(f"crawl={json.dumps(selection)}")
    else:
        overrides.append(f"inputs={json.dumps(inputs)}")
    try:
        cfg = C.load_config(C.PipelineConfig, config, overrides + (set_ or []))
    except Exception as e:
        _fail(str(e))
    from flows.refresh import data_refresh
    from pipelines.remote import RemoteReadError

    t0 = time.monotonic()
    try:
        stats = data_refresh(cfg)
    except (FileNotFoundError, ValueError, RemoteReadError, ConfigError) as e:  # ValueError: bad input
        _fail(str(e))
    print_funnel(stats)
    console.print(
        f"outputs: {Path(cfg.data_root) / cfg.extract.crawl_id} · {time.monotonic() - t0:.1f} s", highlight=False
    )


@app.command()
def sample(
    output: Annotated[Path, typer.Option(help="Directory for the WARC files and sample_truth.json.")] = Path(
        "data/sample-warc"
    ),
    pages: Annotated[int, typer.Option(help="HTML pages in total.")] = C.SampleConfig().pages,
    files: Annotated[int, typer.Option(help="WARC files.")] = C.SampleConfig().files,
    seed: Annotated[int, typer.Option(help="Seed.")] = C.SampleConfig().seed,
) -> None:
    """Write the deterministic sample crawl with its ground truth."""
    from pipelines.sample import generate_sample

    paths = generate_sample(output, C.SampleConfig(pages=pages, files=files, seed=seed))
    for p in paths:
        console.print(str(p))


def _stage_name(value: str) -> str:
    names = [s.name for s in registry.all_stages()]
    if value not in names:
        raise typer.BadParameter(f"{value!r} is not a stage; stages: {', '.join(names)} (lmpipe stages)")
    return value


def _task_overrides(set_: list[str] | None, **flags: object) -> list[str]:
    """--set overrides plus the shortcut flags that were given (annotate_only, vocab_size, max_steps, preset)."""
    return list(set_ or []) + [
        f"{k}={str(v).lower() if v is True else v}" for k, v in flags.items() if v not in (None, False)
    ]


@app.command()
def task(
    stage: Annotated[str, typer.Argument(help="Stage to run on one shard (lmpipe stages).", callback=_stage_name)],
    inputs: Annotated[list[str] | None, typer.Option("--input", help="Input file(s) (repeatable, or several).")] = None,
    output: Annotated[str | None, typer.Option(help="Output file (or directory for dedup/tokenize/train).")] = None,
    data: Annotated[str | None, typer.Option(help="train: the token-shard directory.")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML file with the stage's config fields.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="dotted.key=value override (repeatable).")] = None,
    annotate_only: Annotated[bool, typer.Option("--annotate-only", help="filter/dedup/pii: drop nothing.")] = False,
    vocab_size: Annotated[int | None, typer.Option(help="tokenize: vocabulary size.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="train: optimizer steps.")] = None,
    preset: Annotated[str | None, typer.Option(help="train: tiny | gpt2-124m | gpt2-350m | gpt-1b.")] = None,
    launcher: Annotated[str | None, typer.Option(help="train: local | torchrun | slurm (how the ranks start).")] = None,
    limit: Annotated[int | None, typer.Option(help="Process at most this many documents of each input.")] = None,
    direct: Annotated[bool, typer.Option("--direct", help="Call the pipelines function, no Prefect.")] = False,
) -> None:
    """Run one stage on one shard: through its Prefect task (cached, retried) or --direct."""
    _quiet_libraries(direct)
    spec = registry.get(stage)
    srcs = [data] if spec.takes == "tokens" and data else list(inputs or [])
    if not srcs or not output:
        _fail(f"task {stage} needs {'--data' if spec.takes == 'tokens' else '--input'} and --output")
    if annotate_only and not spec.annotates:
        annotating = ", ".join(s.name for s in registry.all_stages() if s.annotates)
        _fail(f"--annotate-only applies to {annotating}, not {stage}")
    overrides = _task_overrides(
        set_, annotate_only=annotate_only, vocab_size=vocab_size, max_steps=max_steps, preset=preset, launcher=launcher
    )
    try:
        cfg = C.load_config(spec.config, config, overrides)
    except Exception as e:
        _fail(f"{config or '--set'}: {e}")
    for src in srcs:
        if "://" not in src and not Path(src).exists():
            _fail(f"{src}: no such file or directory")
    try:
        if direct:
            stats = spec.run(srcs, output, cfg, limit=limit)
        else:
            from tasks.stages import stage_task

            stats = stage_task(stage, srcs, output, cfg)(srcs, output, cfg, limit)
    except (LmpipeError, FileNotFoundError) as e:  # lmpipe's own, explained errors: one line (disk full, diverged, …)
        _fail(str(e))
    print_funnel([stats])
    console.print_json(stats.model_dump_json())


def _config_fields(model: type) -> str:
    """``field=default`` for every field of a stage's config model (nested sections by name)."""
    parts = []
    for name, field in model.model_fields.items():
        default = field.get_default(call_default_factory=True)
        parts.append(f"{name}={type(default).__name__ if hasattr(default, 'model_fields') else default!r}")
    return ", ".join(parts)


class JobKind(StrEnum):
    slurm = "slurm"
    kubernetes = "kubernetes"


@app.command("train-job")
def train_job(
    kind: Annotated[JobKind, typer.Argument(help="slurm (an sbatch script) | kubernetes (a PyTorchJob manifest).")],
    data: Annotated[str, typer.Option(help="The token-shard directory, as the job's nodes see it.")],
    output: Annotated[str, typer.Option(help="The run directory, as the job's nodes see it.")],
    config: Annotated[Path | None, typer.Option(help="YAML file with TrainConfig fields.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="dotted.key=value override (repeatable).")] = None,
    image: Annotated[str, typer.Option(help="kubernetes: the container image.")] = "lmpipe:gpu",
) -> None:
    """Print the training job a cluster runs for this config, to submit yourself (``sbatch``, ``kubectl apply``):
    the same script ``launcher=slurm`` submits, or a Kubeflow PyTorchJob of torchrun pods."""
    from pipelines.train import launchers

    try:
        cfg = C.load_config(C.TrainConfig, config, set_)
    except Exception as e:
        _fail(f"{config or '--set'}: {e}")
    if kind is JobKind.slurm:
        typer.echo(launchers.render_sbatch(data, output, cfg), nl=False)
    else:
        import yaml

        typer.echo(yaml.safe_dump(launchers.render_kubernetes(data, output, cfg, image=image), sort_keys=False))


@app.command()
def stages(
    fields: Annotated[
        bool, typer.Option("--fields/--no-fields", help="List each config's fields and defaults.")
    ] = True,
) -> None:
    """List the registered stages: shape, place in the data chain, input → output, config (fields, defaults); a
    composite stage (dedup, tokenize) with its phases, each a stage of its own that the refresh runs as tasks."""
    table = Table(title="Stages (pipelines.registry)")
    for col in ("stage", "shape", "order", "takes", "writes", "annotate-only", "config", "what it does"):
        table.add_column(col)
    for s in registry.all_stages():
        if s.part_of:
            continue
        for phase in [s, *(registry.get(name) for name in s.phases)]:
            shape = f"{phase.shape}, {len(phase.phases)} phases" if phase.phases else phase.shape
            table.add_row(
                f"  ↳ {phase.name}" if phase.part_of else phase.name,
                shape,
                "-" if phase.order is None else str(phase.order),
                phase.takes,
                "shard file" if phase.shape == "map" and not phase.part_of else f"{s.directory}/",
                "yes" if phase.annotates else "",
                phase.config.__name__,
                phase.summary,
            )
    console.print(table)
    for s in registry.all_stages() if fields else []:
        if not s.part_of:
            console.print(f"[bold]{s.name}[/bold] ({s.config.__name__}): {_config_fields(s.config)}", highlight=False)


@app.command()
def generate(
    run_dir: Annotated[str, typer.Option("--run", help="Run directory of a finished training.")],
    prompt: Annotated[str, typer.Option(help="Prompt text.")] = "The",
    max_new_tokens: Annotated[int, typer.Option(help="Tokens to generate.")] = 60,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.8,
    top_k: Annotated[int, typer.Option(help="Top-k sampling (0 = off).")] = 50,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
) -> None:
    """Generate text from a trained run."""
    from pipelines.train import generate_text

    try:
        text = generate_text(
            run_dir, prompt, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k or None, seed=seed
        )
    except FileNotFoundError as e:
        _fail(str(e))
    console.print(text, highlight=False)


class ExportFormat(StrEnum):
    hf = "hf"


@app.command()
def export(
    run_dir: Annotated[str, typer.Option("--run", help="Run directory of a training.")],
    to: Annotated[ExportFormat, typer.Option("--to", help="hf: a Hugging Face GPT2LMHeadModel + tokenizer.")],
    output: Annotated[str | None, typer.Option(help="Output directory (default RUN_DIR/hf).")] = None,
) -> None:
    """Export a run's last checkpoint (hf: loadable by transformers' AutoModelForCausalLM / AutoTokenizer)."""
    _quiet_libraries(direct=True)
    from pipelines.train.export import export_hf

    try:
        result = export_hf(run_dir, output)
    except (FileNotFoundError, ImportError) as e:
        _fail(str(e))
    console.print_json(json.dumps(result))


@app.command()
def locate(
    shard: Annotated[Path, typer.Argument(help="A token shard, e.g. data/sample/tokens/train_00000.bin.")],
    offset: Annotated[int, typer.Argument(help="Token position in the shard (0 = first token after the header).")],
) -> None:
    """Map a token position of a .bin shard to its document: id, url, warc_path, warc_offset (what the source has)."""
    from pipelines.token_shards import TokenShardError
    from pipelines.token_shards import locate as locate_token

    try:
        found = locate_token(shard, offset)
    except (TokenShardError, FileNotFoundError) as e:
        _fail(str(e))
    for key, value in found.items():
        line = f"{key}: {value!r}" if key in ("token", "context") else f"{key}: {value}"
        console.print(line, markup=False, highlight=False, soft_wrap=True)  # verbatim, one line per field


@app.command()
def explore(
    input_path: Annotated[Path, typer.Option("--input", help="A filter stage directory (or one shard).")],
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Threshold to change, e.g. gopher_quality.min_doc_words=100.")
    ] = None,
    plots: Annotated[Path | None, typer.Option(help="Where the score histograms go (default INPUT/_explore).")] = None,
    examples: Annotated[int, typer.Option(help="Example documents shown per rule.")] = 3,
) -> None:
    """Re-apply other filter thresholds to stored scores: what each rule would remove, no re-run."""
    from pipelines.explore import ExploreError
    from pipelines.explore import explore as run_explore

    plots_dir = plots or (input_path if input_path.is_dir() else input_path.parent) / "_explore"
    try:
        result = run_explore(input_path, overrides or [], examples=examples, plots_dir=plots_dir)
    except (ExploreError, FileNotFoundError, ValueError) as e:
        _fail(str(e))
    for key, (old, new) in result.changed.items():
        console.print(f"{key}: {old} → {new}", highlight=False)
    if not result.annotated:
        console.print("[yellow]note:[/yellow] not an --annotate-only output: only kept rows are stored")
    table = Table(title=f"What-if over {result.rows} stored documents ({len(result.files)} shards)")
    for col in ("rule", "docs before", "docs after", "Δ docs", "words before", "words after"):
        table.add_column(col, justify="left" if col == "rule" else "right")
    for r in result.rules:
        delta = r.docs_after - r.docs_before
        table.add_row(
            r.rule, str(r.docs_before), str(r.docs_after), f"{delta:+d}", str(r.words_before), str(r.words_after)
        )
    table.add_row(
        "kept",
        str(result.kept_before),
        str(result.kept_after),
        f"{result.kept_after - result.kept_before:+d}",
        str(result.words_kept_before),
        str(result.words_kept_after),
    )
    console.print(table)
    for r in result.rules:
        for ex in r.examples:
            console.print(
                f"  {r.rule} would remove {ex['id']} {ex['url'] or ''}: {ex['text'][:100]!r}", highlight=False
            )
    console.print(f"histograms: {plots_dir}/ ({len(result.plots)} PNG files)")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
