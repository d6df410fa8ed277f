"""Tests of the GPU training path: presets up to 1B, activation checkpointing, FSDP, the MFU peak table and the GPU
check script. The CPU tests run everywhere; the ``gpu`` tests need CUDA and are skipped without it, also under
LMPIPE_STRICT_TESTS=1 (a CPU CI machine lacks no prerequisite it could install), and run in bench/gpu_check.sh.

pytest tests/pipelines/test_train_gpu_path.py          # CPU part
pytest -m gpu tests/pipelines/test_train_gpu_path.py   # on a CUDA machine
"""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import torch
from lightning.pytorch.strategies import FSDPStrategy
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

from bench.gpu_bench import write_synthetic_tokens
from pipelines.config import PRESET_CONTEXT, TrainConfig
from pipelines.train import run_train
from pipelines.train.generation import load_model
from pipelines.train.model import GPT, PRESETS, Block, GPTConfig
from pipelines.train.module import (
    DEFAULT_CPU_PEAK_FLOPS,
    GPTModule,
    default_peak_flops,
    peak_flops_for,
    training_strategy,
)

ROOT = Path(__file__).resolve().parents[2]
# a plain skipif, not conftest.unavailable: a GPU is not a prerequisite a CPU CI machine could provide, so it skips
# there even under LMPIPE_STRICT_TESTS=1; `pytest -m gpu` (bench/gpu_check.sh) runs these on a CUDA machine
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def preset_params(preset: str) -> int:
    """Parameters of a preset at GPT-2's vocabulary, counted on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        return GPT(GPTConfig(vocab_size=50257, **PRESETS[preset])).get_num_params(non_embedding=False)


def test_every_train_preset_has_an_architecture() -> None:
    presets = typing.get_args(TrainConfig.model_fields["preset"].annotation)
    assert set(presets) == set(PRESETS) == set(PRESET_CONTEXT)
    for name, shape in PRESETS.items():
        assert shape["block_size"] == PRESET_CONTEXT[name]
        assert shape["n_embd"] % shape["n_head"] == 0, name


def test_preset_parameter_counts_match_the_known_models() -> None:
    """GPT-2 small 124.4M and medium ~354M (vocab 50257 padded to 50304, no biases); gpt-1b in the 1.1-1.3B class."""
    assert round(preset_params("gpt2-124m") / 1e6, 1) == 124.4
    assert 353e6 < preset_params("gpt2-350m") < 356e6
    assert 1.1e9 < preset_params("gpt-1b") < 1.35e9
    assert PRESETS["gpt-1b"]["block_size"] == 2048


def loss_and_grads(model: GPT, idx: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # the same dropout masks for both models
    _, loss = model(idx, idx)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def count_block_forwards(model: GPT) -> list[int]:
    """Calls of each Block's forward, counted on entry (a recomputation stops once it has what backward needs)."""
    counts = [0] * len(model.transformer.h)
    for i, block in enumerate(model.transformer.h):
        block.register_forward_pre_hook(lambda *_, i=i: counts.__setitem__(i, counts[i] + 1))
    return counts


def test_activation_checkpointing_recomputes_blocks_with_the_same_loss_and_gradients() -> None:
    """Each Block runs again in backward, with the same dropout masks: loss and gradients equal the plain model's."""
    config = GPTConfig(vocab_size=300, block_size=32, n_layer=3, n_head=2, n_embd=32, dropout=0.1)
    torch.manual_seed(0)
    plain = GPT(config).train()
    checkpointed = GPT(config, activation_checkpointing=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    idx = torch.randint(0, 300, (4, 32))
    plain_counts, ckpt_counts = count_block_forwards(plain), count_block_forwards(checkpointed)
    loss, grads = loss_and_grads(plain, idx)
    ckpt_loss, ckpt_grads = loss_and_grads(checkpointed, idx)
    assert plain_counts == [1, 1, 1] and ckpt_counts == [2, 2, 2]  # forward, then the recomputation in backward
    torch.testing.assert_close(ckpt_loss, loss)
    for name, grad in grads.items():
        torch.testing.assert_close(ckpt_grads[name], grad, msg=name)
    with torch.no_grad():
        checkpointed(idx, idx)  # evaluation and generation do not checkpoint
    assert ckpt_counts == [3, 3, 3]


def test_fsdp_strategy_shards_and_checkpoints_blocks() -> None:
    """strategy=fsdp: Lightning's FSDPStrategy wrapping every Block, full state dicts; the model itself does not
    checkpoint then (the strategy does); other strategies stay Lightning's names."""
    assert training_strategy(TrainConfig(strategy="auto")) == "auto"
    assert training_strategy(TrainConfig(strategy="ddp")) == "ddp"
    strategy = training_strategy(TrainConfig(strategy="fsdp", activation_checkpointing=True))
    assert isinstance(strategy, FSDPStrategy)
    assert strategy.kwargs["auto_wrap_policy"]._module_classes == {Block}
    assert strategy._activation_checkpointing_kwargs["auto_wrap_policy"]._module_classes == {Block}
    assert strategy.sharding_strategy.name == "FULL_SHARD" and strategy._state_dict_type == "full"
    assert training_strategy(TrainConfig(strategy="fsdp"))._activation_checkpointing_kwargs == {}

    gpt = GPTConfig(vocab_size=300, block_size=16, n_layer=2, n_head=2, n_embd=32)
    assert GPTModule(gpt, TrainConfig(activation_checkpointing=True)).model.activation_checkpointing
    assert not GPTModule(
        gpt, TrainConfig(activation_checkpointing=True, strategy="fsdp")
    ).model.activation_checkpointing


def test_weight_decay_groups_see_through_checkpoint_wrappers() -> None:
    """Blocks wrapped as FSDP's activation checkpointing wraps them (``_checkpoint_wrapped_module.`` in every name):
    the groups are still 2-D weights decayed, LayerNorm weights and biases not."""
    gpt = GPTConfig(vocab_size=300, block_size=16, n_layer=2, n_head=2, n_embd=32, bias=True)
    module = GPTModule(gpt, TrainConfig(weight_decay=0.1))
    for i, block in enumerate(module.model.transformer.h):
        module.model.transformer.h[i] = checkpoint_wrapper(block)
    params = dict(module.model.named_parameters())
    assert any("_checkpoint_wrapped_module." in name for name in params)
    decay, no_decay = module.configure_optimizers()["optimizer"].param_groups
    assert {id(p) for p in decay["params"]} == {id(p) for p in params.values() if p.dim() == 2}
    assert {id(p) for p in no_decay["params"]} == {id(p) for p in params.values() if p.dim() == 1}


def test_peak_flops_by_device_name() -> None:
    """Dense bf16 peaks as torch.cuda.get_device_name spells the chips; fp32 matmuls count at TF32 unless off."""
    assert peak_flops_for("NVIDIA H200", "bf16-mixed") == 989.4e12
    assert peak_flops_for("NVIDIA H100 80GB HBM3", "bf16-mixed") == 989.4e12
    assert peak_flops_for("NVIDIA H100 PCIe", "bf16-mixed") == 756e12
    assert peak_flops_for("NVIDIA A100-SXM4-80GB", "bf16-mixed") == 312e12
    assert peak_flops_for("NVIDIA A100-SXM4-80GB", "16-mixed") == 312e12
    assert peak_flops_for("NVIDIA A100-SXM4-80GB", "32-true") == 156e12
    assert peak_flops_for("NVIDIA A100-SXM4-80GB", "32-true", tf32=False) == 19.5e12
    assert peak_flops_for("NVIDIA H200", "32-true") == 494.7e12
    assert peak_flops_for("Tesla T4", "bf16-mixed") is None  # left to Lightning's table
    assert default_peak_flops(torch.device("cpu"), "32-true") == DEFAULT_CPU_PEAK_FLOPS


def test_gpu_check_script_parses() -> None:
    subprocess.run(["bash", "-n", str(ROOT / "bench" / "gpu_check.sh")], check=True)


def test_gpu_bench_cpu_smoke_trains_and_reports(tmp_path: Path) -> None:
    """bench/gpu_bench.py end to end without a GPU: a 5-step tiny run through run_train, then the merged report."""
    bench = [sys.executable, str(ROOT / "bench" / "gpu_bench.py")]
    subprocess.run([*bench, "--cpu-smoke", "--result", str(tmp_path / "bench.json")], check=True, timeout=120)
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["ok"] and result["steps"] == 5 and result["config"]["preset"] == "tiny"
    assert result["tokens_per_sec"] > 0 and 0 < result["mfu"] < 1
    with torch.device("meta"):
        assert result["params"] == GPT(GPTConfig(vocab_size=512, **PRESETS["tiny"])).get_num_params(False)
    (tmp_path / "log").write_text("1 passed\n")
    out = tmp_path / "gpu_check.json"
    report = [*bench, "--mode", "report", "--parts", str(tmp_path), "--pytest-log", str(tmp_path / "log")]
    subprocess.run([*report, "--pytest-rc", "0", "--out", str(out)], check=True, timeout=60, env=cpu_only_env())
    merged = json.loads(out.read_text())
    assert merged["bench"] == result and merged["fsdp"] == {"ok": False, "returncode": None}
    assert merged["pytest_gpu"] == {"returncode": 0, "tail": ["1 passed"]}
    assert merged["device"]["gpus"] == [] and "torch" in merged["device"]


def cpu_only_env() -> dict[str, str]:
    return {**os.environ, "CUDA_VISIBLE_DEVICES": ""}


# --- on a GPU ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def phrase_tokens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shards a tiny model learns within 20 steps (50 phrases over 512 ids; see bench/gpu_bench.py)."""
    return write_synthetic_tokens(tmp_path_factory.mktemp("tokens"), 512, 200_000, 20_000, n_phrases=50)


def gpu_config(**overrides: object) -> TrainConfig:
    base = dict(
        preset="tiny", batch_size=16, max_steps=20, warmup_steps=5, val_every=10, val_batches=4, sample_tokens=8,
        devices=1,
    )  # fmt: skip
    return TrainConfig(**{**base, **overrides})


def val_losses(run_dir: Path) -> list[float]:
    with (run_dir / "metrics.csv").open(newline="") as f:
        return [float(r["val_loss"]) for r in csv.DictReader(f) if r.get("val_loss")]


def assert_learned(run_dir: Path, extra: dict[str, object], steps: int) -> None:
    """The run trained ``steps`` steps, its val loss fell below the unigram entropy, and last.ckpt loads."""
    losses = val_losses(run_dir)
    assert extra["steps"] == steps and losses[-1] < losses[0], losses
    assert extra["final_val_loss"] < extra["unigram_entropy"] - 1.0, extra  # learned the phrases' order
    assert 0 < extra["mfu"] < 1 and extra["tokens_per_sec"] > 0
    model, _ = load_model(run_dir, device="cuda")
    assert model.get_num_params(non_embedding=False) == extra["params"]


@pytest.mark.gpu
@needs_cuda
def test_bf16_training_loss_falls_on_cuda(
    phrase_tokens: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """precision auto is bf16-mixed on a CUDA device, and a tiny model learns in it."""
    caplog.set_level(logging.INFO, logger="pipelines.train")
    stats = run_train(phrase_tokens, tmp_path / "run", gpu_config())
    assert any("Using bfloat16 Automatic Mixed Precision" in r.getMessage() for r in caplog.records)
    assert_learned(tmp_path / "run", stats.extra, 20)


@pytest.mark.gpu
@needs_cuda
def test_compiled_training_on_cuda(phrase_tokens: Path, tmp_path: Path) -> None:
    """torch.compile'd training learns as well, and its checkpoint has the plain model's keys (load_model reads it)."""
    stats = run_train(phrase_tokens, tmp_path / "run", gpu_config(compile=True))
    assert_learned(tmp_path / "run", stats.extra, 20)
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert not any("_orig_mod" in k for k in state["state_dict"])


@pytest.mark.gpu
@needs_cuda
def test_fsdp_two_steps_with_activation_checkpointing_on_cuda(phrase_tokens: Path, tmp_path: Path) -> None:
    """FSDP on every GPU with checkpointed Blocks: trains, saves one full checkpoint with plain keys, resumes."""
    cfg = gpu_config(strategy="fsdp", activation_checkpointing=True, devices="auto", max_steps=4, val_every=2)
    stats = run_train(phrase_tokens, tmp_path / "run", cfg, limit=2)
    assert stats.extra["steps"] == 2
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    wrapper_names = ("_fsdp_wrapped_module", "_checkpoint_wrapped_module", "_flat_param")
    assert not any(w in k for k in state["state_dict"] for w in wrapper_names)
    assert state["optimizer_states"], "the full optimizer state is in the checkpoint (resumable)"
    model, _ = load_model(tmp_path / "run", device="cuda")
    assert model.get_num_params(non_embedding=False) == stats.extra["params"]
    assert run_train(phrase_tokens, tmp_path / "run", cfg).extra["steps"] == 4  # resumed from step 2


@pytest.mark.gpu
@needs_cuda
def test_activation_checkpointing_on_cuda_saves_memory_with_the_same_gradients() -> None:
    """bf16 autocast on CUDA (flash attention): same loss and gradients, and less peak memory in the backward."""
    # a small vocabulary: the logits, which no Block checkpoint shrinks, stay a small part of the peak
    config = GPTConfig(vocab_size=512, block_size=1024, n_layer=8, n_head=12, n_embd=768)
    torch.manual_seed(0)
    idx = torch.randint(0, 512, (8, 1024), device="cuda")
    results = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = GPT(config, activation_checkpointing=checkpointing).cuda().train()
        torch.cuda.reset_peak_memory_stats()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            _, loss = model(idx, idx)
        loss.backward()
        peak = torch.cuda.max_memory_allocated()
        results.append((loss.detach(), {n: p.grad.float() for n, p in model.named_parameters()}, peak))
        del model
    (loss, grads, peak), (ckpt_loss, ckpt_grads, ckpt_peak) = results
    torch.testing.assert_close(ckpt_loss, loss)
    for name, grad in grads.items():  # bf16 matmuls; flash attention's backward may sum in another order
        torch.testing.assert_close(ckpt_grads[name], grad, rtol=2e-2, atol=1e-4, msg=name)
    assert ckpt_peak < 0.7 * peak, (ckpt_peak, peak)  # ~0.4 expected: 8 blocks' activations, kept vs recomputed
