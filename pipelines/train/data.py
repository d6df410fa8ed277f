"""Token shards (llm.c .bin layout) → batches of (x, y) windows for training, resumable to the exact batch.

Used by ``python -m pipelines.train.run --data TOKENS_DIR --output RUN_DIR``. The shards are written and read by
pipelines.tokenizer (``write_token_bin`` / ``read_token_bin``, which validates magic, version and size); documents
are separated by the end-of-text token, and windows may span document boundaries (as in nanoGPT).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from pipelines.tokenizer import TokenShardError, read_token_bin

logger = logging.getLogger(__name__)


def find_shards(data_dir: str | Path, split: str) -> list[Path]:
    """The ``split`` token shards of data_dir, in index order: those its meta.json lists (the tokenize stage's
    record: a leftover .bin of an earlier run is not trained on, a listed one that is missing is an error), else
    ``{split}_*.bin``; raises if there are none."""
    data_dir = Path(data_dir)
    meta_path = data_dir / "meta.json"
    if meta_path.is_file():
        try:
            listed = [e["file"] for e in json.loads(meta_path.read_text())["shards"] if e["split"] == split]
        except (ValueError, KeyError, TypeError) as e:
            raise TokenShardError(f"{meta_path}: not a tokenize meta.json ({e})") from e
        shards = [data_dir / name for name in listed]
        missing = [p.name for p in shards if not p.is_file()]
        if missing:
            raise TokenShardError(f"{meta_path}: lists {', '.join(missing)}, not in {data_dir}")
        unlisted = sorted({p.name for p in data_dir.glob(f"{split}_*.bin")} - set(listed))
        if unlisted:
            logger.warning("%s: %s not listed in meta.json: not trained on", data_dir, ", ".join(unlisted))
    else:
        shards = sorted(data_dir.glob(f"{split}_*.bin"))
    if not shards:
        raise TokenShardError(f"{data_dir}: no {split}_*.bin token shards")
    return shards


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class TokenWindowDataset(IterableDataset):
    """Yields batches ``(x, y)`` of shape (batch_size, block_size), y = x shifted by one token.

    train: an endless stream of uniformly random windows, numbered globally: global batch ``g`` is drawn from an RNG
    seeded with ``(seed, g)``, and rank ``r`` of ``world_size`` reads ``start_global + r``, then every
    ``world_size``-th batch. Ranks read distinct windows, and the stream restarts at any global batch without replay
    or gap whatever the new world size (a run stopped on 2 processes at global batch 20 resumes on 1 process at 20,
    and its accumulate_grad_batches=2 keeps the global batch).
    val: the non-overlapping windows in order, dealt round-robin to ranks (equal counts).
    Batches, not single windows, are yielded so collation costs nothing (use ``DataLoader(batch_size=None)``).
    """

    def __init__(
        self,
        shards: list[Path],
        block_size: int,
        batch_size: int,
        *,
        train: bool,
        seed: int = 0,
        start_global: int = 0,
    ) -> None:
        super().__init__()
        self.shards = [Path(s) for s in shards]
        self.block_size = block_size
        self.batch_size = batch_size
        self.train = train
        self.seed = seed
        self.start_global = start_global
        self._tokens = [read_token_bin(s) for s in self.shards]
        # a window needs block_size + 1 tokens; shards shorter than that contribute nothing
        if train:
            counts = [max(0, len(t) - block_size) for t in self._tokens]  # random start positions per shard
        else:
            counts = [max(0, (len(t) - 1) // block_size) for t in self._tokens]  # non-overlapping windows per shard
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        if self._offsets[-1] == 0:
            sizes = ", ".join(f"{s.name}={len(t)}" for s, t in zip(self.shards, self._tokens, strict=True))
            raise TokenShardError(
                f"{self.shards[0].parent}: no shard holds block_size + 1 = {block_size + 1} tokens ({sizes})"
            )

    @property
    def num_windows(self) -> int:
        """Random start positions (train) or non-overlapping windows (val) across all shards."""
        return int(self._offsets[-1])

    def _window(self, i: int) -> np.ndarray:
        shard = int(np.searchsorted(self._offsets, i, side="right")) - 1
        local = i - int(self._offsets[shard])
        start = local if self.train else local * self.block_size
        return self._tokens[shard][start : start + self.block_size + 1]

    def _batch(self, window_ids: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        buf = np.empty((len(window_ids), self.block_size + 1), dtype=np.int64)
        for row, i in enumerate(window_ids):
            buf[row] = self._window(int(i))
        batch = torch.from_numpy(buf)
        return batch[:, :-1].contiguous(), batch[:, 1:].contiguous()  # (B, T), (B, T)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rank, world = _rank_and_world()
        if self.train:
            g = self.start_global + rank
            while True:
                rng = np.random.default_rng((self.seed % 2**63, g))
                yield self._batch(rng.integers(0, self.num_windows, size=self.batch_size))
                g += world
        else:
            per_rank = self.num_windows // world
            if per_rank == 0:
                raise TokenShardError(
                    f"{self.shards[0].parent}: {self.num_windows} val windows cannot be split over {world} ranks"
                )
            ids = np.arange(rank, per_rank * world, world)
            for lo in range(0, len(ids), self.batch_size):
                yield self._batch(ids[lo : lo + self.batch_size])


def batch_digest(x: torch.Tensor) -> str:
    """A short sha256 of a batch's token ids: which data a rank read, comparable across processes and runs."""
    return hashlib.sha256(x.cpu().numpy().astype(np.int64).tobytes()).hexdigest()[:16]


def unigram_entropy(
    train_shards: list[Path], val_shards: list[Path], vocab_size: int, max_train_tokens: int = 200_000_000
) -> float:
    """Cross-entropy (nats/token) of the val tokens under the train unigram distribution with add-one smoothing.

    This is the loss of the best model that ignores context; a trained model must end below it. At most
    ``max_train_tokens`` train tokens (from the first shards) are counted, which is plenty for a unigram estimate.
    """
    chunk = 1 << 24
    train_counts = np.ones(vocab_size, dtype=np.float64)  # add-one smoothing
    budget = max_train_tokens
    for path in train_shards:
        tokens = read_token_bin(path)
        for lo in range(0, min(len(tokens), budget), chunk):
            train_counts += np.bincount(tokens[lo : min(lo + chunk, budget)], minlength=vocab_size)[:vocab_size]
        budget -= min(len(tokens), budget)
        if budget <= 0:
            break
    val_counts = np.zeros(vocab_size, dtype=np.float64)
    for path in val_shards:
        tokens = read_token_bin(path)
        for lo in range(0, len(tokens), chunk):
            val_counts += np.bincount(tokens[lo : lo + chunk], minlength=vocab_size)[:vocab_size]
    log_p = np.log(train_counts / train_counts.sum())
    return float(-(val_counts * log_p).sum() / val_counts.sum())


class TokenDataModule(L.LightningDataModule):
    """train_*.bin / val_*.bin of one tokenize output directory; its state (the global data position) is
    checkpointed, and with ``data_log_dir`` every rank writes the (global batch, sha256) of each train batch it
    consumes to ``DATA_LOG_DIR/from{start}-rank{rank}.tsv`` (see ``trajectory_batches``)."""

    def __init__(
        self,
        data_dir: str | Path,
        block_size: int,
        batch_size: int,
        vocab_size: int,
        seed: int = 0,
        data_log_dir: Path | None = None,
    ) -> None:
        super().__init__()
        self.data_dir = Path(data_dir)
        self.block_size = block_size
        self.batch_size = batch_size
        self.vocab_size = vocab_size
        self.seed = seed
        self.data_log_dir = data_log_dir
        self.train_shards = find_shards(self.data_dir, "train")
        self.val_shards = find_shards(self.data_dir, "val")
        for path in self.train_shards + self.val_shards:
            read_token_bin(path)  # fail now, naming the file, rather than in a dataloader mid-run
        self.train_batches_consumed = 0  # by this rank over the run's lineage (a count, not a position)
        self._restored: dict[str, Any] | None = None  # the checkpoint's data state, until the loader is built
        self.start_global = 0  # the global batch this process's training started at (same on every rank)
        self._consumed_here = 0  # micro-batches this process has trained on
        self._log: Any = None

    def setup(self, stage: str) -> None:
        # an id beyond the vocabulary would index the padded embedding rows silently; check a cheap sample of shards
        for path in self.train_shards[:1] + self.val_shards:
            tokens = read_token_bin(path)
            if len(tokens) and int(tokens.max()) >= self.vocab_size:
                raise TokenShardError(f"{path}: token id {int(tokens.max())} >= tokenizer vocab size {self.vocab_size}")

    def _loader(self, dataset: TokenWindowDataset) -> DataLoader:
        # num_workers=0: a batch is a few memmap slices, and the batch index → RNG mapping must stay in one process
        return DataLoader(dataset, batch_size=None, num_workers=0, pin_memory=torch.cuda.is_available())

    @property
    def _world(self) -> tuple[int, int]:
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else _rank_and_world()

    def train_dataloader(self) -> DataLoader:
        self.start_global = self._resume_position()
        self._consumed_here = 0
        dataset = TokenWindowDataset(
            self.train_shards, self.block_size, self.batch_size, train=True, seed=self.seed,
            start_global=self.start_global,
        )  # fmt: skip
        return self._loader(dataset)

    def _resume_position(self) -> int:
        """The global batch to go on from: the checkpoint's, or (a checkpoint from before global positions were
        recorded) its per-rank count times the world size it was saved with, taken to be today's."""
        state = self._restored
        if state is None:
            return 0
        if "global_batches_consumed" in state:
            return int(state["global_batches_consumed"])
        return int(state["train_batches_consumed"]) * int(state.get("world_size", self._world[1]))

    def val_dataloader(self) -> DataLoader:
        return self._loader(TokenWindowDataset(self.val_shards, self.block_size, self.batch_size, train=False))

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # called once per batch the training loop actually consumes (Lightning prefetches one batch ahead, so
        # counting in the dataset would be off by one at checkpoint time)
        if self.trainer is not None and self.trainer.training:
            rank, world = self._world
            g = self.start_global + self._consumed_here * world + rank
            digest = batch_digest(batch[0])
            if self._consumed_here == 0:  # every rank says where its data starts: distinct per rank, resumed exactly
                logger.info(
                    "rank %d/%d: train data from batch %d (seed %d), first batch sha256 %s",
                    rank, world, self.start_global, self.seed, digest,
                )  # fmt: skip
            self._write_log(g, digest, rank)
            self._consumed_here += 1
            self.train_batches_consumed += 1
        return batch

    def _write_log(self, g: int, digest: str, rank: int) -> None:
        if self.data_log_dir is None:
            return
        if self._log is None:
            self.data_log_dir.mkdir(parents=True, exist_ok=True)
            path = self.data_log_dir / f"from{self.start_global:010d}-rank{rank}.tsv"
            self._log = path.open("w", buffering=1)  # line-buffered: a killed run's lines are on disk
        self._log.write(f"{g}\t{digest}\n")

    @property
    def global_position(self) -> int:
        """Global batches the run's lineage has trained on so far: the next one to read."""
        return self.start_global + self._consumed_here * self._world[1]

    def state_dict(self) -> dict[str, Any]:
        return {
            "train_batches_consumed": self.train_batches_consumed,
            "global_batches_consumed": self.global_position,
            "world_size": self._world[1],
            "seed": self.seed,
            "batch_size": self.batch_size,
            "block_size": self.block_size,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = dict(state_dict)
        self.train_batches_consumed = int(state_dict["train_batches_consumed"])
        changed = {
            k: (state_dict.get(k), getattr(self, k))
            for k in ("seed", "batch_size", "block_size")
            if state_dict.get(k) != getattr(self, k)
        }
        if changed:
            logger.warning(
                "data settings changed since the checkpoint (old, new): %s; batches differ from here", changed
            )
        if state_dict.get("world_size", self._world[1]) != self._world[1]:
            logger.info(
                "resuming a %s-process run on %d processes at global batch %d",
                state_dict.get("world_size"), self._world[1], self._resume_position(),
            )  # fmt: skip


def trajectory_batches(data_log_dir: Path) -> dict[int, str]:
    """Global batch → sha256 of the batches a run's lineage trained on, from its ranks' data logs.

    A process that resumed at global batch G supersedes what earlier processes logged from G on (a run killed
    after its last checkpoint trained on batches that its resumption trains on again). Raises ValueError if one
    global batch appears twice within the kept lineage (a repeat: the data position went wrong).
    """
    segments: dict[int, list[Path]] = {}
    for path in data_log_dir.glob("from*-rank*.tsv"):
        segments.setdefault(int(path.name[4:14]), []).append(path)
    starts = sorted(segments)
    batches: dict[int, str] = {}
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else None
        batches = {g: d for g, d in batches.items() if g < start}
        for path in segments[start]:
            for line in path.read_text().splitlines():
                g_text, digest = line.split("\t")
                g = int(g_text)
                if end is not None and g >= end:
                    continue
                if g in batches:
                    raise ValueError(f"{path}: global batch {g} trained twice in one lineage")
                batches[g] = digest
    return batches
