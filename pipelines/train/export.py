"""Export a training run to a Hugging Face GPT-2 checkpoint (GPT2LMHeadModel + tokenizer) that ``transformers`` loads.

    lmpipe export --run RUN_DIR --to hf [--output DIR]          # default DIR: RUN_DIR/hf

then, anywhere with transformers installed (``pip install 'lmpipe[hf]'``)::

    model = transformers.AutoModelForCausalLM.from_pretrained(DIR)
    tokenizer = transformers.AutoTokenizer.from_pretrained(DIR)

The lmpipe GPT is GPT-2's architecture, so the mapping is one to one: GPT-2's Conv1D stores Linear weights
transposed, lmpipe's bias-free Linears and LayerNorms get zero biases, the exact (erf) GELU is
``activation_function="gelu"`` (GPT-2's default ``gelu_new`` is the tanh approximation), and the embedding rows that
lmpipe pads the vocabulary with (never a token) are dropped. After writing, the checkpoint is loaded back with
transformers and its logits compared with lmpipe's on a probe sequence.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from pipelines.errors import LmpipeError
from pipelines.train.generation import EOT_TOKEN, load_model
from pipelines.train.model import GPT

logger = logging.getLogger(__name__)

# Largest |logit difference| between lmpipe and the exported model accepted by the check after writing (float32).
LOGITS_TOLERANCE = 1e-4


class ExportMismatchError(LmpipeError, RuntimeError):
    """The exported checkpoint does not reproduce the run's logits."""


def _import_transformers() -> Any:
    try:
        import transformers
    except ImportError as e:
        raise ImportError("exporting to Hugging Face needs transformers: pip install 'lmpipe[hf]'") from e
    return transformers


def hf_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """lmpipe GPT parameters under GPT2LMHeadModel's names and layouts (vocabulary rows cropped to the tokenizer's)."""
    cfg = model.config
    sd = model.state_dict()
    out: dict[str, torch.Tensor] = {
        "transformer.wte.weight": sd["transformer.wte.weight"][: cfg.vocab_size],
        "transformer.wpe.weight": sd["transformer.wpe.weight"],
    }

    def layer_norm(src: str, dst: str) -> None:
        out[f"{dst}.weight"] = sd[f"{src}.weight"]
        out[f"{dst}.bias"] = sd.get(f"{src}.bias", torch.zeros_like(sd[f"{src}.weight"]))

    def linear(src: str, dst: str) -> None:
        weight = sd[f"{src}.weight"]  # nn.Linear: (out, in); GPT-2's Conv1D: (in, out)
        out[f"{dst}.weight"] = weight.t()
        out[f"{dst}.bias"] = sd.get(f"{src}.bias", weight.new_zeros(weight.size(0)))

    for i in range(cfg.n_layer):
        p = f"transformer.h.{i}"
        layer_norm(f"{p}.ln_1", f"{p}.ln_1")
        linear(f"{p}.attn.c_attn", f"{p}.attn.c_attn")
        linear(f"{p}.attn.c_proj", f"{p}.attn.c_proj")
        layer_norm(f"{p}.ln_2", f"{p}.ln_2")
        linear(f"{p}.mlp.c_fc", f"{p}.mlp.c_fc")
        linear(f"{p}.mlp.c_proj", f"{p}.mlp.c_proj")
    layer_norm("transformer.ln_f", "transformer.ln_f")
    return {k: v.detach().contiguous() for k, v in out.items()}


def hf_config(model: GPT, eot_id: int | None) -> Any:
    """The GPT2Config of the same architecture."""
    transformers = _import_transformers()
    cfg = model.config
    return transformers.GPT2Config(
        vocab_size=cfg.vocab_size,
        n_positions=cfg.block_size,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        activation_function="gelu",  # nn.GELU() is the exact erf form
        resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout,
        attn_pdrop=cfg.dropout,
        layer_norm_epsilon=model.transformer.ln_f.eps,
        tie_word_embeddings=True,
        bos_token_id=eot_id,
        eos_token_id=eot_id,
        architectures=["GPT2LMHeadModel"],
    )


@torch.no_grad()
def logits_difference(model: GPT, hf_model: Any, idx: torch.Tensor) -> float:
    """Largest |logit difference| between the lmpipe model and a GPT2LMHeadModel on token ids ``idx`` (B, T)."""
    ours, _ = model(idx, targets=idx)  # with targets the logits of every position come back: (B, T, padded V)
    theirs = hf_model(input_ids=idx).logits  # (B, T, V)
    return float((ours[..., : model.config.vocab_size] - theirs).abs().max())


def export_hf(run_dir: str | Path, output_dir: str | Path | None = None) -> dict[str, Any]:
    """Write RUN_DIR's last checkpoint as a GPT2LMHeadModel (model.safetensors, config.json) plus its tokenizer.

    Returns what was written and the logit difference measured by loading the export back; raises
    ExportMismatchError when that exceeds LOGITS_TOLERANCE.
    """
    transformers = _import_transformers()
    run_dir = Path(run_dir)
    out = Path(output_dir) if output_dir is not None else run_dir / "hf"
    model, tokenizer = load_model(run_dir, device="cpu")
    model = model.float()
    eot_id = tokenizer.token_to_id(EOT_TOKEN)

    hf_model = transformers.GPT2LMHeadModel(hf_config(model, eot_id))
    missing, unexpected = hf_model.load_state_dict(hf_state_dict(model), strict=False)
    # the tied lm_head and GPT-2's causal-mask buffers are the only names the state dict may leave out
    missing = [k for k in missing if k != "lm_head.weight" and not k.endswith(".attn.bias")]
    if missing or unexpected:
        raise ExportMismatchError(f"{run_dir}: weights do not map onto GPT2LMHeadModel: {missing=} {unexpected=}")
    hf_model.tie_weights()
    out.mkdir(parents=True, exist_ok=True)
    hf_model.save_pretrained(out)

    special = EOT_TOKEN if eot_id is not None else None
    hf_tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=special,
        eos_token=special,
        unk_token=special,
        model_max_length=model.config.block_size,
    )
    hf_tokenizer.save_pretrained(out)
    # transformers 5 names its fast-tokenizer class TokenizersBackend; the 4.x name loads in both major versions
    config_path = out / "tokenizer_config.json"
    tokenizer_config = json.loads(config_path.read_text())
    tokenizer_config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(tokenizer_config, indent=2))

    loaded = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
    probe_shape = (2, model.config.block_size)
    probe = torch.randint(0, model.config.vocab_size, probe_shape, generator=torch.Generator().manual_seed(0))
    diff = logits_difference(model, loaded, probe)
    if not diff <= LOGITS_TOLERANCE:
        raise ExportMismatchError(f"{out}: exported logits differ from the run's by {diff:.2e} (> {LOGITS_TOLERANCE})")
    logger.info("exported %s to %s (GPT2LMHeadModel; max |logit difference| %.1e)", run_dir, out, diff)
    return {
        "output": str(out),
        "files": sorted(p.name for p in out.iterdir()),
        "vocab_size": model.config.vocab_size,
        "params": loaded.num_parameters(),
        "max_logit_difference": diff,
    }
