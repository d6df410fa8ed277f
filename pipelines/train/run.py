"""Train the GPT on a directory of token shards with Lightning; the training subprocess.

    python -m pipelines.train.run --data TOKENS_DIR --output RUN_DIR --config-json '{"preset": "tiny"}' [--stop-step N]

Lightning's DDP re-launches this command line once per local rank, so training always runs in its own process
(``pipelines.train.run_train`` starts it). Running the same command again resumes from RUN_DIR/checkpoints/last.ckpt
(model, optimizer, LR schedule and data position). ``--stop-step`` ends the run early without changing the LR
schedule, which is still laid out over ``max_steps``, so a stopped run resumes exactly where it would have been.

RUN_DIR receives: checkpoints/last.ckpt, metrics.csv (step, train_loss, val_loss, lr, tokens_per_sec, mfu over the
whole checkpoint lineage), loss_curve.png, summary.json, model_config.json, train_config.json, tokenizer.json,
Lightning's raw CSV logs under logs/ and TensorBoard event files under tensorboard/ (``tensorboard --logdir RUN_DIR``).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import shutil
import sys
import threading
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_only
from tokenizers import Tokenizer

from pipelines.config import TrainConfig
from pipelines.errors import NonFiniteLossError
from pipelines.shards import publishing
from pipelines.tokenizer import TokenShardError
from pipelines.train import BAD_INPUT_EXIT_CODE, NONFINITE_LOSS_EXIT_CODE
from pipelines.train.data import TokenDataModule, unigram_entropy
from pipelines.train.generation import complete, load_model
from pipelines.train.model import PRESETS, GPTConfig
from pipelines.train.module import GPTModule, training_strategy

logger = logging.getLogger(__name__)
log_rank0 = rank_zero_only(logger.info)  # DDP runs this module once per rank; progress is reported once

SAMPLE_TEMPERATURE = 0.8
SAMPLE_TOP_K = 50
# Exit code when training diverged (NonFiniteLossError; its ERROR line is the last output, no traceback).


def load_tokenizer(path: Path) -> Tokenizer:
    """The tokenize stage's tokenizer.json; a missing or malformed file is a bad-input error naming it."""
    if not path.is_file():
        raise TokenShardError(f"{path}: not found (expected in the output directory of the tokenize stage)")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a bare Exception on malformed JSON
        raise TokenShardError(f"{path}: not a tokenizers tokenizer.json: {e}") from e


def build_gpt_config(cfg: TrainConfig, vocab_size: int) -> GPTConfig:
    """The model architecture: the preset, with TrainConfig's block_size override and the tokenizer's vocabulary."""
    preset = dict(PRESETS[cfg.preset])
    if cfg.block_size is not None:
        preset["block_size"] = cfg.block_size
    return GPTConfig(vocab_size=vocab_size, **preset)


def resolve_precision(cfg: TrainConfig) -> str:
    if cfg.precision != "auto":
        return cfg.precision
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


class RunProgress(Callback):
    """Progress as log lines (the subprocess has no progress bar), and a validation at the final step.

    Lightning validates only every val_check_interval batches; flagging the last step as a stop makes it validate
    there too (inside fit, so the logs and checkpoint see it like any other validation).
    """

    def __init__(self, every: int) -> None:
        self.every = every
        self.start_step: int | None = None  # stays None when the checkpoint is already at max_steps
        self._last_logged = -1

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start_step = trainer.global_step
        verb = "resuming at" if self.start_step else "starting at"
        log_rank0("training %s step %d, stopping at step %d", verb, self.start_step, trainer.max_steps)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if step >= trainer.max_steps:
            trainer.should_stop = True
        if step % self.every or step == self._last_logged:  # (called once per micro-batch)
            return
        self._last_logged = step
        m = {k: float(v) for k, v in trainer.callback_metrics.items()}
        log_rank0(
            "step %d/%d train_loss %.4f lr %.2e tokens/s %.0f mfu %.2f%%",
            step, trainer.max_steps, m.get("train_loss", math.nan), m.get("lr", math.nan),
            m.get("tokens_per_sec", math.nan), 100 * m.get("mfu", math.nan),
        )  # fmt: skip

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        log_rank0("step %d val_loss %.4f", trainer.global_step, float(trainer.callback_metrics["val_loss"]))


class AccumulationChange(Callback):
    """Resuming with another accumulate_grad_batches (e.g. a 2-process run moved to 1 process with 2 micro-batches
    per step, the same global batch): Lightning's loop counts micro-batches per rank and decides from that count
    when the optimizer steps and when to validate, so the saved count is rescaled to the new accumulation, as if
    the run had always used it. Without this the first resumed step would take one micro-batch, and every later
    step would straddle two of the original run's."""

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        old = int(checkpoint.get("hyper_parameters", {}).get("train", {}).get("accumulate_grad_batches", 1))
        new = trainer.accumulate_grad_batches
        progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.batch_progress")
        if old == new or progress is None:
            return
        steps = int(checkpoint["global_step"])
        for counters in (progress["total"], progress["current"]):
            for key, value in counters.items():  # saved at a step boundary: steps × old, give or take one
                counters[key] = steps * new + (int(value) - steps * old)
        log_rank0("accumulate_grad_batches %d → %d: resuming at micro-batch %d", old, new, steps * new)


class PendingValidation(Callback):
    """A resumed run validates the checkpoint's step when the run that wrote the checkpoint did not get to.

    ModelCheckpoint(every_n_train_steps) saves at the end of the step's last batch, before that step's validation;
    a run killed in between leaves a checkpoint whose validation never happened, and Lightning, resuming from it,
    fast-forwards past that validation (the loss curve loses a point). When no earlier log of the run directory
    holds a val_loss at that step, the loaded checkpoint's loop state is turned into the one Lightning saves in
    the middle of a validation (train batch completed, validation started), so Lightning itself goes back and runs
    the validation before training on. The decision is rank 0's, broadcast, so every rank validates or none does.
    """

    def __init__(self, run_dir: Path, val_every: int) -> None:
        self.run_dir = run_dir
        self.val_every = val_every
        self.revalidated: int | None = None  # the step validated again, if any

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        fit = checkpoint.get("loops", {}).get("fit_loop", {})
        train, val = fit.get("epoch_loop.batch_progress"), fit.get("epoch_loop.val_loop.batch_progress")
        step = int(checkpoint.get("global_step", 0))
        saved_before_validation = (
            train is not None and val is not None and train["total"]["completed"] == train["total"]["processed"] - 1
        )
        pending = saved_before_validation and step > 0 and step % self.val_every == 0
        pending = bool(trainer.strategy.broadcast(pending and step not in validated_steps(self.run_dir), src=0))
        if not pending:
            return
        for counters in (train["total"], train["current"]):  # the batch's end hooks ran: as saved during validation
            counters["completed"] = counters["processed"]
        done = int(val["total"]["completed"])
        val["total"].update(ready=done + 1, started=done + 1, processed=done, completed=done)
        val["current"].update(ready=1, started=1, processed=0, completed=0)
        self.revalidated = step
        log_rank0("step %d: its validation did not run before the checkpoint's run ended; validating it now", step)


def validated_steps(run_dir: Path) -> set[int]:
    """Steps with a val_loss in the run directory's metrics.csv or any of its processes' CSV logs."""
    rows = read_metrics(run_dir / "metrics.csv")
    for log_dir in (run_dir / "logs").glob("version_*"):
        rows += logged_metrics(log_dir)
    return {int(r["step"]) for r in rows if "val_loss" in r and "step" in r}


def read_metrics(path: Path) -> list[dict[str, float]]:
    """Rows of a Lightning metrics.csv as floats (empty cells left out)."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def logged_metrics(log_dir: Path) -> list[dict[str, float]]:
    """The rows of one process's Lightning CSV log, by steps done: Lightning logs after k optimizer steps as step
    k - 1; metrics.csv counts steps done (val at step val_every, ...)."""
    return [{**r, "step": r["step"] + 1} for r in read_metrics(log_dir / "metrics.csv") if "step" in r]


def earlier_metrics(run_dir: Path, log_dir: Path, start_step: int) -> list[dict[str, float]]:
    """The rows of the runs before this one up to the step it resumed from: metrics.csv (written when a run ends),
    then the CSV log of every earlier process (Lightning writes it as it logs), oldest first, so that the steps of
    a run killed before it could write metrics.csv are not lost; a step trained twice (by a run killed after it,
    before its next checkpoint, and by the run that resumed) keeps its later rows."""
    others = [d for d in log_dir.parent.glob("version_*") if d != log_dir and d.name.removeprefix("version_").isdigit()]
    rows = read_metrics(run_dir / "metrics.csv")
    for d in sorted(others, key=lambda d: int(d.name.removeprefix("version_"))):
        rows += logged_metrics(d)
    return [r for r in rows if r.get("step", math.inf) <= start_step]


def write_metrics(rows: list[dict[str, float]], path: Path) -> None:
    """One row per step, train and val columns merged, steps as ints."""
    by_step: dict[int, dict[str, float]] = {}
    for row in rows:
        if "step" in row:
            values = {k: v for k, v in row.items() if k not in ("step", "epoch")}
            by_step.setdefault(int(row["step"]), {}).update(values)
    keys = sorted({k for r in by_step.values() for k in r})
    columns = ["step"] + [k for k in ("train_loss", "val_loss", "lr", "tokens_per_sec", "mfu") if k in keys]
    columns += [k for k in keys if k not in columns]
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for step in sorted(by_step):
            writer.writerow({"step": step, **by_step[step]})
    tmp.replace(path)


def plot_loss_curve(rows: list[dict[str, float]], baseline: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for key, style in (("train_loss", "-"), ("val_loss", "o-")):
        points = [(r["step"], r[key]) for r in rows if key in r]
        if points:
            ax.plot(*zip(*points, strict=True), style, label=key, markersize=4)
    ax.axhline(baseline, linestyle="--", color="gray", label=f"unigram entropy {baseline:.2f}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a tmp file beside the final name, then renamed: a kill mid-save leaves the previous
    last.ckpt whole. (Lightning's default writes through an fsspec transaction whose tmp file is in the system tmp
    directory; when that is another filesystem than the run directory, the final move is a copy, and a kill in the
    middle of it leaves a truncated last.ckpt.) A full disk raises DiskFullError naming the checkpoint."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        with publishing(str(path), str(tmp), lambda: tmp.unlink(missing_ok=True)):
            with tmp.open("wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)


def build_trainer(cfg: TrainConfig, run_dir: Path, max_steps: int, callbacks: list[Callback]) -> L.Trainer:
    """The Trainer of a run: devices, strategy, precision, clipping and accumulation from cfg; CSV + TensorBoard logs.

    bench/train_step.py times this same Trainer against a plain PyTorch loop.
    """
    # the CSV log flushed at every logged step: a killed run's rows are on disk for the run that resumes it
    csv_log = CSVLogger(run_dir, name="logs", flush_logs_every_n_steps=1)
    loggers: list[Logger] = [csv_log, TensorBoardLogger(run_dir, name="tensorboard")]
    return L.Trainer(
        accelerator="auto",
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=training_strategy(cfg),
        precision=resolve_precision(cfg),  # type: ignore[arg-type]
        max_steps=max_steps,
        accumulate_grad_batches=cfg.accumulate_grad_batches,
        gradient_clip_val=cfg.grad_clip or None,
        val_check_interval=cfg.val_every * cfg.accumulate_grad_batches,  # counted in micro-batches
        check_val_every_n_epoch=None,  # the train stream is endless: validation is by steps only
        limit_val_batches=cfg.val_batches,
        num_sanity_val_steps=0,
        log_every_n_steps=min(10, cfg.val_every),
        logger=loggers,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=False,
        enable_model_summary=False,  # a rich table on stdout; the run logs one line with the same facts
        default_root_dir=run_dir,
    )


@rank_zero_only
def write_run_files(run_dir: Path, data_dir: Path, gpt_config: GPTConfig, cfg: TrainConfig) -> None:
    """What generate_text needs besides the checkpoint; written first so a stopped run is usable too."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "model_config.json").write_text(json.dumps(asdict(gpt_config), indent=2))
    (run_dir / "train_config.json").write_text(cfg.model_dump_json(indent=2))
    shutil.copyfile(data_dir / "tokenizer.json", run_dir / "tokenizer.json")


def _finish(
    run_dir: Path,
    trainer: L.Trainer,
    module: GPTModule,
    datamodule: TokenDataModule,
    gpt_config: GPTConfig,
    cfg: TrainConfig,
    start_step: int,
    trained: bool,
) -> dict[str, Any]:
    """After the fit, on global rank 0: metrics.csv, the loss curve, a sample, summary.json."""
    log_dir = Path(trainer.loggers[0].log_dir)
    rows = earlier_metrics(run_dir, log_dir, start_step) + logged_metrics(log_dir)
    write_metrics(rows, run_dir / "metrics.csv")
    rows = read_metrics(run_dir / "metrics.csv")

    baseline = unigram_entropy(datamodule.train_shards, datamodule.val_shards, gpt_config.vocab_size)
    plot_loss_curve(rows, baseline, run_dir / "loss_curve.png")
    model, run_tokenizer = load_model(run_dir, device=module.device)
    last = {key: next((r[key] for r in reversed(rows) if key in r), math.nan) for key in ("train_loss", "val_loss")}
    tokens_per_step = cfg.batch_size * gpt_config.block_size * cfg.accumulate_grad_batches * trainer.world_size
    previous = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
    summary = {
        "final_train_loss": last["train_loss"],  # one batch: the last step's
        "final_val_loss": last["val_loss"],  # val_batches batches at the last step
        "unigram_entropy": baseline,
        "steps": trainer.global_step,
        "tokens": trainer.global_step * tokens_per_step,
        # training throughput of this process (first step and validation excluded); a run that had nothing
        # left to train keeps the figures of the run before it
        "tokens_per_sec": module.mean_tokens_per_sec if trained else previous.get("tokens_per_sec", 0.0),
        "mfu": module.mfu(module.mean_tokens_per_sec) if trained else previous.get("mfu", 0.0),
        "params": model.get_num_params(non_embedding=False),
        "world_size": trainer.world_size,  # of the process group that trained last (a resume may change it)
        "num_nodes": trainer.num_nodes,
        "devices_per_node": trainer.num_devices,
        "global_batches": datamodule.global_position,
        "sample": complete(
            model, run_tokenizer, cfg.sample_prompt, cfg.sample_tokens, SAMPLE_TEMPERATURE, SAMPLE_TOP_K, cfg.seed
        ),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    logger.info(
        "done: %d steps, train_loss %.4f, val_loss %.4f (unigram entropy %.4f), %.0f tokens/s, mfu %.2f%%",
        summary["steps"], summary["final_train_loss"], summary["final_val_loss"], baseline,
        summary["tokens_per_sec"], 100 * summary["mfu"],
    )  # fmt: skip
    logger.info("sample: %r", summary["sample"])
    return summary


def train(data_dir: Path, run_dir: Path, cfg: TrainConfig, stop_step: int | None = None) -> dict[str, Any] | None:
    """One training run (resumed if RUN_DIR has a last.ckpt); returns the summary on global rank 0, else None."""
    tokenizer = load_tokenizer(data_dir / "tokenizer.json")
    gpt_config = build_gpt_config(cfg, tokenizer.get_vocab_size())
    datamodule = TokenDataModule(
        data_dir, gpt_config.block_size, cfg.batch_size, gpt_config.vocab_size, cfg.seed, run_dir / "data_log"
    )
    write_run_files(run_dir, data_dir, gpt_config, cfg)

    L.seed_everything(cfg.seed, workers=True)
    module = GPTModule(gpt_config, cfg)
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")

    last_ckpt = run_dir / "checkpoints" / "last.ckpt"
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        save_last=True,
        save_top_k=0,  # last.ckpt only: the run is a single trajectory, resumable from its end
        every_n_train_steps=cfg.val_every,
        enable_version_counter=False,
    )
    progress = RunProgress(every=min(10, cfg.val_every))
    max_steps = min(cfg.max_steps, stop_step) if stop_step else cfg.max_steps
    callbacks = [checkpoint, progress, AccumulationChange(), PendingValidation(run_dir, cfg.val_every)]
    trainer = build_trainer(cfg, run_dir, max_steps, callbacks)
    log_rank0(
        "model: %s preset, %d layers, %d heads, %d dims, block %d, vocab %d (padded %d), %.2fM parameters",
        cfg.preset, gpt_config.n_layer, gpt_config.n_head, gpt_config.n_embd, gpt_config.block_size,
        gpt_config.vocab_size, gpt_config.padded_vocab_size, module.model.get_num_params(non_embedding=False) / 1e6,
    )  # fmt: skip
    if cfg.compile:
        module.model.compile()  # in place: the state_dict keys (and so checkpoints) stay those of the plain model
    trainer.fit(module, datamodule=datamodule, ckpt_path=last_ckpt if last_ckpt.is_file() else None)
    start_step = trainer.global_step if progress.start_step is None else progress.start_step
    trained = trainer.global_step > start_step
    if not trained:
        log_rank0("nothing to train: %s is at step %d (max_steps %d)", last_ckpt, start_step, max_steps)
    if trained and trainer.global_step % cfg.val_every:
        trainer.save_checkpoint(last_ckpt)  # the periodic save missed the final step
    if not trainer.is_global_zero:
        return None
    return _finish(run_dir, trainer, module, datamodule, gpt_config, cfg, start_step, trained)


def exit_with_parent() -> None:
    """Stop this process (and so the run) when stdin reaches end of file.

    ``run_train`` gives the training a stdin pipe it never writes to; the pipe closes when ``run_train``'s process
    ends, however it ends (kill -9 included). Otherwise an orphaned training would go on writing checkpoints and
    logs into the run directory, beside the rerun that resumes from it. DDP's other ranks inherit the same stdin.
    """

    def watch() -> None:
        while os.read(0, 1 << 12):  # the raw descriptor: a buffered reader's lock would block interpreter shutdown
            pass
        logger.error("the process that started this training is gone: stopping")
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.train.run", description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="Tokenize output: tokenizer.json + *_NNNNN.bin.")
    parser.add_argument("--output", required=True, type=Path, help="Run directory (created; resumed if it exists).")
    parser.add_argument("--config-json", default="{}", help="TrainConfig as JSON (missing fields take defaults).")
    parser.add_argument("--stop-step", type=int, default=None, help="Stop at this step (LR schedule unchanged).")
    parser.add_argument(
        "--exit-with-parent", action="store_true", help="Stop when stdin closes (run_train's pipe: its process died)."
    )
    args = parser.parse_args(argv)
    if args.exit_with_parent:
        exit_with_parent()

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    logging.captureWarnings(True)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):  # Lightning's own handlers, added on import
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    warnings.filterwarnings("ignore", ".*does not have many workers.*")  # by design: see TokenDataModule._loader
    warnings.filterwarnings("ignore", ".*treespec, LeafSpec.*is deprecated.*")  # Lightning 2.6 on torch 2.13

    cfg = TrainConfig.model_validate_json(args.config_json)
    try:
        train(args.data, args.output, cfg, stop_step=args.stop_step)
    except (TokenShardError, FileNotFoundError) as e:
        logger.error("%s", e)
        return BAD_INPUT_EXIT_CODE
    except NonFiniteLossError as e:
        logger.error("%s", e)
        return NONFINITE_LOSS_EXIT_CODE
    return 0


if __name__ == "__main__":
    sys.exit(main())
