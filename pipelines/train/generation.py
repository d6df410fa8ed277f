"""Text generation from a trained run directory (last.ckpt + model_config.json + tokenizer.json).

Used by ``pipelines.train.generate_text(RUN_DIR, "The")`` and for the sample written at the end of
``python -m pipelines.train.run --data TOKENS_DIR --output RUN_DIR``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer

from pipelines.train.model import GPT, GPTConfig

EOT_TOKEN = "<|endoftext|>"


def load_model(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[GPT, Tokenizer]:
    """The GPT of RUN_DIR/checkpoints/last.ckpt (eval mode) and the run's tokenizer."""
    run_dir = Path(run_dir)
    for name in ("model_config.json", "tokenizer.json", "checkpoints/last.ckpt"):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{run_dir / name}: missing; is {run_dir} a training run directory?")
    model = GPT(GPTConfig(**json.loads((run_dir / "model_config.json").read_text())))
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location=device, weights_only=True, mmap=True)
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(state)
    return model.to(device).eval(), Tokenizer.from_file(str(run_dir / "tokenizer.json"))


def complete(
    model: GPT, tokenizer: Tokenizer, prompt: str, max_new_tokens: int, temperature: float, top_k: int | None, seed: int
) -> str:
    """The prompt followed by ``max_new_tokens`` sampled tokens; document boundaries are shown as blank lines.

    The prompt is conditioned on a preceding end-of-text token, i.e. it starts a document, as in training.
    Sampling uses its own seeded RNG, leaving torch's global RNG untouched. The sampling arguments have their
    defaults in one place, ``pipelines.train.generate_text``.
    """
    eot = tokenizer.token_to_id(EOT_TOKEN)
    prefix = [eot] if eot is not None else []
    ids = prefix + tokenizer.encode(prompt).ids
    if not ids:
        raise ValueError("empty prompt and the tokenizer has no end-of-text token to start from")
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        out = model.generate(torch.tensor([ids], device=device), max_new_tokens, temperature=temperature, top_k=top_k)
    tokens = out[0, len(prefix) :].tolist()
    docs, current = [], []
    for t in tokens:
        if t == eot:
            docs.append(current)
            current = []
        else:
            current.append(t)
    docs.append(current)
    return "\n\n".join(tokenizer.decode(d) for d in docs)
