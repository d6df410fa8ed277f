"""LSH banding on disk: band hashes partitioned by band, candidate pairs per band, connected components, index.

    parts = BandPartitions(tmp_dir, num_bands=14, reset=True)
    parts.append(band_hashes(signatures, 14, 8))         # batch by batch; nothing else is kept in RAM
    labels = cluster_partitions(parts, workers=2)          # one component label per document

Each band is one file of uint64 values (row i = document i), so the grouping step reads one band at a time: sort
the band's hashes (numpy), link every document to the first one of its run of equal values, and write those edges
next to the band. Bands are independent, so a process pool works through them on all cores; scipy's
connected_components joins the edges of all bands. Memory is O(documents) for one band plus the edges, never the
(documents x permutations) signature matrix.

``BandIndex`` keeps the sorted, unique band hashes of whole crawls under one directory (``index.json`` lists the
crawls in the order they were added), for dedup against earlier crawls (DedupConfig.scope = global).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from filelock import FileLock
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from pipelines.errors import ConfigError
from pipelines.shards import atomic_write_bytes

log = logging.getLogger(__name__)

# Below this many documents a process pool costs more (start-up, imports) than the bands take to group.
PARALLEL_MIN_DOCS = 200_000


def band_hashes(signatures: np.ndarray, num_bands: int, rows_per_band: int) -> np.ndarray:
    """(N, num_bands) uint64: each band's rows folded into one 64-bit value (FNV-1a over the row values)."""
    n = signatures.shape[0]
    sig = signatures.reshape(n, num_bands, rows_per_band)
    h = np.full((n, num_bands), np.uint64(0xCBF29CE484222325), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for r in range(rows_per_band):
            h = (h ^ sig[:, :, r]) * np.uint64(0x100000001B3)
    return h


class BandPartitions:
    """``band_XX.u64`` files in ``directory``: one uint64 band hash per document, appended batch by batch."""

    def __init__(self, directory: str | Path, num_bands: int, *, reset: bool = False):
        self.dir = Path(directory)
        self.num_bands = num_bands
        if reset and self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, band: int) -> Path:
        return self.dir / f"band_{band:02d}.u64"

    def append(self, bands: np.ndarray) -> None:
        """Append (n, num_bands) band hashes of the next n documents."""
        assert bands.ndim == 2 and bands.shape[1] == self.num_bands
        for b in range(self.num_bands):
            with open(self.path(b), "ab") as f:
                np.ascontiguousarray(bands[:, b], dtype=np.uint64).tofile(f)

    def band(self, band: int) -> np.ndarray:
        """One band's hashes (memory-mapped), row i = document i."""
        p = self.path(band)
        if not p.exists() or p.stat().st_size == 0:
            return np.empty(0, dtype=np.uint64)
        return np.memmap(p, dtype=np.uint64, mode="r")

    @property
    def count(self) -> int:
        p = self.path(0)
        return p.stat().st_size // 8 if p.exists() else 0


def equal_runs(values: np.ndarray) -> np.ndarray:
    """(E, 2) int64 edges (first document of a run of equal values, another document of the run)."""
    order = np.argsort(values, kind="stable")
    ranked = values[order]
    starts = np.r_[True, ranked[1:] != ranked[:-1]] if len(ranked) else np.empty(0, dtype=bool)
    first = order[np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0))]
    member = ~starts
    return np.stack([first[member], order[member]], axis=1).astype(np.int64)


def _group_band(path: str, out: str) -> int:
    """Worker: edges of one band file, saved as .npy; returns the number of edges."""
    values = np.fromfile(path, dtype=np.uint64)
    edges = equal_runs(values)
    np.save(out, edges)
    return len(edges)


def candidate_pairs(parts: BandPartitions, workers: int = 0) -> np.ndarray:
    """(E, 2) unique document pairs (i < j not guaranteed) that share the hash of at least one band."""
    if parts.count == 0:
        return np.empty((0, 2), dtype=np.int64)
    jobs = [(str(parts.path(b)), str(parts.dir / f"edges_{b:02d}.npy")) for b in range(parts.num_bands)]
    workers = workers or os.cpu_count() or 1
    if workers > 1 and parts.count >= PARALLEL_MIN_DOCS:
        # spawn, not fork: the caller may be a threaded Prefect worker.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=ctx) as pool:
            list(pool.map(_group_band, *zip(*jobs, strict=True)))
    else:
        for src, out in jobs:
            _group_band(src, out)
    edges = [np.load(out) for _, out in jobs]
    for _, out in jobs:
        os.unlink(out)
    return union_edges(edges, parts.count)


def union_edges(edges: list[np.ndarray], n: int) -> np.ndarray:
    """(E, 2) the unique pairs of several bands' edge lists over ``n`` documents, in ascending (first, second)."""
    edges = [e for e in edges if len(e)]
    if not edges:
        return np.empty((0, 2), dtype=np.int64)
    # One int64 key per pair (n**2 < 2**63 up to 3e9 documents) sorts much faster than unique rows.
    m = np.int64(max(n, 1))
    keys = np.unique(np.concatenate([e[:, 0] * m + e[:, 1] for e in edges]))
    return np.stack([keys // m, keys % m], axis=1)


def components(n: int, edges: np.ndarray) -> np.ndarray:
    """Connected components over the edges: an int64 label per document (a document alone is its own label)."""
    if n == 0:
        return np.empty(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64)


class IndexMismatchError(ConfigError):
    """The index was built with other MinHash/LSH parameters than the run that reads it."""


class BandIndex:
    """Sorted unique band hashes of earlier crawls: ``{dir}/index.json`` + ``{dir}/{crawl}/band_XX.npy``."""

    def __init__(self, directory: str | Path, params: dict[str, int]):
        self.dir = Path(directory)
        self.params = params
        self.num_bands = params["num_bands"]

    def _meta(self) -> dict:
        p = self.dir / "index.json"
        if not p.exists():
            return {"params": self.params, "crawls": []}
        meta = json.loads(p.read_text())
        if meta["params"] != self.params:
            raise IndexMismatchError(f"{p}: built with {meta['params']}, this run uses {self.params}")
        return meta

    def crawls(self) -> list[str]:
        """Crawls in the order they were added."""
        return list(self._meta()["crawls"])

    def earlier(self, crawl: str) -> list[str]:
        """The crawls a run of ``crawl`` is compared with: those added before it (all of them for a new crawl)."""
        crawls = self.crawls()
        return crawls[: crawls.index(crawl)] if crawl in crawls else crawls

    def add(self, crawl: str, parts: BandPartitions) -> None:
        """Store ``crawl``'s band hashes (replacing an earlier entry of the same crawl, which keeps its place)."""
        if "/" in crawl or crawl.startswith((".", "_")) or not crawl:
            raise ValueError(f"crawl id {crawl!r} cannot name an index entry")
        self.dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.dir / ".lock")):
            meta = self._meta()
            tmp = self.dir / f".{crawl}.tmp-{os.getpid()}"
            tmp.mkdir(parents=True, exist_ok=True)
            for b in range(self.num_bands):
                np.save(tmp / f"band_{b:02d}.npy", np.unique(np.asarray(parts.band(b))))
            final = self.dir / crawl
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            if crawl not in meta["crawls"]:
                meta["crawls"].append(crawl)
            atomic_write_bytes(self.dir / "index.json", json.dumps(meta, indent=2).encode())
        log.info("dedup index %s: added %s (%d documents)", self.dir, crawl, parts.count)

    def matches(self, parts: BandPartitions, crawls: list[str]) -> np.ndarray:
        """Bool mask over the documents of ``parts``: some band hash is in the index entry of one of ``crawls``."""
        hit = np.zeros(parts.count, dtype=bool)
        for crawl in crawls:
            for b in range(self.num_bands):
                known = np.load(self.dir / crawl / f"band_{b:02d}.npy", mmap_mode="r")
                if not len(known):
                    continue
                values = np.asarray(parts.band(b))
                pos = np.minimum(np.searchsorted(known, values), len(known) - 1)
                hit |= known[pos] == values
        return hit
