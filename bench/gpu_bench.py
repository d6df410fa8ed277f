"""GPU training path, measured: lmpipe's own training run (``pipelines.train.run_train``) on synthetic token shards.

    .venv/bin/python bench/gpu_bench.py --mode bench --result bench.json   # GPT-2 124M, bf16, torch.compile, 200 steps
    .venv/bin/python bench/gpu_bench.py --mode ddp --result ddp.json       # DDP smoke on every GPU, a few steps
    .venv/bin/python bench/gpu_bench.py --mode fsdp --result fsdp.json     # FSDP smoke: gpt-1b on >= 2 GPUs, else 350m
    .venv/bin/python bench/gpu_bench.py --mode report --parts DIR --out gpu_check.json   # merge + nvidia-smi
    .venv/bin/python bench/gpu_bench.py --cpu-smoke --result smoke.json    # tiny preset, 5 steps, CPU only

``bench/gpu_check.sh`` runs all of these (each under a time limit) after ``pytest -m gpu``. A measurement is a real
run directory: tokens/s and MFU are those of its summary.json (first step and validation excluded; MFU against
``pipelines.train.module.default_peak_flops``), and its end (a sample generated from last.ckpt by
``generation.load_model``) proves the checkpoint of that strategy loads as a plain GPT.

Data: a WordLevel tokenizer.json of ``--vocab-size`` ids (GPT-2's 50257 by default, so the output layer costs what
it costs in a real run) and shards of "phrases": 16-token random sequences drawn from a fixed set, concatenated in
random order. The order within a phrase is learnable, so the loss falls far below the unigram entropy within a few
hundred steps, a check that the run trains and does not only run. Benchmarks are not tests: nothing here asserts a
timing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere: bench/ is not a package

EOT = "<|endoftext|>"
PHRASE_LENGTH = 16
SUMMARY_KEYS = ("tokens_per_sec", "mfu", "steps", "tokens", "params", "final_train_loss", "final_val_loss")


def write_synthetic_tokens(
    out_dir: Path, vocab_size: int, train_tokens: int, val_tokens: int, n_phrases: int = 1000, seed: int = 0
) -> Path:
    """``out_dir`` as the tokenize stage leaves it: tokenizer.json (WordLevel, ``vocab_size`` ids, EOT id 0) and
    train_00000.bin / val_00000.bin of phrases (see the module docstring); both splits use the same phrases."""
    import numpy as np
    from tokenizers import Tokenizer, models, pre_tokenizers

    from pipelines.tokenizer import write_token_bin

    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = {EOT: 0, **{f"t{i}": i for i in range(1, vocab_size)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=EOT))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(out_dir / "tokenizer.json"))
    rng = np.random.default_rng(seed)
    phrases = rng.integers(1, vocab_size, size=(n_phrases, PHRASE_LENGTH))
    for name, n_tokens in (("train_00000.bin", train_tokens), ("val_00000.bin", val_tokens)):
        picks = rng.integers(0, n_phrases, size=-(-n_tokens // PHRASE_LENGTH))
        write_token_bin(out_dir / name, phrases[picks].ravel()[:n_tokens], vocab_size=vocab_size)
    return out_dir


def mode_config(mode: str, args: argparse.Namespace, n_gpus: int) -> dict[str, Any]:
    """TrainConfig fields of one measurement (--cpu-smoke: the tiny preset for 5 steps, whatever the mode)."""
    if args.cpu_smoke:
        return dict(preset="tiny", batch_size=4, max_steps=5, precision="32-true", devices=1, strategy="auto")
    if mode == "bench":
        return dict(preset="gpt2-124m", batch_size=args.batch_size, max_steps=args.steps, compile=True, devices=1)
    if mode == "ddp":
        return dict(preset="gpt2-124m", batch_size=8, max_steps=10, strategy="ddp", devices=max(n_gpus, 1))
    if mode == "fsdp":  # one GPU only shows that FSDP runs and its checkpoint loads; two or more shard a 1B model
        preset = "gpt-1b" if n_gpus >= 2 else "gpt2-350m"
        return dict(preset=preset, batch_size=4, max_steps=6, strategy="fsdp", activation_checkpointing=True)
    raise ValueError(f"unknown mode {mode!r}")


def measure(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train one run of ``mode`` in a fresh temporary directory; the run's summary figures, or its error."""
    import torch

    from pipelines.config import PRESET_CONTEXT, TrainConfig
    from pipelines.train import TrainingFailedError, run_train

    n_gpus = torch.cuda.device_count()
    fields = mode_config(mode, args, n_gpus)
    steps = fields["max_steps"]
    cfg = TrainConfig(
        **fields, warmup_steps=min(20, steps // 2), val_every=steps, val_batches=4, sample_tokens=8, seed=args.seed
    )
    result: dict[str, Any] = {"mode": mode, "cpu_smoke": args.cpu_smoke, "config": cfg.model_dump(mode="json")}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"gpu_bench_{mode}_") as tmp:
        block = cfg.block_size or PRESET_CONTEXT[cfg.preset]
        vocab = 512 if args.cpu_smoke else args.vocab_size
        data = write_synthetic_tokens(Path(tmp) / "tokens", vocab, train_tokens=64 * block * 16, val_tokens=8 * block)
        try:
            stats = run_train(data, Path(tmp) / "run", cfg)
        except TrainingFailedError as e:
            return {**result, "ok": False, "seconds": time.perf_counter() - started, "error": e.last_lines[-20:]}
        summary = json.loads((Path(tmp) / "run" / "summary.json").read_text())
    losses = {"final_train_loss": summary["final_train_loss"], "unigram_entropy": summary["unigram_entropy"]}
    return {
        **result,
        "ok": True,
        "seconds": time.perf_counter() - started,
        "stage_tokens": stats.tokens,
        **{k: summary.get(k) for k in SUMMARY_KEYS},
        "learned": losses["final_train_loss"] < losses["unigram_entropy"],  # below what token counts alone give
    }


def device_info() -> dict[str, Any]:
    """torch's view of the devices, the MFU denominator used for them, and ``nvidia-smi``'s (None without it)."""
    import torch

    from pipelines.train.module import peak_flops_for

    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpus": names,
        "bf16_peak_flops": [peak_flops_for(n, "bf16-mixed") for n in names],
    }
    query = "name,memory.total,driver_version,power.limit,clocks.max.sm"
    try:
        smi = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        )
        info["nvidia_smi"] = {"query": query, "rows": smi.stdout.strip().splitlines(), "returncode": smi.returncode}
    except (FileNotFoundError, subprocess.TimeoutExpired) as e:
        info["nvidia_smi"] = None
        info["nvidia_smi_error"] = str(e)
    return info


def report(parts: Path, pytest_log: Path | None, pytest_rc: int | None) -> dict[str, Any]:
    """One JSON of the whole check: devices, the gpu tests' outcome and every measurement (a missing part: the step
    was killed at its time limit or crashed before writing; gpu_check.sh records its exit code)."""
    steps = {}
    for name in ("bench", "ddp", "fsdp"):
        path = parts / f"{name}.json"
        rc_path = parts / f"{name}.rc"
        rc = int(rc_path.read_text()) if rc_path.is_file() else None
        steps[name] = json.loads(path.read_text()) if path.is_file() else {"ok": False, "returncode": rc}
    tests = {"returncode": pytest_rc}
    if pytest_log is not None and pytest_log.is_file():
        tests["tail"] = pytest_log.read_text(errors="replace").splitlines()[-30:]
    return {"device": device_info(), "pytest_gpu": tests, **steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=["bench", "ddp", "fsdp", "report"], default="bench")
    parser.add_argument("--cpu-smoke", action="store_true", help="Tiny preset, 5 steps, on the CPU (no GPU needed).")
    parser.add_argument("--result", type=Path, help="Write this measurement's JSON here (else stdout).")
    parser.add_argument("--steps", type=int, default=200, help="bench: optimizer steps.")
    parser.add_argument("--batch-size", type=int, default=16, help="bench: sequences per step (x 1024 tokens).")
    parser.add_argument("--vocab-size", type=int, default=50257)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--parts", type=Path, help="report: the directory of the measurements' JSON files.")
    parser.add_argument("--pytest-log", type=Path, help="report: output of pytest -m gpu.")
    parser.add_argument("--pytest-rc", type=int, help="report: exit code of pytest -m gpu.")
    parser.add_argument("--out", type=Path, help="report: write the merged JSON here.")
    args = parser.parse_args()

    if args.cpu_smoke:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch initialises CUDA; the training subprocess inherits it
    if args.mode == "report":
        result = report(args.parts, args.pytest_log, args.pytest_rc)
        path = args.out
    else:
        result = measure(args.mode, args)
        path = args.result
    text = json.dumps(result, indent=2)
    if path is None:
        print(text)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    if not result.get("ok", True):
        sys.exit(1)


if __name__ == "__main__":
    main()
