"""Vectorised MinHash and LSH banding in numpy (no per-document Python loop).

Texts are cut into :mod:`tailguard.words`'s words (lower-cased runs of letters and
digits, the words the metrics count), and every window of ``shingle`` consecutive
words is hashed once to 32 bits. The
``num_perm`` hash functions are the affine permutations ``(a*x + b) mod 2**32``
with ``a`` odd, in 32-bit arithmetic that the CPU vectorises (the wrap-around is
the modulus), applied by broadcasting over all shingles of a chunk; the minimum
per document comes from ``np.minimum.reduceat``. A document shorter
than ``shingle`` words is one shingle; an empty document has no shingles and a
signature of all ``EMPTY`` (it is never a candidate).

LSH cuts each signature into ``bands`` of ``rows``, chosen for the threshold
by minimising the weighted false-positive and false-negative areas (the same
rule as datasketch). Records that agree on a whole band are candidates;
candidates are confirmed by estimated Jaccard (the share of equal minhashes).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tailguard.gate import grouping
from tailguard.words import packed, string_offsets
from tailguard.words import split as word_split

EMPTY = np.uint32(0xFFFFFFFF)  # no shingles; minhashes are capped one below it
_MIX = np.array(
    [
        0x9E3779B97F4A7C15,
        0xC2B2AE3D27D4EB4F,
        0x165667B19E3779F9,
        0xD6E8FEB86659FD93,
        0xFF51AFD7ED558CCD,
        0xC4CEB9FE1A85EC53,
        0x27D4EB2F165667C5,
        0x94D049BB133111EB,
    ],
    dtype=np.uint64,
)
#: Shingles per chunk: ``num_perm`` x this many uint32 stay in cache (2 MiB at 128).
CHUNK = 1 << 12


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, so combined hashes spread over all bits."""
    h = h ^ (h >> np.uint64(33))
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h


#: Bytes of text tokenised per step: the per-byte work arrays stay in cache-sized pieces.
TEXT_CHUNK = 1 << 20
_TOKEN_MULT = 0x9E3779B97F4A7C15


def _powers(length: int) -> tuple[np.ndarray, np.ndarray]:
    """``M**i`` and ``M**-i`` (mod 2**64, ``M`` odd so it has an inverse) for
    ``i < length`` (at least ``TEXT_CHUNK``; a longer single text grows them)."""
    return _power_tables(max(TEXT_CHUNK, 1 << max(int(length) - 1, 1).bit_length()))


@lru_cache(maxsize=1)
def _power_tables(size: int) -> tuple[np.ndarray, np.ndarray]:
    m = np.full(size, _TOKEN_MULT, np.uint64)
    m[0] = 1
    m_inv = np.full(size, pow(_TOKEN_MULT, -1, 1 << 64), np.uint64)
    m_inv[0] = 1
    return np.cumprod(m, dtype=np.uint64), np.cumprod(m_inv, dtype=np.uint64)


def hash_tokens(data: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each token: tokens lie back to back in the bytes ``data``
    token ``i`` starting at ``starts[i]``, none empty.

    The polynomial ``sum (byte_j + 1) * M**j`` over the token's bytes (mod 2**64):
    summed at global positions and shifted back by ``M**-start``, so every pass
    is over contiguous memory; MurmurHash3's finaliser spreads it over all bits.
    """
    if len(starts) == 0:
        return np.zeros(0, np.uint64)
    power, inverse = _powers(len(data))
    vals = data.astype(np.uint64)
    vals += np.uint64(1)
    vals *= power[: len(data)]
    np.cumsum(vals, out=vals)  # wraps mod 2**64, like the sum itself
    ends = np.append(starts[1:], len(data)) - 1
    h = vals[ends]
    h[1:] -= vals[starts[1:] - 1]
    h *= inverse[starts]
    lens = (ends + 1 - starts).astype(np.uint64)
    return _fmix64(h ^ lens * _MIX[1])


def words(texts: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Per-word 64-bit hashes of all texts, flattened, and each text's word offsets.

    The words are :func:`tailguard.words.split`'s (lower-cased runs of letters and
    digits). Texts are taken a few MiB at a time; an all-ASCII run is cut on its raw
    UTF-8 bytes, other runs with Arrow's Unicode kernels, and both hash the words'
    bytes the same way (:func:`hash_tokens`).
    """
    parts = by_text_chunks(texts, _hashed_words)
    if not parts:
        return np.zeros(0, np.uint64), np.zeros(1, np.int64)
    offsets = np.zeros(sum(len(p[1]) - 1 for p in parts) + 1, np.int64)
    np.cumsum(np.concatenate([np.diff(p[1]) for p in parts]), out=offsets[1:])
    return np.concatenate([p[0] for p in parts]), offsets


def text_keys(texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit key per text that ignores case, punctuation and spacing: the hash of
    its sequence of words, lower-cased runs of letters and digits (so two texts get
    one key exactly when they are equal after reducing every other character run to
    one space and trimming)."""
    parts = by_text_chunks(texts, lambda part: _sequence_keys(*_hashed_words(part)))
    return np.concatenate(parts) if parts else np.zeros(0, np.uint64)


def by_text_chunks(texts: pa.Array | pa.ChunkedArray, fn: Callable[[pa.Array], Any]) -> list[Any]:
    """``fn`` of consecutive runs of whole texts of about ``TEXT_CHUNK`` bytes, in order,
    on up to the CPU count of threads (numpy and Arrow release the GIL)."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks() if texts.num_chunks else pa.array([], pa.string())
    if texts.null_count:
        texts = pc.fill_null(texts, "")
    n = len(texts)
    if n == 0:
        return []
    row_bytes = string_offsets(texts)
    steps = np.arange(row_bytes[0], row_bytes[-1], TEXT_CHUNK)
    cuts = np.unique(np.concatenate([[0], np.searchsorted(row_bytes, steps), [n]]))
    spans = list(zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True))
    threads = min(os.cpu_count() or 1, 8, len(spans))
    if threads < 2:
        return [fn(texts.slice(lo, hi - lo)) for lo, hi in spans]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(lambda span: fn(texts.slice(span[0], span[1] - span[0])), spans))


def _hashed_words(part: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The word hashes of some texts and their per-text offsets."""
    split, offsets = word_split(part)
    return hash_tokens(*packed(split)), offsets


def _sequence_keys(hashes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """One hash per text of its tokens' hashes in order (the polynomial of
    :func:`hash_tokens` over token hashes)."""
    power, inverse = _powers(len(hashes) + 1)
    vals = np.zeros(len(hashes) + 1, np.uint64)
    np.multiply(hashes, power[: len(hashes)], out=vals[1:])
    np.cumsum(vals, out=vals)
    total = vals[offsets[1:]] - vals[offsets[:-1]]
    total *= inverse[offsets[:-1]]
    return _fmix64(total ^ np.diff(offsets).astype(np.uint64) * _MIX[2])


def shingles(texts: pa.Array | pa.ChunkedArray, shingle: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of every ``shingle``-word window of each text, and per-text offsets."""
    return shingles_of_words(*words(texts), shingle)


def shingles_of_words(
    w: np.ndarray, offsets: np.ndarray, shingle: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`shingles` from the :func:`words` of the texts (for callers needing both)."""
    if shingle < 1:
        raise ValueError(f"shingle must be >= 1 word, got {shingle}")
    n_words = len(w)
    counts = np.diff(offsets)
    n_sh = np.where(counts >= shingle, counts - shingle + 1, (counts > 0).astype(np.int64))
    sh_offsets = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(n_sh, out=sh_offsets[1:])
    # Rolling combination over the flat word array (contiguous slices, no gathers):
    # window i covers words i..i+shingle-1; windows that run past their text's end
    # are masked out, which leaves the windows in text order.
    h = np.zeros(n_words, np.uint64)
    for j in range(min(shingle, n_words)):
        h[: n_words - j] += w[j:] * _mult(j)
    keep = np.ones(n_words, bool)
    for j in range(1, shingle):
        tail = offsets[1:] - j
        keep[tail[tail >= offsets[:-1]]] = False
    short = np.flatnonzero((counts > 0) & (counts < shingle))
    if len(short):  # texts with fewer words than a shingle: one shingle of all their words
        hs = np.zeros(len(short), np.uint64)
        for j in range(shingle - 1):
            inside = j < counts[short]
            hs += np.where(inside, w[np.minimum(offsets[short] + j, n_words - 1)] * _mult(j), 0)
        h[offsets[short]] = hs
        keep[offsets[short]] = True
    # Word hashes are uniform 64-bit values and each term of the sum is a bijection of
    # one, so the top bits of the sum are already well mixed: keep 32 of them.
    return (h[keep] >> np.uint64(32)).astype(np.uint32), sh_offsets


def _mult(j: int) -> np.uint64:
    return _MIX[j % len(_MIX)] + np.uint64(2 * (j // len(_MIX)))


@lru_cache(maxsize=16)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The odd ``a`` and any ``b`` (32-bit) of each hash function, as columns."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 1 << 32, size=num_perm, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 1 << 32, size=num_perm, dtype=np.uint64)
    return a.astype(np.uint32)[:, None], b.astype(np.uint32)[:, None]


def signatures(
    texts: pa.Array | pa.ChunkedArray, *, num_perm: int = 128, shingle: int = 3, seed: int = 1
) -> np.ndarray:
    """MinHash signatures, shape ``(len(texts), num_perm)``, uint32."""
    x, offsets = shingles(texts, shingle)
    return signatures_of_shingles(x, offsets, num_perm=num_perm, seed=seed)


def signatures_of_shingles(
    x: np.ndarray,
    offsets: np.ndarray,
    *,
    num_perm: int = 128,
    seed: int = 1,
    threads: int | None = None,
) -> np.ndarray:
    """MinHash signatures from shingle hashes ``x`` grouped by ``offsets``.

    numpy releases the GIL inside its loops, so ``threads`` (default: the CPU
    count, at most 8) each take a contiguous run of whole documents.
    """
    threads = min(threads or os.cpu_count() or 1, 8)
    n = len(offsets) - 1
    if threads < 2 or len(x) < 4 * CHUNK or n < 2:
        return _signatures(x, offsets, num_perm=num_perm, seed=seed)
    targets = np.linspace(0, len(x), threads + 1)[1:-1]
    cuts = np.unique(np.concatenate([[0], np.searchsorted(offsets, targets), [n]]))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        parts = pool.map(
            lambda lo_hi: _signatures(
                x[offsets[lo_hi[0]] : offsets[lo_hi[1]]],
                offsets[lo_hi[0] : lo_hi[1] + 1] - offsets[lo_hi[0]],
                num_perm=num_perm,
                seed=seed,
            ),
            list(zip(cuts[:-1], cuts[1:], strict=True)),
        )
        return np.concatenate(list(parts))


def _signatures(x: np.ndarray, offsets: np.ndarray, *, num_perm: int, seed: int) -> np.ndarray:
    n = len(offsets) - 1
    a, b = permutations(num_perm, seed)
    sig = np.full((num_perm, n), EMPTY, np.uint32)
    counts = np.diff(offsets)
    docs = np.flatnonzero(counts)  # documents with at least one shingle
    if len(docs) == 0:
        return np.ascontiguousarray(sig.T)
    starts = offsets[docs]
    # Cut into chunks of whole shingle ranges: a chunk ends at a document boundary
    # unless one document alone is larger than a chunk (then its pieces are min-merged).
    cuts = np.unique(np.concatenate([np.arange(0, len(x), CHUNK), starts, [len(x)]]))
    bounds = _merge_cuts(cuts, CHUNK)
    work = np.empty((num_perm, CHUNK), np.uint32)
    x = np.asarray(x, np.uint32)
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        m = hi - lo
        v = work[:, :m] if m <= CHUNK else np.empty((num_perm, m), np.uint32)
        np.multiply(a, x[None, lo:hi], out=v)  # wraps: mod 2**32
        v += b
        # Documents overlapping [lo, hi): segment starts clipped to the chunk.
        first = np.searchsorted(starts, lo, side="right") - 1
        last = np.searchsorted(starts, hi, side="left")
        seg_docs = docs[max(first, 0) : last]
        seg_starts = np.maximum(offsets[seg_docs], lo) - lo
        reduced = np.minimum.reduceat(v, seg_starts, axis=1)
        np.minimum(sig[:, seg_docs], reduced, out=reduced)
        sig[:, seg_docs] = reduced
    sig[:, docs] = np.minimum(sig[:, docs], EMPTY - np.uint32(1))  # EMPTY marks no shingles
    return np.ascontiguousarray(sig.T)


def _merge_cuts(cuts: np.ndarray, size: int) -> list[int]:
    """Greedy chunk bounds from candidate cut points, each chunk at most ``size`` long
    unless a single gap between cut points is longer."""
    bounds = [int(cuts[0])]
    target = bounds[0] + size
    while bounds[-1] < cuts[-1]:
        i = int(np.searchsorted(cuts, target, side="right")) - 1
        nxt = int(cuts[i])
        if nxt <= bounds[-1]:
            nxt = int(cuts[np.searchsorted(cuts, bounds[-1], side="right")])
        bounds.append(nxt)
        target = nxt + size
    return bounds


@lru_cache(maxsize=64)
def optimal_bands(
    threshold: float, num_perm: int, fp_weight: float = 0.5, fn_weight: float = 0.5
) -> tuple[int, int]:
    """``(bands, rows)`` minimising weighted false-positive + false-negative areas."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    best, best_err = (1, num_perm), float("inf")
    for bands in range(1, num_perm + 1):
        rows_max = num_perm // bands
        for rows in range(1, rows_max + 1):
            lo = np.linspace(0.0, threshold, 201)
            hi = np.linspace(threshold, 1.0, 201)
            fp = np.trapezoid(1 - (1 - lo**rows) ** bands, lo)
            fn = np.trapezoid(1 - (1 - (1 - hi**rows) ** bands), hi)
            err = fp_weight * fp + fn_weight * fn
            if err < best_err:
                best, best_err = (bands, rows), err
    return best


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit key per record and band, shape ``(bands, n)``."""
    n = sig.shape[0]
    # Worked record by record (rows of ``sig`` stay in cache), transposed once at the end.
    by_band = sig[:, : bands * rows].reshape(n, bands, rows)
    keys = np.zeros((n, bands), np.uint64)
    for j in range(rows):
        keys += by_band[:, :, j].astype(np.uint64) * _MIX[j % len(_MIX)]
        keys = _fmix64(keys) if j % 4 == 3 else keys
    keys = _fmix64(keys + np.arange(bands, dtype=np.uint64)[None, :])
    return np.ascontiguousarray(keys.T)


def reference_index(sig_r: np.ndarray, bands: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Each band's keys of the (non-empty) reference signatures, sorted, and the
    reference index of each: built once, then every query batch is a binary search."""
    keys = band_keys(sig_r, bands, rows)
    idx = np.flatnonzero(sig_r[:, 0] != EMPTY) if len(sig_r) else np.zeros(0, np.int64)
    order = np.argsort(keys[:, idx], axis=1, kind="stable")  # equal keys: lower index first
    return np.take_along_axis(keys[:, idx], order, axis=1), idx[order]


def similarity(
    sig_q: np.ndarray, sig_r: np.ndarray, q: np.ndarray, r: np.ndarray, chunk: int = 1 << 14
) -> np.ndarray:
    """Estimated Jaccard of each pair: the share of equal minhash values."""
    out = np.empty(len(q), np.float64)
    for lo in range(0, len(q), chunk):
        hi = lo + chunk
        out[lo:hi] = (sig_q[q[lo:hi]] == sig_r[r[lo:hi]]).mean(axis=1)
    return out


def best_matches(
    sig_q: np.ndarray,
    sig_r: np.ndarray | None,
    threshold: float,
    *,
    bands: int,
    rows: int,
    cap: int = 32,
    query_keys: np.ndarray | None = None,
    ref_index: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """For each query, the best reference at estimated Jaccard >= threshold.

    Returns ``(match, sim)``: the matched reference index (-1 if none) and the
    estimated similarity (NaN if none). ``sig_r=None`` matches queries with earlier
    queries. ``query_keys`` (the queries' :func:`band_keys`) and ``ref_index`` (the
    references' :func:`reference_index`) are used when the caller already has them.
    """
    n = sig_q.shape[0]
    q_valid = sig_q[:, 0] != EMPTY if n else np.zeros(0, bool)
    kq = band_keys(sig_q, bands, rows) if query_keys is None else query_keys
    if sig_r is None:
        q, r = grouping.candidate_pairs(kq, None, cap=cap, query_valid=q_valid)
        sig_r = sig_q
    else:
        sorted_keys, sorted_idx = ref_index or reference_index(sig_r, bands, rows)
        parts = [
            grouping.index_pairs(kq[b], q_valid, sorted_keys[b], sorted_idx[b], cap)
            for b in range(bands)
        ]
        code = np.unique(
            np.concatenate([q * max(len(sig_r), 1) + r for q, r in parts] or [np.zeros(0, int)])
        )
        q, r = code // max(len(sig_r), 1), code % max(len(sig_r), 1)
    return grouping.best_matches(q, r, similarity(sig_q, sig_r, q, r), threshold, n)
