"""LightningModule around the GPT: AdamW with weight-decay groups, warmup + cosine LR, loss / throughput / MFU logs.

Trained by ``python -m pipelines.train.run --data TOKENS_DIR --output RUN_DIR --config-json '{...}'``.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import asdict
from typing import Any

import lightning as L
import torch

from pipelines.config import TrainConfig
from pipelines.errors import NonFiniteLossError
from pipelines.train.model import GPT, Block, GPTConfig

logger = logging.getLogger(__name__)

# Name segments that wrappers (FSDP, activation checkpointing, torch.compile) insert into parameter names.
WRAPPER_SEGMENTS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")

# MFU denominators when TrainConfig.peak_flops is unset and neither table below nor Lightning's knows the device.
DEFAULT_CUDA_PEAK_FLOPS = 312e12  # A100 bf16 dense
DEFAULT_CPU_PEAK_FLOPS = 1e12

# Dense (no 2:4 sparsity) peak FLOP/s per device, from NVIDIA's data sheets, by a lower-case substring of
# torch.cuda.get_device_name(); the first match wins, so the more specific names come first. Looked up before
# Lightning's get_available_flops, which does not know a plain "NVIDIA H200" and lists the H200 at its sparse peak.
# Columns: bf16 (fp16 is the same on these chips), tf32 (fp32 matmuls under set_float32_matmul_precision("high")),
# fp32 (no tensor cores).
CUDA_PEAK_FLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("h200 nvl", {"bf16": 835.5e12, "tf32": 417.5e12, "fp32": 60e12}),
    ("h200", {"bf16": 989.4e12, "tf32": 494.7e12, "fp32": 66.9e12}),  # SXM: the H100 SXM's compute, more memory
    ("h100 pcie", {"bf16": 756e12, "tf32": 378e12, "fp32": 51.2e12}),
    ("h100 nvl", {"bf16": 835.5e12, "tf32": 417.5e12, "fp32": 60e12}),
    ("h100", {"bf16": 989.4e12, "tf32": 494.7e12, "fp32": 66.9e12}),  # SXM ("NVIDIA H100 80GB HBM3")
    ("a100", {"bf16": 312e12, "tf32": 156e12, "fp32": 19.5e12}),  # SXM and PCIe alike
)


def peak_flops_for(device_name: str, precision: str, tf32: bool = True) -> float | None:
    """Dense peak FLOP/s of the CUDA device named ``device_name`` at a Lightning ``precision`` ("bf16-mixed",
    "16-mixed", "32-true", ...), or None when CUDA_PEAK_FLOPS does not list it. 32-bit precision counts at the tf32
    peak when ``tf32`` (matmuls on tensor cores), else at the fp32 one; 64-bit is not listed."""
    if "64" in precision:
        return None
    column = "bf16" if "16" in precision else "tf32" if tf32 else "fp32"
    chip = device_name.lower()
    for key, peaks in CUDA_PEAK_FLOPS:
        if key in chip:
            return peaks.get(column)
    return None


def default_peak_flops(device: torch.device, precision: str) -> float:
    """Theoretical peak FLOP/s of one device: CUDA_PEAK_FLOPS, else Lightning's table, else a fixed default."""
    if device.type == "cuda":
        from lightning.fabric.utilities.throughput import get_available_flops

        tf32 = torch.get_float32_matmul_precision() != "highest"
        peak = peak_flops_for(torch.cuda.get_device_name(device), precision, tf32=tf32)
        if peak is not None:
            return peak
        dtype = torch.bfloat16 if "bf16" in precision else torch.float16 if "16" in precision else torch.float32
        return float(get_available_flops(device, dtype) or DEFAULT_CUDA_PEAK_FLOPS)
    return DEFAULT_CPU_PEAK_FLOPS


def training_strategy(cfg: TrainConfig) -> str | L.pytorch.strategies.Strategy:
    """The Trainer's strategy: "auto" and "ddp" by name; "fsdp" as Lightning's FSDPStrategy sharding every Block
    (parameters, gradients and optimizer state: FULL_SHARD), with the Blocks' activations recomputed in backward
    when cfg.activation_checkpointing. Checkpoints are gathered into one full state dict with the plain model's
    keys, so generation.load_model and a resume on any number of devices read them as any other run's."""
    if cfg.strategy != "fsdp":
        return cfg.strategy
    from lightning.pytorch.strategies import FSDPStrategy

    return FSDPStrategy(
        auto_wrap_policy={Block},
        activation_checkpointing_policy={Block} if cfg.activation_checkpointing else None,
        sharding_strategy="FULL_SHARD",
        state_dict_type="full",
    )


def enable_tf32() -> None:
    """fp32 matmuls and convolutions on tensor cores (TF32): what remains in fp32 under bf16-mixed (and all of a
    32-true run) runs at the tf32 peak rather than the far lower fp32 one, at a 10-bit mantissa."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def lr_multiplier(step: int, *, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """Fraction of the peak LR at optimizer step ``step``: linear warmup, then cosine down to min_lr_ratio."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if step >= max_steps:
        return min_lr_ratio
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_lr_ratio + 0.5 * (1.0 + math.cos(math.pi * progress)) * (1.0 - min_lr_ratio)


class GPTModule(L.LightningModule):
    """Trains ``GPT(gpt_config)`` with the optimizer and schedule of ``cfg``.

    Logged: train_loss and lr (per step), val_loss (per validation), tokens_per_sec and mfu (over the last
    ``throughput_window`` optimizer steps, all ranks together, validation time excluded). A NaN/inf loss, or
    non-finite weights about to be checkpointed, stop training with NonFiniteLossError (the last checkpoint stays).
    """

    def __init__(self, gpt_config: GPTConfig, cfg: TrainConfig, throughput_window: int = 10) -> None:
        super().__init__()
        # plain dicts only: the checkpoint stays loadable with torch.load(weights_only=True)
        self.save_hyperparameters({"model": asdict(gpt_config), "train": cfg.model_dump()})
        self.cfg = cfg
        # under FSDP the strategy checkpoints the Blocks (training_strategy); twice would recompute twice
        self.model = GPT(gpt_config, activation_checkpointing=cfg.activation_checkpointing and cfg.strategy != "fsdp")
        # decided here, on the unwrapped model: under FSDP configure_optimizers sees flattened 1-D shards
        self.no_decay = frozenset(name for name, p in self.model.named_parameters() if p.dim() < 2)
        self.flops_per_token = self.model.estimate_flops_per_token()
        self._window: deque[tuple[int, float]] = deque(maxlen=throughput_window)  # (tokens, seconds) per step
        self.train_tokens = 0  # tokens and seconds of this process's training, for the run summary
        self.train_seconds = 0.0
        self._step_tokens = 0
        self._t_last = 0.0
        self._seen_step = 0
        self._first_step = True
        self.peak_flops = cfg.peak_flops or DEFAULT_CPU_PEAK_FLOPS

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, Any]:
        return self.model(idx, targets)

    def configure_optimizers(self) -> dict[str, Any]:
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            for segment in WRAPPER_SEGMENTS:
                name = name.replace(segment, "")
            if p.requires_grad:
                # decay matmul weights and embeddings; not LayerNorm weights or biases
                (no_decay if name in self.no_decay else decay).append(p)
        groups = [
            {"params": decay, "weight_decay": self.cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW(
            groups, lr=self.cfg.learning_rate, betas=(0.9, 0.95), fused=self.device.type in ("cuda", "cpu")
        )
        cfg = self.cfg
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: lr_multiplier(
                step, warmup_steps=cfg.warmup_steps, max_steps=cfg.max_steps, min_lr_ratio=cfg.min_lr_ratio
            ),
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: Any = None,
    ) -> None:
        """Clip by the global gradient norm (Trainer's gradient_clip_val). Under FSDP every rank holds a shard of each
        gradient, so only the root FSDP module can compute the global norm (its clip_grad_norm_ all-reduces the
        shards' norms); Lightning's own norm clipping refuses FSDP for that reason and would stop the run."""
        from torch.distributed.fsdp import FullyShardedDataParallel

        if gradient_clip_val and isinstance(self.trainer.model, FullyShardedDataParallel):
            self.trainer.model.clip_grad_norm_(gradient_clip_val)
            return
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch  # (B, T), (B, T)
        _, loss = self.model(x, y)
        self.check_finite_loss(loss)
        self.log("train_loss", loss, on_step=True, on_epoch=False, batch_size=x.size(0))
        self.log("lr", self.lr_schedulers().get_last_lr()[0], on_step=True, on_epoch=False, batch_size=x.size(0))
        self._step_tokens += x.numel() * self.trainer.world_size
        return loss

    def check_finite_loss(self, loss: torch.Tensor) -> None:
        """Raise NonFiniteLossError when the loss of the step being trained is NaN or infinite on any rank.

        Lightning has no stop-on-NaN of its own: EarlyStopping(check_finite=True) looks at a monitored metric only at
        validation, after the optimizer already stepped on the bad loss (and ModelCheckpoint may have saved the
        result), and detect_anomaly is a debugging mode that slows every backward. Checked here, before backward,
        the weights are still those of the step before and nothing bad reaches the logs. Costs one host sync per
        micro-batch (plus, under DDP, a scalar all-reduce so every rank stops at the same step).
        """
        mean = self.trainer.strategy.reduce(loss.detach(), reduce_op="mean")  # nan/inf if it is on any rank
        if not torch.isfinite(mean):
            raise NonFiniteLossError(self.global_step + 1, "train_loss", float(mean))  # steps counted as metrics.csv

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse to write weights that are not finite (an inf gradient can make them NaN while the loss that
        produced it was finite): the previous checkpoint stays the run's last."""
        tensors = [t for t in checkpoint["state_dict"].values() if torch.is_tensor(t) and t.is_floating_point()]
        finite = all(bool(torch.isfinite(t).all()) for t in tensors)
        if not self.trainer.strategy.reduce_boolean_decision(finite, all=True):
            bad = next((t for t in tensors if not torch.isfinite(t).all()), None)
            value = float(bad[~torch.isfinite(bad)][0]) if bad is not None else math.nan  # nan/inf here or elsewhere
            raise NonFiniteLossError(self.global_step, "a weight", value)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        _, loss = self.model(x, y)
        self.log("val_loss", loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=x.size(0))
        return loss

    def on_train_start(self) -> None:
        if self.device.type == "cuda":
            enable_tf32()
        if self.cfg.peak_flops is None:
            self.peak_flops = default_peak_flops(self.device, str(self.trainer.precision))
        self._t_last = time.perf_counter()
        self._seen_step = self.global_step

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.global_step == self._seen_step:
            return  # mid-accumulation: the optimizer has not stepped yet
        self._seen_step = self.global_step
        now = time.perf_counter()
        seconds, tokens = now - self._t_last, self._step_tokens
        self._t_last, self._step_tokens = now, 0
        if self._first_step:  # includes one-off costs (allocation, compilation): keep it out of the averages
            self._first_step = False
            return
        self.train_tokens += tokens
        self.train_seconds += seconds
        self._window.append((tokens, seconds))
        tokens_per_sec = sum(t for t, _ in self._window) / sum(s for _, s in self._window)
        self.log_dict({"tokens_per_sec": tokens_per_sec, "mfu": self.mfu(tokens_per_sec)}, on_step=True, on_epoch=False)

    def on_validation_end(self) -> None:
        self._t_last = time.perf_counter()  # validation time is not training throughput

    def mfu(self, tokens_per_sec: float) -> float:
        """Model FLOPs utilisation: achieved training FLOP/s over the peak of all devices."""
        return self.flops_per_token * tokens_per_sec / (self.peak_flops * self.trainer.world_size)

    @property
    def mean_tokens_per_sec(self) -> float:
        return self.train_tokens / self.train_seconds if self.train_seconds else 0.0
