"""MinHash signatures of many documents at once, equal to datasketch's, without a Python call per shingle.

    from pipelines.minhash import minhash_signatures
    sigs = minhash_signatures(texts, DedupConfig())   # (N, 112) uint64

A document's shingles are the word n-grams (default 5) of its normalised text: NFKC, lowercase, every run of
non-word characters (punctuation, whitespace) folded into one space. Each shingle is hashed as datasketch's
``scheme="affine64"`` does: the first 8 bytes of SHA-1 (little-endian), the MurmurHash3 64-bit finaliser, then
``a_k * h + b_k mod 2**64`` for each of the ``num_perm`` permutations (datasketch's own ``a``, ``b`` for the
seed); the signature is the minimum per permutation. So ``minhash_signatures(texts)[i]`` equals
``datasketch.MinHash(num_perm, seed, scheme="affine64")`` updated with ``shingles(texts[i])``: the same numbers.

Speed comes from numba kernels that work on one UTF-8 buffer of a whole batch: normalisation is a table lookup
per code point, SHA-1 runs on 64 shingles at a time (one SIMD lane per shingle), the permutation minimum is a
vector loop over the permutations, and batches run on all cores (the kernels release the GIL). No Python call per
shingle or word: datasketch makes one (hashlib) per shingle, which is where its time goes.
"""

from __future__ import annotations

import os
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import polars as pl
import pyarrow as pa
from numba import njit

if TYPE_CHECKING:
    from pipelines.config import DedupConfig

_U32 = np.uint32
_U64 = np.uint64
_LANES = 64  # shingles hashed together by the SHA-1 kernel (SIMD lanes)


def normalize_texts(texts: list[str | None]) -> list[str]:
    """NFKC, lowercase, every run of non-word characters → one space, stripped (see ``_encode_normalized``)."""
    buf, off = _encode_normalized(texts)
    data = buf.tobytes()
    return [data[off[i] : off[i + 1]].decode() for i in range(len(texts))]


def normalize(text: str) -> str:
    """The normalised text that shingles are cut from."""
    return normalize_texts([text])[0]


def shingle_sets(texts: list[str | None], n: int) -> list[set[bytes]]:
    """Per text, its word n-grams of the normalised text as UTF-8 bytes (fewer than n words: one shingle).

    The reference the numba kernel reproduces, and what the exact Jaccard check compares."""
    out = []
    for norm in normalize_texts(texts):
        words = norm.split(" ")
        grams = [" ".join(words)] if len(words) < n else [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
        out.append({g.encode() for g in grams})
    return out


def shingles(text: str, n: int) -> set[bytes]:
    """The shingle set of one text (see ``shingle_sets``)."""
    return shingle_sets([text], n)[0]


def jaccard(a: set[bytes], b: set[bytes]) -> float:
    """Exact Jaccard similarity of two shingle sets."""
    return len(a & b) / max(1, len(a | b))


def sorted_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard similarity of two sets given as sorted arrays of distinct values."""
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / max(1, a.size + b.size - inter)


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine64 permutation parameters ``(a, b)`` for ``num_perm`` and ``seed``."""
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine64").permutations
    return np.ascontiguousarray(a, dtype=np.uint64), np.ascontiguousarray(b, dtype=np.uint64)


def minhash_signatures(
    texts: list[str | None],
    cfg: DedupConfig,
    *,
    batch_docs: int | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """(N, cfg.num_perm) uint64 MinHash signatures (of cfg: ``ngram``, ``num_perm``, ``seed``).

    Batches of ``batch_docs`` documents (default: 8 per thread, 32 to 1024 documents each) run on ``threads``
    threads (default: one per core)."""
    n = len(texts)
    a, b = permutations(cfg.num_perm, cfg.seed)
    _unicode_tables()  # made once, before the threads need them
    out = np.empty((n, cfg.num_perm), dtype=np.uint64)
    threads = threads or os.cpu_count() or 1
    batch_docs = batch_docs or min(1024, max(32, -(-n // (8 * threads))))

    def one(start: int) -> None:
        buf, off = _encode_normalized(texts[start : start + batch_docs])
        _signatures(buf, off, cfg.ngram, a, b, out[start : start + batch_docs])

    starts = range(0, n, batch_docs)
    if threads == 1 or len(starts) == 1:
        for s in starts:
            one(s)
    else:
        with ThreadPoolExecutor(min(threads, len(starts))) as pool:
            list(pool.map(one, starts))
    return out


def _encode_normalized(texts: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """The normalised texts as one UTF-8 buffer (+ 8 zero bytes of padding) and document offsets.

    NFKC, then lowercase, then every run of non-word characters (regex ``\\w``: letters, combining marks, digits,
    connector punctuation) → one space. Done per code point with tables made once from polars (Rust's Unicode
    data); a document with a character whose NFKC depends on its neighbours goes through Python's unicodedata."""
    tab = _unicode_tables()
    encoded = [b"" if t is None else t.encode() for t in texts]
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    src_off = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(lengths, out=src_off[1:])
    # Python's NFKC only for documents with a character that per-character NFKC in _fold cannot handle.
    changing = _nfkc_candidates(np.frombuffer(b"".join(encoded), dtype=np.uint8), src_off, tab.safe)
    if changing.any():
        for i in np.flatnonzero(changing):
            encoded[i] = unicodedata.normalize("NFKC", texts[i]).encode()
        lengths[changing] = [len(encoded[i]) for i in np.flatnonzero(changing)]
        np.cumsum(lengths, out=src_off[1:])
    src = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    off = np.empty_like(src_off)
    size = 2 * len(src) + 256
    while True:  # NFKC may expand a character many times (U+FDFA: 18 characters); then retry with more room
        out = np.zeros(size, dtype=np.uint8)
        _fold(src, src_off, tab.lower1, tab.lower2, tab.word, tab.nfkc_start, tab.nfkc_len, tab.nfkc_flat, out, off)
        if off[-1] >= 0:
            return out[: off[-1] + 8], off
        size *= 4


class _Tables(NamedTuple):
    """Per code point (from polars, i.e. Rust's Unicode data)."""

    lower1: np.ndarray  # int32: its lowercase
    lower2: np.ndarray  # int32: second code point of the lowercase (only U+0130 has one), else 0
    word: np.ndarray  # bool: its lowercase consists of word characters (regex \w)
    safe: np.ndarray  # bool: NFKC of a text is the concatenation of NFKC of this character (see _unicode_tables)
    nfkc_start: np.ndarray  # int64: where its NFKC mapping starts in nfkc_flat (safe characters that change)
    nfkc_len: np.ndarray  # int64: length of that mapping, 0 when NFKC keeps the character
    nfkc_flat: np.ndarray  # int32: the mappings, one after the other


@lru_cache(maxsize=1)
def _unicode_tables() -> _Tables:
    """The tables of ``_fold``. A character is safe for per-character NFKC when it is no combining mark and no
    second part of a canonical composition (a Hangul vowel, say), and NFKC maps it to itself or to characters of
    which the same holds. Text made of safe characters is normalised character by character; any other goes
    through Python's unicodedata. About 0.5 s, once per process."""
    cps = np.arange(0x110000, dtype=np.uint32)
    cps[0xD800:0xE000] = 0x20  # surrogates are no characters
    chars = _series(cps)
    lowered = chars.str.to_lowercase()
    word = lowered.str.contains(r"^\w+$").to_numpy()
    lower1, lower2 = _code_points(lowered)
    nfd = chars.str.normalize("NFD")
    loose = chars.str.contains(r"^\p{M}$").to_numpy()  # combining marks reorder and compose with neighbours
    for parts in nfd.filter(nfd.str.len_chars() > 1).to_list():
        loose[[ord(c) for c in parts[1:]]] = True
    nfkc = chars.str.normalize("NFKC")
    kept = (nfkc == chars).to_numpy() & ~loose
    nfkc_len = nfkc.str.len_chars().to_numpy().astype(np.int64)
    flat = _utf32(nfkc).astype(np.int32)
    start = np.cumsum(nfkc_len) - nfkc_len
    # A changed character is safe when every character of its mapping is kept as it is.
    bad = ~kept[flat]
    bad_per_char = np.add.reduceat(bad.astype(np.int64), start) > 0
    mapped = ~kept & ~loose & ~bad_per_char
    nfkc_len = np.where(mapped, nfkc_len, 0)
    return _Tables(lower1, lower2, word.astype(np.bool_), kept | mapped, start, nfkc_len, flat)


def _series(cps: np.ndarray) -> pl.Series:
    """A polars String series with one character per code point."""
    data = cps.tobytes().decode("utf-32-le").encode()
    sizes = np.where(cps < 0x80, 1, np.where(cps < 0x800, 2, np.where(cps < 0x10000, 3, 4)))
    offsets = np.zeros(len(cps) + 1, dtype=np.int32)
    np.cumsum(sizes, out=offsets[1:])
    return pl.Series(pa.StringArray.from_buffers(len(cps), pa.py_buffer(offsets), pa.py_buffer(data)))


def _utf32(strings: pl.Series) -> np.ndarray:
    """All code points of a String series, one after the other (without a Python string per element)."""
    arr = strings.to_arrow().cast(pa.large_string())
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    _, offsets, data = arr.buffers()
    off = np.frombuffer(offsets, dtype=np.int64, count=len(arr) + 1, offset=arr.offset * 8)
    text = memoryview(data)[off[0] : off[-1]].tobytes().decode()
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def _code_points(strings: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """First and second code point of strings of one or two code points (0 when there is no second)."""
    lengths = strings.str.len_chars().to_numpy().astype(np.int64)
    assert lengths.min() >= 1 and lengths.max() <= 2, "a lowercase of more than two code points"
    flat = _utf32(strings)
    first = np.cumsum(lengths) - lengths
    second = np.where(lengths == 2, flat[np.minimum(first + 1, len(flat) - 1)], 0)
    return flat[first].astype(np.int32), second.astype(np.int32)


# ---------------------------------------------------------------------------------------------------------------
# numba kernels


@njit(inline="always")
def _read_utf8(src, i):  # noqa: ANN001, ANN202
    """The code point that starts at byte ``i`` of the UTF-8 buffer ``src``, and the byte after it."""
    c = np.int64(src[i])
    if c < 0x80:
        return c, i + 1
    if c < 0xE0:
        return ((c & 0x1F) << 6) | (np.int64(src[i + 1]) & 0x3F), i + 2
    if c < 0xF0:
        return ((c & 0x0F) << 12) | ((np.int64(src[i + 1]) & 0x3F) << 6) | (np.int64(src[i + 2]) & 0x3F), i + 3
    c = (
        ((c & 0x07) << 18)
        | ((np.int64(src[i + 1]) & 0x3F) << 12)
        | ((np.int64(src[i + 2]) & 0x3F) << 6)
        | (np.int64(src[i + 3]) & 0x3F)
    )
    return c, i + 4


@njit(nogil=True, cache=True)
def _nfkc_candidates(src: np.ndarray, src_off: np.ndarray, safe: np.ndarray) -> np.ndarray:
    """Documents of the UTF-8 buffer with a code point that is not ``safe`` for per-character NFKC."""
    ndocs = src_off.shape[0] - 1
    out = np.zeros(ndocs, np.bool_)
    for d in range(ndocs):
        i = src_off[d]
        end = src_off[d + 1]
        while i < end:
            if src[i] < 0x80:  # ASCII is safe and needs no decoding: the common case, kept short
                i += 1
                continue
            c, i = _read_utf8(src, i)
            if not safe[c]:
                out[d] = True
                break
    return out


@njit(inline="always")
def _put_utf8(out, pos, cp):  # noqa: ANN001, ANN202
    if cp < 0x80:
        out[pos] = cp
        return pos + 1
    if cp < 0x800:
        out[pos] = 0xC0 | (cp >> 6)
        out[pos + 1] = 0x80 | (cp & 0x3F)
        return pos + 2
    if cp < 0x10000:
        out[pos] = 0xE0 | (cp >> 12)
        out[pos + 1] = 0x80 | ((cp >> 6) & 0x3F)
        out[pos + 2] = 0x80 | (cp & 0x3F)
        return pos + 3
    out[pos] = 0xF0 | (cp >> 18)
    out[pos + 1] = 0x80 | ((cp >> 12) & 0x3F)
    out[pos + 2] = 0x80 | ((cp >> 6) & 0x3F)
    out[pos + 3] = 0x80 | (cp & 0x3F)
    return pos + 4


@njit(nogil=True, cache=True)
def _fold(
    src: np.ndarray,
    src_off: np.ndarray,
    lower1: np.ndarray,
    lower2: np.ndarray,
    word: np.ndarray,
    nfkc_start: np.ndarray,
    nfkc_len: np.ndarray,
    nfkc_flat: np.ndarray,
    out: np.ndarray,
    out_off: np.ndarray,
) -> None:
    """Per document of the UTF-8 buffer ``src``: per-character NFKC (where the tables have a mapping), lowercase,
    and runs of non-word code points folded into one space. ``out_off[-1] = -1`` when ``out`` is too small."""
    ndocs = src_off.shape[0] - 1
    pos = 0
    for d in range(ndocs):
        out_off[d] = pos
        pos = _fold_document(
            src, src_off[d], src_off[d + 1], lower1, lower2, word, nfkc_start, nfkc_len, nfkc_flat, out, pos
        )
        if pos < 0:
            out_off[ndocs] = -1
            return
    out_off[ndocs] = pos


@njit(inline="always")
def _fold_document(src, i, end, lower1, lower2, word, nfkc_start, nfkc_len, nfkc_flat, out, pos):  # noqa: ANN001, ANN202
    """``_fold`` of the document ``src[i:end]`` written from ``out[pos]``: the position after it, or -1 when ``out``
    has no room left."""
    gap = False
    started = False
    while i < end:
        c, i = _read_utf8(src, i)
        if pos + 160 > out.shape[0]:  # room for the longest mapping, lowercased, and the padding
            return -1
        first = nfkc_start[c]
        count = nfkc_len[c]
        k = 0
        while True:  # the character itself, or each character of its NFKC mapping
            if count:
                c = np.int64(nfkc_flat[first + k])
            if not word[c]:
                gap = True
            else:
                if gap and started:
                    out[pos] = 32
                    pos += 1
                gap = False
                started = True
                pos = _put_utf8(out, pos, np.int64(lower1[c]))
                if lower2[c]:
                    pos = _put_utf8(out, pos, np.int64(lower2[c]))
            k += 1
            if k >= count:
                break
    return pos


@njit(nogil=True, cache=True)
def _signatures(buf: np.ndarray, doc_off: np.ndarray, n: int, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """Signatures of the documents ``buf[doc_off[i]:doc_off[i+1]]`` (normalised, single spaces) into ``out``."""
    ndocs = doc_off.shape[0] - 1
    # Shingle spans: word i..i+n-1 of each document, as byte ranges (the spaces between words included).
    counts = np.empty(ndocs + 1, np.int64)
    counts[0] = 0
    for d in range(ndocs):
        words = 1
        for i in range(doc_off[d], doc_off[d + 1]):
            if buf[i] == 32:
                words += 1
        counts[d + 1] = counts[d] + max(words - n + 1, 1)
    starts = np.empty(counts[ndocs], np.int64)
    ends = np.empty(counts[ndocs], np.int64)
    longest = 0
    for d in range(ndocs):
        longest = max(longest, doc_off[d + 1] - doc_off[d])
    word_start = np.empty(longest + 1, np.int64)
    word_end = np.empty_like(word_start)
    for d in range(ndocs):
        nw = 0
        ws = doc_off[d]
        for i in range(doc_off[d], doc_off[d + 1] + 1):
            if i == doc_off[d + 1] or buf[i] == 32:
                word_start[nw] = ws
                word_end[nw] = i
                nw += 1
                ws = i + 1
        k = counts[d]
        for i in range(counts[d + 1] - counts[d]):
            starts[k + i] = word_start[i]
            ends[k + i] = word_end[min(i + n, nw) - 1]
    hashes = np.empty(counts[ndocs], np.uint64)
    _sha1_prefix64(buf, starts, ends, hashes)
    # MurmurHash3 fmix64 (datasketch's pre-mix), then the permutation minimum per document.
    perms = a.shape[0]
    mins = np.empty(perms, np.uint64)
    for d in range(ndocs):
        mins[:] = _U64(0xFFFFFFFFFFFFFFFF)
        for s in range(counts[d], counts[d + 1]):
            h = hashes[s]
            h ^= h >> _U64(33)
            h *= _U64(0xFF51AFD7ED558CCD)
            h ^= h >> _U64(33)
            h *= _U64(0xC4CEB9FE1A85EC53)
            h ^= h >> _U64(33)
            for k in range(perms):
                mins[k] = min(mins[k], a[k] * h + b[k])
        out[d, :] = mins


@njit(inline="always")
def _rotl(x, n):  # noqa: ANN001, ANN202
    return (x << _U32(n)) | (x >> _U32(32 - n))


@njit(inline="always")
def _round0(a, b, c, d, e, w, t):  # noqa: ANN001, ANN202
    for j in range(a.shape[0]):
        e[j] = _U32(e[j] + _rotl(a[j], 5) + ((b[j] & c[j]) | (~b[j] & d[j])) + _U32(0x5A827999) + w[t & 15, j])
        b[j] = _rotl(b[j], 30)


@njit(inline="always")
def _round2(a, b, c, d, e, w, t):  # noqa: ANN001, ANN202
    for j in range(a.shape[0]):
        f = (b[j] & c[j]) | (b[j] & d[j]) | (c[j] & d[j])
        e[j] = _U32(e[j] + _rotl(a[j], 5) + f + _U32(0x8F1BBCDC) + w[t & 15, j])
        b[j] = _rotl(b[j], 30)


@njit(inline="always")
def _parity_round(a, b, c, d, e, w, t, k):  # noqa: ANN001, ANN202
    """Steps 20-39 (k = 0x6ED9EBA1) and 60-79 (k = 0xCA62C1D6): the parity function."""
    for j in range(a.shape[0]):
        e[j] = _U32(e[j] + _rotl(a[j], 5) + (b[j] ^ c[j] ^ d[j]) + k + w[t & 15, j])
        b[j] = _rotl(b[j], 30)


@njit(inline="always")
def _schedule(w, t):  # noqa: ANN001, ANN202
    for j in range(w.shape[1]):
        x = w[(t - 3) & 15, j] ^ w[(t - 8) & 15, j] ^ w[(t - 14) & 15, j] ^ w[t & 15, j]
        w[t & 15, j] = _rotl(x, 1)


@njit(inline="always")
def _load_block(buf, start, end, blk, w, j):  # noqa: ANN001, ANN202
    """Column ``j`` of ``w``: the 16 big-endian words of block ``blk`` of the SHA-1-padded message buf[start:end]."""
    length = end - start
    base = blk * 64
    full = min(max((length - base) // 4, 0), 16)
    q = start + base
    for t in range(full):
        w[t, j] = (
            (_U32(buf[q]) << _U32(24))
            | (_U32(buf[q + 1]) << _U32(16))
            | (_U32(buf[q + 2]) << _U32(8))
            | _U32(buf[q + 3])
        )
        q += 4
    t = full
    if t < 16 and base + 4 * t <= length:  # the word with the message's last bytes and the 0x80 terminator
        valid = length - base - 4 * t
        x = _U32(0)
        for k in range(valid):
            x |= _U32(buf[q + k]) << _U32(24 - 8 * k)
        w[t, j] = x | (_U32(0x80) << _U32(24 - 8 * valid))
        t += 1
    for u in range(t, 16):
        w[u, j] = _U32(0)
    if blk == (length + 8) // 64:  # the last block ends with the message length in bits
        bits = _U64(length) * _U64(8)
        w[14, j] = _U32(bits >> _U64(32))
        w[15, j] = _U32(bits & _U64(0xFFFFFFFF))


@njit(inline="always")
def _bswap32(x):  # noqa: ANN001, ANN202
    x = _U64(x)
    return (
        ((x & _U64(0xFF)) << _U64(24))
        | ((x & _U64(0xFF00)) << _U64(8))
        | ((x >> _U64(8)) & _U64(0xFF00))
        | (x >> _U64(24))
    )


@njit(nogil=True, cache=True)
def _sha1_prefix64(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, out: np.ndarray) -> None:
    """out[i] = the first 8 bytes of sha1(buf[starts[i]:ends[i]]) read little-endian (datasketch's sha1_hash64).

    FIPS 180-4 SHA-1, computed for 64 messages at once; ``buf`` must have >= 4 bytes after the last message."""
    count = starts.shape[0]
    blocks = (ends - starts + 8) // 64 + 1
    order = _order_by_blocks(blocks)
    w = np.empty((16, _LANES), np.uint32)
    h = np.empty((5, _LANES), np.uint32)
    a = np.empty(_LANES, np.uint32)
    b = np.empty(_LANES, np.uint32)
    c = np.empty(_LANES, np.uint32)
    d = np.empty(_LANES, np.uint32)
    e = np.empty(_LANES, np.uint32)
    lane = np.empty(_LANES, np.int64)
    for first in range(0, count, _LANES):
        m = min(_LANES, count - first)
        for j in range(_LANES):
            lane[j] = order[first + (j if j < m else 0)]
        _sha1_lanes(buf, starts, ends, blocks, lane, m, w, h, a, b, c, d, e)
        for j in range(m):
            out[lane[j]] = _bswap32(h[0, j]) | (_bswap32(h[1, j]) << _U64(32))


@njit(inline="always")
def _order_by_blocks(blocks):  # noqa: ANN001, ANN202
    """The message indices by block count (a counting sort, stable), so each group of lanes runs as few blocks as
    its longest message needs."""
    count = blocks.shape[0]
    top = blocks.max() if count else 1
    slots = np.zeros(top + 2, np.int64)
    for i in range(count):
        slots[blocks[i] + 1] += 1
    for k in range(1, top + 2):
        slots[k] += slots[k - 1]
    order = np.empty(count, np.int64)
    for i in range(count):
        order[slots[blocks[i]]] = i
        slots[blocks[i]] += 1
    return order


@njit(inline="always")
def _sha1_lanes(buf, starts, ends, blocks, lane, m, w, h, a, b, c, d, e):  # noqa: ANN001, ANN202
    """``h``: the SHA-1 states of the messages of the lanes ``lane`` (the first ``m`` real, ``lane[m-1]`` the one
    with the most blocks), after all their blocks."""
    h[0, :] = _U32(0x67452301)
    h[1, :] = _U32(0xEFCDAB89)
    h[2, :] = _U32(0x98BADCFE)
    h[3, :] = _U32(0x10325476)
    h[4, :] = _U32(0xC3D2E1F0)
    for blk in range(blocks[lane[m - 1]]):
        for j in range(_LANES):
            _load_block(buf, starts[lane[j]], ends[lane[j]], blk, w, j)
        a[:] = h[0]
        b[:] = h[1]
        c[:] = h[2]
        d[:] = h[3]
        e[:] = h[4]
        _compress(a, b, c, d, e, w)
        for j in range(_LANES):
            if blk < blocks[lane[j]]:  # lanes whose message is shorter keep their finished state
                h[0, j] += a[j]
                h[1, j] += b[j]
                h[2, j] += c[j]
                h[3, j] += d[j]
                h[4, j] += e[j]


@njit(inline="always")
def _compress(a, b, c, d, e, w):  # noqa: ANN001, ANN202
    """The 80 steps of SHA-1's compression function on the working state a..e, the block's words in ``w``."""
    # Five steps per iteration with the roles of a..e rotated, so no state is copied between steps.
    for t in range(0, 80, 5):
        _step(a, b, c, d, e, w, t)
        _step(e, a, b, c, d, w, t + 1)
        _step(d, e, a, b, c, w, t + 2)
        _step(c, d, e, a, b, w, t + 3)
        _step(b, c, d, e, a, w, t + 4)


@njit(inline="always")
def _step(a, b, c, d, e, w, t):  # noqa: ANN001, ANN202
    """Step ``t``: the message schedule's word t (from t = 16 on), then the round function of t's quarter."""
    if t >= 16:
        _schedule(w, t)
    if t < 20:
        _round0(a, b, c, d, e, w, t)
    elif t < 40:
        _parity_round(a, b, c, d, e, w, t, _U32(0x6ED9EBA1))
    elif t < 60:
        _round2(a, b, c, d, e, w, t)
    else:
        _parity_round(a, b, c, d, e, w, t, _U32(0xCA62C1D6))
