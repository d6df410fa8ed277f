"""Tests of the train stage on a throwaway corpus: a byte-level BPE and llm.c shards built in-process.

pytest tests/pipelines/test_train.py
"""

from __future__ import annotations

import csv
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.config import TokenizeConfig, TrainConfig
from pipelines.tokenizer import TokenShardError, train_tokenizer, write_token_bin
from pipelines.train import TrainingFailedError, generate_text, run_train
from pipelines.train.data import TokenDataModule, TokenWindowDataset
from pipelines.train.model import GPT, PRESETS, GPTConfig
from pipelines.train.module import lr_multiplier

EOT = "<|endoftext|>"

SUBJECTS = [
    "the farmer",
    "a young girl",
    "the old teacher",
    "my neighbour",
    "the small dog",
    "a tired doctor",
    "the baker",
    "our captain",
    "the quiet student",
    "a friendly cat",
]
VERBS = ["walked to", "looked at", "painted", "cleaned", "found", "visited", "carried", "opened", "closed", "watched"]
OBJECTS = [
    "the red house",
    "a wooden box",
    "the green garden",
    "the long river",
    "a broken chair",
    "the big market",
    "the white boat",
    "a heavy door",
    "the busy station",
    "an empty room",
]
TIMES = ["in the morning", "after lunch", "before the rain", "on sunday", "at night", "every day"]


def make_documents(n_docs: int, seed: int) -> list[str]:
    """English-ish documents of templated sentences (a learnable structure well below unigram entropy)."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        sentences = []
        for _ in range(rng.randint(3, 7)):
            s = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(TIMES)}."
            sentences.append(s[0].upper() + s[1:])
        docs.append(" ".join(sentences))
    return docs


@pytest.fixture(scope="module")
def tokens_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tokenizer.json (the tokenize stage's byte-level BPE, vocab 500, EOT id 0) + train_00000/1.bin + val_00000.bin."""
    out = tmp_path_factory.mktemp("tokens")
    train_docs, val_docs = make_documents(400, seed=1), make_documents(40, seed=2)
    tokenizer = train_tokenizer(iter(train_docs), TokenizeConfig(vocab_size=500))
    tokenizer.save(str(out / "tokenizer.json"))
    eot = tokenizer.token_to_id(EOT)
    assert eot == 0

    def stream(docs: list[str]) -> list[int]:
        ids: list[int] = []
        for enc in tokenizer.encode_batch(docs):
            ids += [eot] + enc.ids
        return ids

    train = stream(train_docs)
    half = len(train) // 2
    write_token_bin(out / "train_00000.bin", np.array(train[:half]), vocab_size=500)
    write_token_bin(out / "train_00001.bin", np.array(train[half:]), vocab_size=70_000)  # the uint32 variant
    write_token_bin(out / "val_00000.bin", np.array(stream(val_docs)), vocab_size=500)
    return out


def small_config(**overrides: object) -> TrainConfig:
    base = dict(
        preset="tiny", block_size=64, batch_size=8, max_steps=100, warmup_steps=10, learning_rate=3e-3,
        val_every=25, val_batches=4, seed=7, sample_prompt="The farmer", sample_tokens=20,
    )  # fmt: skip
    return TrainConfig(**{**base, **overrides})


def metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


# --- model -------------------------------------------------------------------------------------------------------


def test_model_forward_shapes_and_tied_weights() -> None:
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=500, block_size=32, n_layer=2, n_head=2, n_embd=32)
    model = GPT(config)
    assert config.padded_vocab_size == 512
    assert model.transformer.wte.weight is model.lm_head.weight
    idx = torch.randint(0, 500, (3, 32))
    logits, loss = model(idx, idx)
    assert logits.shape == (3, 32, 512)
    assert loss is not None and abs(loss.item() - np.log(512)) < 0.5  # ~uniform at init
    logits, loss = model(idx)
    assert logits.shape == (3, 1, 512) and loss is None
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 33, dtype=torch.long))
    # 6N + 12·L·H·Q·T with N the non-position-embedding parameters
    n = sum(p.numel() for p in model.parameters()) - 32 * 32
    assert model.estimate_flops_per_token() == 6 * n + 12 * 2 * 2 * 16 * 32
    out = model.generate(torch.zeros(2, 1, dtype=torch.long), 40, temperature=1.0, top_k=5)
    assert out.shape == (2, 41)
    assert int(out.max()) < 500  # padded vocabulary rows are never sampled


def test_presets() -> None:
    assert PRESETS["tiny"] == {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 128}
    gpt2 = GPTConfig(vocab_size=50257, **PRESETS["gpt2-124m"])
    with torch.device("meta"):
        n = GPT(gpt2).get_num_params(non_embedding=False)
    assert 123e6 < n < 126e6  # GPT-2 small (padded vocab 50304, no biases)


def test_lr_schedule() -> None:
    kw = dict(warmup_steps=10, max_steps=100, min_lr_ratio=0.1)
    assert lr_multiplier(0, **kw) == pytest.approx(1 / 11)
    assert lr_multiplier(9, **kw) == pytest.approx(10 / 11)
    assert lr_multiplier(10, **kw) == pytest.approx(1.0)
    assert lr_multiplier(55, **kw) == pytest.approx(0.55)
    assert lr_multiplier(100, **kw) == pytest.approx(0.1)
    assert lr_multiplier(500, **kw) == pytest.approx(0.1)


# --- data --------------------------------------------------------------------------------------------------------


def test_data_module_rejects_bad_shards(tokens_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "train_00000.bin").write_bytes((tokens_dir / "train_00000.bin").read_bytes())
    (tmp_path / "val_00000.bin").write_bytes(b"not a shard")
    with pytest.raises(TokenShardError, match="val_00000.bin"):
        TokenDataModule(tmp_path, block_size=16, batch_size=2, vocab_size=500)
    write_token_bin(tmp_path / "val_00000.bin", np.array([1, 2, 600]), vocab_size=700)
    dm = TokenDataModule(tmp_path, block_size=16, batch_size=2, vocab_size=500)
    with pytest.raises(TokenShardError, match="val_00000.bin: token id 600"):
        dm.setup("fit")
    (tmp_path / "val_00000.bin").unlink()
    with pytest.raises(TokenShardError, match="no val_"):
        TokenDataModule(tmp_path, block_size=16, batch_size=2, vocab_size=500)


def test_window_dataset_train_is_seeded_resumable_and_rank_disjoint(tmp_path: Path) -> None:
    write_token_bin(tmp_path / "train_00000.bin", np.arange(1000), vocab_size=2000)
    write_token_bin(tmp_path / "train_00001.bin", np.arange(1000, 1500), vocab_size=2000)
    shards = sorted(tmp_path.glob("train_*.bin"))
    ds = TokenWindowDataset(shards, block_size=16, batch_size=4, train=True, seed=3)
    it = iter(ds)
    batches = [next(it) for _ in range(6)]
    for x, y in batches:
        assert x.shape == y.shape == (4, 16) and x.dtype == torch.long
        assert torch.equal(x[:, 1:], y[:, :-1])
        assert torch.all(y[:, -1] - x[:, -1] == 1)  # consecutive tokens of one shard (values are positions)
    again = TokenWindowDataset(shards, 16, 4, train=True, seed=3, start_batch=4)
    x4, _ = next(iter(again))
    assert torch.equal(x4, batches[4][0])  # resuming at batch 4 replays nothing and skips nothing
    other_seed = next(iter(TokenWindowDataset(shards, 16, 4, train=True, seed=4)))[0]
    assert not torch.equal(other_seed, batches[0][0])
    # windows come from both shards
    starts = torch.cat([x[:, 0] for x, _ in batches])
    assert (starts < 1000).any() and (starts >= 1000).any()


def test_window_dataset_val_is_sequential_and_split_over_ranks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_token_bin(tmp_path / "val_00000.bin", np.arange(100), vocab_size=2000)
    ds = TokenWindowDataset([tmp_path / "val_00000.bin"], block_size=10, batch_size=4, train=False)
    assert ds.num_windows == 9
    xs = torch.cat([x for x, _ in ds])
    assert xs[:, 0].tolist() == [0, 10, 20, 30, 40, 50, 60, 70, 80]
    seen = []
    for rank in (0, 1):
        monkeypatch.setattr("pipelines.train.data._rank_and_world", lambda r=rank: (r, 2))
        seen.append(torch.cat([x for x, _ in ds])[:, 0].tolist())
    assert seen == [[0, 20, 40, 60], [10, 30, 50, 70]]
    with pytest.raises(TokenShardError, match="block_size"):
        TokenWindowDataset([tmp_path / "val_00000.bin"], block_size=100, batch_size=1, train=False)


# --- training (subprocess) ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_run_train_beats_unigram_baseline(tokens_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    stats = run_train(tokens_dir, run_dir, small_config(max_steps=60, val_every=20))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 60
    assert summary["final_val_loss"] < summary["unigram_entropy"] - 0.5, summary
    assert summary["final_train_loss"] < summary["unigram_entropy"]
    assert summary["tokens_per_sec"] > 0 and 0 < summary["mfu"] < 1
    assert summary["sample"].startswith("The farmer") and len(summary["sample"]) > len("The farmer")
    assert stats.stage == "train" and stats.tokens == 60 * 8 * 64
    assert stats.extra["final_val_loss"] == summary["final_val_loss"]

    rows = metrics_rows(run_dir)
    assert {"step", "train_loss", "val_loss", "lr", "tokens_per_sec", "mfu"} <= set(rows[0])
    val = [(int(r["step"]), float(r["val_loss"])) for r in rows if r["val_loss"]]
    assert [s for s, _ in val] == [20, 40, 60]
    assert val[-1][1] == pytest.approx(summary["final_val_loss"])
    assert val[-1][1] < val[0][1]
    for name in ("loss_curve.png", "model_config.json", "tokenizer.json", "checkpoints/last.ckpt"):
        assert (run_dir / name).is_file(), name

    text = generate_text(run_dir, "The baker", max_new_tokens=30, seed=1)
    assert text.startswith("The baker") and len(text) > len("The baker")
    assert text == generate_text(run_dir, "The baker", max_new_tokens=30, seed=1)  # seeded


@pytest.mark.slow
def test_resume_continues_from_last_checkpoint(tokens_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cfg = small_config(max_steps=30, val_every=10, warmup_steps=5)
    run_train(tokens_dir, run_dir, cfg)
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 30
    run_train(tokens_dir, run_dir, cfg.model_copy(update={"max_steps": 50}))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 50
    steps = [int(r["step"]) for r in metrics_rows(run_dir)]
    assert steps == sorted(set(steps))  # one row per step, the first run's rows kept
    assert min(steps) <= 10 and max(steps) == 50 and any(30 < s < 50 for s in steps)
    assert (run_dir / "logs" / "version_1").is_dir()  # the second run was a new process that resumed

    rows = metrics_rows(run_dir)
    again = run_train(tokens_dir, run_dir, cfg.model_copy(update={"max_steps": 50}))  # nothing left to train
    assert again.extra["steps"] == 50 and again.extra["final_val_loss"] == summary["final_val_loss"]
    assert again.extra["tokens_per_sec"] == summary["tokens_per_sec"]
    assert metrics_rows(run_dir) == rows


@pytest.mark.slow
def test_changed_token_shards_start_a_fresh_run(tokens_dir: Path, tmp_path: Path) -> None:
    """A finished run on other data is not resumed (that would skip training on the new shards)."""
    data = tmp_path / "tokens"
    shutil.copytree(tokens_dir, data)
    run_dir = tmp_path / "run"
    cfg = small_config(max_steps=10, val_every=5, warmup_steps=2)
    first = run_train(data, run_dir, cfg)
    assert first.extra["steps"] == 10

    # Same data, one more step: resumes (the identity ignores max_steps).
    run_train(data, run_dir, cfg.model_copy(update={"max_steps": 12}))
    assert not (run_dir / "logs" / "version_2").exists() and (run_dir / "logs" / "version_1").is_dir()

    # New token shards: the old trajectory is cleared and training runs from step 0 on them.
    tokens = np.fromfile(data / "train_00001.bin", dtype=np.uint8)
    (data / "train_00001.bin").unlink()
    (data / "train_00000.bin").write_bytes(tokens.tobytes())
    again = run_train(data, run_dir, cfg)
    steps = [int(r["step"]) for r in metrics_rows(run_dir)]
    assert again.extra["steps"] == 10 and steps == [5, 10]  # the 12-step run's rows are gone
    assert [p.name for p in (run_dir / "logs").iterdir()] == ["version_0"]
    assert again.extra["final_val_loss"] != first.extra["final_val_loss"]


@pytest.mark.slow
def test_stopped_and_resumed_run_equals_straight_run(tokens_dir: Path, tmp_path: Path) -> None:
    cfg = small_config(max_steps=20, val_every=10, warmup_steps=5)
    straight = run_train(tokens_dir, tmp_path / "straight", cfg)
    run_train(tokens_dir, tmp_path / "resumed", cfg, limit=10)
    assert json.loads((tmp_path / "resumed" / "summary.json").read_text())["steps"] == 10
    resumed = run_train(tokens_dir, tmp_path / "resumed", cfg)
    assert resumed.extra["steps"] == 20
    assert resumed.extra["final_val_loss"] == pytest.approx(straight.extra["final_val_loss"], abs=1e-5)
    assert resumed.extra["final_train_loss"] == pytest.approx(straight.extra["final_train_loss"], abs=1e-5)


def test_run_train_failure_names_the_file(tokens_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "tokens"
    data.mkdir()
    (data / "tokenizer.json").write_bytes((tokens_dir / "tokenizer.json").read_bytes())
    (data / "train_00000.bin").write_bytes(b"not a shard")
    (data / "val_00000.bin").write_bytes(b"not a shard")
    with pytest.raises(TrainingFailedError) as err:
        run_train(data, tmp_path / "run", small_config(max_steps=2))
    assert err.value.returncode != 0
    assert isinstance(err.value, TokenShardError)  # a deterministic input fault: not retried, one line in the CLI
    assert str(err.value).startswith(str(data / "train_00000.bin")) and "\n" not in str(err.value)
    assert any("train_00000.bin" in line for line in err.value.last_lines)
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        run_train(tmp_path / "missing", tmp_path / "run", small_config())


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(tokens_dir: Path, tmp_path: Path) -> None:
    """Lightning's DDP re-launches ``python -m pipelines.train.run`` for rank 1; both ranks train, rank 0 reports."""
    cfg = small_config(max_steps=10, val_every=5, strategy="ddp", devices=2)
    stats = run_train(tokens_dir, tmp_path / "run", cfg)
    assert stats.extra["steps"] == 10
    assert stats.tokens == 10 * 2 * 8 * 64  # two ranks' batches per step
    assert [int(r["step"]) for r in metrics_rows(tmp_path / "run") if r["val_loss"]] == [5, 10]
