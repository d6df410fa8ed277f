"""Tests of the train stage: the acceptance run on the sample corpus (`lmpipe task train --preset tiny`, generate,
export to Hugging Face), and resume / DDP / input checks on a throwaway corpus (a byte-level BPE and llm.c shards
built in-process).

pytest tests/pipelines/test_train.py
"""

from __future__ import annotations

import csv
import json
import logging
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from pipelines.config import ExtractConfig, SampleConfig, TokenizeConfig, TrainConfig
from pipelines.extract import run_extract
from pipelines.sample import generate_sample
from pipelines.tokenizer import TokenShardError, read_token_bin, run_tokenize, train_tokenizer, write_token_bin
from pipelines.train import TrainingFailedError, generate_text, run_train
from pipelines.train.data import TokenDataModule, TokenWindowDataset, batch_digest, find_shards
from pipelines.train.generation import EOT_TOKEN, load_model
from pipelines.train.model import GPT, PRESETS, GPTConfig
from pipelines.train.module import GPTModule, lr_multiplier

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


LMPIPE = [sys.executable, "-m", "flows.cli"]


def lmpipe(*args: str | int | Path, home: Path) -> subprocess.CompletedProcess[str]:
    """The ``lmpipe`` command line in a subprocess (the acceptance criteria are stated as commands)."""
    env = {**os.environ, "PREFECT_HOME": str(home), "COLUMNS": "200"}
    proc = subprocess.run([*LMPIPE, *map(str, args)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


DATA_START = re.compile(r"rank (\d+)/(\d+): train data from batch (\d+) \(seed (-?\d+)\), first batch sha256 (\w+)")


def data_starts(caplog: pytest.LogCaptureFixture) -> list[tuple[int, int, int, str]]:
    """(rank, world size, first batch index, digest) of every training process, from the streamed subprocess logs."""
    found = [DATA_START.search(r.getMessage()) for r in caplog.records]
    return [(int(m[1]), int(m[2]), int(m[3]), m[5]) for m in found if m]


def expected_digest(
    data_dir: Path, cfg: TrainConfig, rank: int, world: int, start_global: int, monkeypatch: pytest.MonkeyPatch
) -> str:
    """The digest of the first train batch rank ``rank`` of ``world`` must read when starting at ``start_global``."""
    shards = find_shards(data_dir, "train")
    ds = TokenWindowDataset(
        shards, cfg.block_size, cfg.batch_size, train=True, seed=cfg.seed, start_global=start_global
    )
    with monkeypatch.context() as m:
        m.setattr("pipelines.train.data._rank_and_world", lambda: (rank, world))
        x, _ = next(iter(ds))
    return batch_digest(x)


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


def test_weight_decay_groups() -> None:
    """AdamW decays matmul weights and the (tied) embeddings, not LayerNorm weights; groups are chosen by name."""
    gpt = GPTConfig(vocab_size=500, block_size=16, n_layer=2, n_head=2, n_embd=32, bias=True)
    module = GPTModule(gpt, small_config(weight_decay=0.1))
    optimizer = module.configure_optimizers()["optimizer"]
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    params = dict(module.model.named_parameters())
    assert {id(p) for p in decay["params"]} == {id(p) for p in params.values() if p.dim() == 2}
    assert {id(p) for p in no_decay["params"]} == {id(p) for p in params.values() if p.dim() == 1}
    assert any(p is module.model.lm_head.weight for p in decay["params"])  # tied to wte, listed once
    assert len(decay["params"]) + len(no_decay["params"]) == len(params)


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
    again = TokenWindowDataset(shards, 16, 4, train=True, seed=3, start_global=4)
    x4, _ = next(iter(again))
    assert torch.equal(x4, batches[4][0])  # resuming at batch 4 replays nothing and skips nothing
    other_seed = next(iter(TokenWindowDataset(shards, 16, 4, train=True, seed=4)))[0]
    assert not torch.equal(other_seed, batches[0][0])
    # windows come from both shards
    starts = torch.cat([x[:, 0] for x, _ in batches])
    assert (starts < 1000).any() and (starts >= 1000).any()


def test_checkpoints_are_written_beside_their_final_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """AtomicCheckpointIO: never the system tmp directory (another filesystem makes Lightning's final move a copy,
    which a kill can cut short), no tmp file left, the previous checkpoint whole until the new one replaces it."""
    import tempfile

    from pipelines.train.run import AtomicCheckpointIO

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-tmp"))  # any use of it would fail
    path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1, "w": torch.ones(3)}, path)
    io.save_checkpoint({"global_step": 2, "w": torch.zeros(3)}, path)
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]
    assert torch.load(path, weights_only=True)["global_step"] == 2

    def interrupted(obj: object, f: object) -> None:
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # a kill in the middle of torch.save

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"global_step": 3}, path)
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]
    assert torch.load(path, weights_only=True)["global_step"] == 2


def test_shards_are_those_meta_json_lists(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for name in ("train_00000.bin", "train_00001.bin", "val_00000.bin"):
        write_token_bin(tmp_path / name, np.arange(100), vocab_size=500)
    assert [p.name for p in find_shards(tmp_path, "train")] == ["train_00000.bin", "train_00001.bin"]  # no meta
    shards = [{"file": "train_00000.bin", "split": "train"}, {"file": "val_00000.bin", "split": "val"}]
    (tmp_path / "meta.json").write_text(json.dumps({"shards": shards}))
    with caplog.at_level(logging.WARNING, logger="pipelines.train"):
        assert find_shards(tmp_path, "train") == [tmp_path / "train_00000.bin"]  # a leftover is not trained on
    assert any("train_00001.bin not listed in meta.json" in r.getMessage() for r in caplog.records)
    (tmp_path / "train_00000.bin").unlink()
    with pytest.raises(TokenShardError, match=r"meta.json: lists train_00000.bin, not in"):
        find_shards(tmp_path, "train")


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


@pytest.fixture(scope="module")
def sample_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample corpus as the pipeline makes it: sample WARC (120 pages) → extract → tokenize (vocab 512)."""
    root = tmp_path_factory.mktemp("sample-corpus")
    warcs = generate_sample(root / "warc", SampleConfig(pages=120, files=1))
    run_extract([str(warcs[0])], str(root / "extract.parquet"), ExtractConfig())
    run_tokenize(
        [str(root / "extract.parquet")], str(root / "tokens"), TokenizeConfig(vocab_size=512, val_fraction=0.1)
    )
    return root


# the tiny preset as it comes (block 128, batch 16), a short schedule
SAMPLE_RUN = dict(max_steps=50, val_every=25, val_batches=4, warmup_steps=10)


@pytest.fixture(scope="module")
def sample_run(sample_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """`lmpipe task train --preset tiny` on the sample corpus's tokens: the run directory and the printed stats."""
    run_dir = tmp_path_factory.mktemp("sample-run") / "run"
    sets = [a for k, v in SAMPLE_RUN.items() if k != "max_steps" for a in ("--set", f"{k}={v}")]
    proc = lmpipe(
        "task", "train", "--data", sample_corpus / "tokens", "--output", run_dir, "--preset", "tiny",
        "--max-steps", SAMPLE_RUN["max_steps"], *sets, "--direct", home=run_dir.parent / "prefect",
    )  # fmt: skip
    stats = json.loads(proc.stdout[proc.stdout.rindex('{\n  "stage"') :])
    return run_dir, stats


@pytest.mark.slow
def test_task_train_on_sample_corpus_beats_unigram_baseline(
    sample_run: tuple[Path, dict], sample_corpus: Path, tmp_path: Path
) -> None:
    run_dir, stats = sample_run
    summary = json.loads((run_dir / "summary.json").read_text())
    steps, batch, block = SAMPLE_RUN["max_steps"], TrainConfig().batch_size, PRESETS["tiny"]["block_size"]
    assert summary["steps"] == stats["extra"]["steps"] == steps
    assert stats["stage"] == "train" and stats["tokens"] == summary["tokens"] == steps * batch * block
    assert json.loads((run_dir / "train_config.json").read_text())["preset"] == "tiny"
    # the baseline: cross-entropy of the val tokens under the train tokens' unigram distribution (add-one smoothed)
    tokens = sample_corpus / "tokens"
    train = np.concatenate([read_token_bin(p) for p in find_shards(tokens, "train")]).astype(np.int64)
    val = np.concatenate([read_token_bin(p) for p in find_shards(tokens, "val")]).astype(np.int64)
    vocab = json.loads((run_dir / "model_config.json").read_text())["vocab_size"]  # the tokenizer's
    counts = np.bincount(train, minlength=vocab) + 1.0
    assert summary["unigram_entropy"] == pytest.approx(-np.log(counts / counts.sum())[val].mean(), rel=1e-9)
    assert summary["final_val_loss"] < summary["unigram_entropy"] - 0.3, summary
    assert summary["final_train_loss"] < summary["unigram_entropy"]
    assert summary["tokens_per_sec"] > 0 and 0 < summary["mfu"] < 1

    # metrics.csv: one row per logged step, val_loss at every validation, falling
    rows = metrics_rows(run_dir)
    assert {"step", "train_loss", "val_loss", "lr", "tokens_per_sec", "mfu"} <= set(rows[0])
    val = [(int(r["step"]), float(r["val_loss"])) for r in rows if r["val_loss"]]
    assert [s for s, _ in val] == [25, 50]
    assert val[-1][1] == pytest.approx(summary["final_val_loss"]) and val[-1][1] < val[0][1]
    assert all(float(r["tokens_per_sec"]) > 0 for r in rows if r["tokens_per_sec"])

    # TensorBoard: the same scalars
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (tb_dir,) = (run_dir / "tensorboard").iterdir()
    events = EventAccumulator(str(tb_dir))
    events.Reload()
    assert {"train_loss", "val_loss", "lr", "tokens_per_sec", "mfu"} <= set(events.Tags()["scalars"])
    assert [e.value for e in events.Scalars("val_loss")] == pytest.approx([v for _, v in val])

    assert (run_dir / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("model_config.json", "tokenizer.json", "checkpoints/last.ckpt"):
        assert (run_dir / name).is_file(), name

    # generation: `lmpipe generate` prints the prompt and a sampled continuation, reproducible by its seed
    args = dict(max_new_tokens=30, temperature=0.8, top_k=20, seed=1)
    proc = lmpipe("generate", "--run", run_dir, "--prompt", "The garden", "--max-new-tokens", 30,
                  "--temperature", 0.8, "--top-k", 20, "--seed", 1, home=tmp_path)  # fmt: skip
    text = proc.stdout.rstrip("\n")
    assert text.startswith("The garden") and len(text.split()) > 5
    assert text == generate_text(run_dir, "The garden", **args)
    assert summary["sample"].startswith("The") and len(summary["sample"]) > len("The")


@pytest.mark.slow
def test_export_to_hf_matches_lmpipe_logits(sample_run: tuple[Path, dict], sample_corpus: Path, tmp_path: Path) -> None:
    """`lmpipe export --to hf`: transformers loads model and tokenizer; logits equal lmpipe's on real text (1e-4)."""
    import transformers  # the dev extra installs it (lmpipe[hf])

    run_dir, _ = sample_run
    out = tmp_path / "hf"
    proc = lmpipe("export", "--run", run_dir, "--to", "hf", "--output", out, home=tmp_path)
    result = json.loads(proc.stdout)
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(result["files"])

    hf_model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    assert type(hf_model).__name__ == "GPT2LMHeadModel"
    model, tokenizer = load_model(run_dir)
    assert hf_model.num_parameters() == result["params"]
    # the tokenizer's vocabulary: rows lmpipe pads the embedding with are dropped
    assert hf_model.get_input_embeddings().weight.shape == (model.config.vocab_size, model.config.n_embd)

    # real text: a document of the sample corpus, tokenized the same way by both tokenizers
    text = pq.read_table(sample_corpus / "extract.parquet", columns=["text"]).column("text")[5].as_py()
    ids = tokenizer.encode(text).ids
    assert hf_tokenizer(text)["input_ids"] == ids and hf_tokenizer.decode(ids) == tokenizer.decode(ids)
    eot = tokenizer.token_to_id(EOT_TOKEN)
    assert hf_tokenizer.eos_token_id == eot
    idx = torch.tensor([[eot, *ids][: model.config.block_size]])  # (1, T)
    with torch.no_grad():
        ours, _ = model(idx, targets=idx)  # (1, T, padded vocab)
        theirs = hf_model(input_ids=idx).logits  # (1, T, vocab)
    assert theirs.shape == (1, idx.size(1), model.config.vocab_size)
    assert (ours[..., : model.config.vocab_size] - theirs).abs().max().item() < 1e-4

    # greedy continuations agree token for token
    prompt = idx[:, :16]
    ours_greedy = model.generate(prompt, 20, temperature=0)
    theirs_greedy = hf_model.generate(prompt, max_new_tokens=20, do_sample=False, pad_token_id=eot)
    assert torch.equal(ours_greedy, theirs_greedy)


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


def forget_validation(run_dir: Path, step: int) -> None:
    """Remove the val_loss of ``step`` from metrics.csv and the CSV logs (where Lightning logs step k as k - 1)."""
    for path, logged in [(run_dir / "metrics.csv", step), *((p, step - 1) for p in run_dir.glob("logs/*/metrics.csv"))]:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            fields, rows = reader.fieldnames, list(reader)
        for row in rows:
            if row.get("step") in (str(logged), f"{logged}.0"):
                row["val_loss"] = ""
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)


@pytest.mark.slow
def test_stopped_and_resumed_run_equals_straight_run(
    tokens_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20 steps straight == 10 steps, stop, resume for 10: same losses at step 20 (1e-5), data position included."""
    caplog.set_level(logging.INFO, logger="pipelines.train")
    # two micro-batches per step: the data position counts micro-batches, not optimizer steps
    cfg = small_config(max_steps=20, val_every=10, warmup_steps=5, batch_size=4, accumulate_grad_batches=2)
    straight = run_train(tokens_dir, tmp_path / "straight", cfg)
    run_train(tokens_dir, tmp_path / "resumed", cfg, limit=10)
    stopped = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)
    assert stopped["global_step"] == 10 and stopped["TokenDataModule"]["train_batches_consumed"] == 20
    assert json.loads((tmp_path / "resumed" / "summary.json").read_text())["steps"] == 10
    # as if killed between step 10's checkpoint (saved first) and its validation: no log holds that val_loss
    forget_validation(tmp_path / "resumed", step=10)

    caplog.clear()
    resumed = run_train(tokens_dir, tmp_path / "resumed", cfg)
    assert any("step 10: its validation did not run" in r.getMessage() for r in caplog.records)
    # the resumed process read on from micro-batch 20: exactly the batch the straight run trained on next
    assert data_starts(caplog) == [(0, 1, 20, expected_digest(tokens_dir, cfg, 0, 1, 20, monkeypatch))]
    assert resumed.extra["steps"] == 20
    assert resumed.extra["final_val_loss"] == pytest.approx(straight.extra["final_val_loss"], abs=1e-5)
    assert resumed.extra["final_train_loss"] == pytest.approx(straight.extra["final_train_loss"], abs=1e-5)
    for a, b in zip(metrics_rows(tmp_path / "straight"), metrics_rows(tmp_path / "resumed"), strict=True):
        assert a["step"] == b["step"]
        for key in ("train_loss", "val_loss", "lr"):
            assert (a[key] == b[key] == "") or float(a[key]) == pytest.approx(float(b[key]), abs=1e-5), (key, a, b)
    final = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["TokenDataModule"]["train_batches_consumed"] == 40


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
