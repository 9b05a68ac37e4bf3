"""Seeded streams and row keys: fingerprints, shuffles and the cycled orders the planner draws.

Every row gets a 64-bit fingerprint from its id bytes, origin and generation;
shuffles sort rows by a seeded mix of it, so a plan depends on the rows, never on
their order in the pool, and the same inputs and seed give the same digest anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tailguard.errors import InputError
from tailguard.records import Origin

_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_MUL1 = _U64(0xBF58476D1CE4E5B9)
_MUL2 = _U64(0x94D049BB133111EB)
_LANE = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93],
    dtype=np.uint64,
)
#: Ids longer than this are fingerprinted through a sort instead of their bytes.
_MAX_PADDED_ID = 256
#: Pools at least this large are shuffled pass by pass with a packed value sort.
_PACKED_SORT_MIN = 65_536
#: Rows per block when a chain of elementwise steps runs block by block (fits in L2).
_BLOCK = 32_768


def _cycled_order(
    fp: np.ndarray,
    n_slots: int,
    seed: int,
    *,
    salt: int,
    codes: np.ndarray | None = None,
    n_codes: int = 0,
) -> np.ndarray:
    """``n_slots`` row indices: passes over all rows, each a fresh seeded shuffle.

    Every row appears once per pass, so no row repeats before all have been
    used. With ``codes`` (label codes), each pass is ordered by systematic
    sampling within label, so every prefix is stratified.
    """
    n = len(fp)
    if n_slots == 0:
        return np.empty(0, dtype=np.int64)
    if n == 0:
        raise InputError("no rows to fill the planned slots")
    passes = math.ceil(n_slots / n)
    stratify = codes is not None and n_codes > 1
    with np.errstate(over="ignore"):
        salted = np.arange(passes, dtype=np.uint64) + np.uint64(salt) * _GOLDEN
        pass_keys = _mix(_mix(salted) ^ _mix(np.array([seed], dtype=np.uint64)))
    phase = np.random.default_rng([seed, salt, 0x57A7]).random((passes, max(n_codes, 1)))
    if n < _PACKED_SORT_MIN:  # small pools, possibly many passes: one 2-D sort
        with np.errstate(over="ignore"):
            keys = _mix(fp[None, :] ^ pass_keys[:, None])
        if not stratify:
            return np.argsort(keys, axis=1, kind="stable").ravel()[:n_slots].astype(np.int64)
        order = _stratified_order_2d(keys, codes, n_codes, phase).ravel()
        partial = n_slots - (passes - 1) * n
        if partial == n:
            return order.astype(np.int64, copy=False)
        last = _stratified_order(keys[-1], codes, n_codes, phase[-1], take=partial)
        return np.concatenate([order[: (passes - 1) * n], last]).astype(np.int64, copy=False)
    parts, remaining = [], n_slots
    for p in range(passes):  # a loop over passes of >= 64k rows each, not over rows
        take = min(n, remaining)
        if stratify:
            with np.errstate(over="ignore"):
                keys = _mix(fp ^ pass_keys[p], inplace=True)
            order = _stratified_order(keys, codes, n_codes, phase[p], take=take)
        else:
            order = _shuffle(fp, pass_keys[p])[:take]
        parts.append(order)
        remaining -= len(parts[-1])
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def _stratification(codes: np.ndarray, n_codes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label counts, each grouped row's label, and its rank within its label."""
    counts = np.bincount(codes, minlength=n_codes)
    sorted_codes = np.repeat(np.arange(n_codes), counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return counts, sorted_codes, np.arange(len(codes)) - starts[sorted_codes]


def _label_major(keys: np.ndarray, codes: np.ndarray, n_codes: int) -> np.ndarray:
    """Sort keys whose top bits are the label code: label-major, random within label."""
    bits = max(1, int(n_codes - 1).bit_length())
    return (codes.astype(np.uint64) << _U64(64 - bits)) | (keys >> _U64(bits))


def _stratified_order(
    keys: np.ndarray, codes: np.ndarray, n_codes: int, phase: np.ndarray, take: int | None = None
) -> np.ndarray:
    """One pass: shuffle within label, then interleave labels by systematic sampling.

    With ``take`` < n (a round's last, partial pass) each label contributes its
    largest-remainder quota of ``take * n_label / n`` - the floor or the ceiling,
    ties broken by the seeded phase - so no class is over- or under-drawn by chance.
    """
    grouped = _argsort(_label_major(keys, codes, n_codes), tiebreak=keys)
    counts, sorted_codes, rank = _stratification(codes, n_codes)
    position = (rank + phase[sorted_codes]) / counts[sorted_codes]  # in [0, 1)
    n = len(keys)
    if take is not None and take < n:
        quota = _largest_remainder(take, counts, phase)
        chosen = np.flatnonzero(rank < quota[sorted_codes])
        grouped, position = grouped[chosen], position[chosen]
    return grouped[_argsort((position * 2.0**52).astype(np.uint64))]


def _largest_remainder(total: int, counts: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """Split ``total`` across labels in proportion to ``counts`` (Hamilton's method)."""
    n = int(counts.sum())
    share = total * counts.astype(np.int64)
    quota, remainder = share // n, share % n
    short = total - int(quota.sum())
    if short:
        quota[np.lexsort((tiebreak[: len(counts)], -remainder))[:short]] += 1
    return quota


def _stratified_order_2d(
    keys: np.ndarray, codes: np.ndarray, n_codes: int, phase: np.ndarray
) -> np.ndarray:
    """:func:`_stratified_order` for every pass at once (rows of ``keys``)."""
    grouped = np.argsort(_label_major(keys, codes[None, :], n_codes), axis=1, kind="stable")
    counts, sorted_codes, rank = _stratification(codes, n_codes)
    position = (rank[None, :] + phase[:, sorted_codes]) / counts[sorted_codes][None, :]
    return np.take_along_axis(grouped, np.argsort(position, axis=1, kind="stable"), axis=1)


def _argsort(keys: np.ndarray, tiebreak: np.ndarray | None = None) -> np.ndarray:
    """Argsort of uint64 keys through a value sort (SIMD, ~10x numpy's argsort).

    Each key's top bits are packed with its row index and the packed values are
    sorted; runs that tie on the kept bits are re-sorted by the full key (then
    ``tiebreak``), so the order never depends on where rows sit in the input
    unless their keys are fully equal.
    """
    mask = _index_mask(len(keys))
    packed = keys & ~mask
    packed |= np.arange(len(keys), dtype=np.uint64)
    return _sorted_rows(packed, mask, lambda rows: keys[rows], tiebreak)


def _shuffle(fp: np.ndarray, pass_key: np.uint64) -> np.ndarray:
    """``_argsort(_mix(fp ^ pass_key))``, with the keys made and packed block by block.

    Working in cache-sized blocks keeps a dozen passes over the keys out of main
    memory; the full keys are recomputed only for the rare rows that tie.
    """
    n = len(fp)
    mask = _index_mask(n)
    packed = np.empty(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for block in _blocks(n):  # a loop over cache-sized blocks, not over rows
            keys = np.bitwise_xor(fp[block], pass_key, out=packed[block])
            _mix(keys, inplace=True)
            keys &= ~mask
            keys |= np.arange(block.start, block.stop, dtype=np.uint64)

    def full_keys(rows: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            return _mix(fp[rows] ^ pass_key, inplace=True)

    return _sorted_rows(packed, mask, full_keys)


def _sorted_rows(
    packed: np.ndarray,
    mask: np.uint64,
    full_keys: Any,
    tiebreak: np.ndarray | None = None,
) -> np.ndarray:
    """Sort ``packed`` (key bits | row) in place and return the rows, ties fully resolved."""
    packed.sort()
    bits = _U64(int(mask).bit_length())
    ties = []
    for block in _blocks(len(packed) - 1):  # neighbours equal on the key bits, block by block
        high = packed[block.start : block.stop + 1] >> bits
        ties.append(np.flatnonzero(high[1:] == high[:-1]) + block.start)
    packed &= mask
    order = packed.view(np.int64)  # the rows, in place: no second large array
    tied_at = np.concatenate(ties) if ties else np.empty(0, dtype=np.int64)
    if len(tied_at):
        pos = np.union1d(tied_at, tied_at + 1)  # every row of a tied run
        starts = np.ones(len(pos), dtype=bool)
        starts[1:] = ~np.isin(pos[1:] - 1, tied_at)  # a run starts where no tie links back
        run = np.cumsum(starts)
        sub = order[pos]
        extra = () if tiebreak is None else (tiebreak[sub],)
        order[pos] = sub[np.lexsort((*extra, full_keys(sub), run))]
    return order


def _index_mask(n: int) -> np.uint64:
    """The low bits that hold a row index below ``n`` in a packed sort value."""
    return _U64((1 << max(1, int(n - 1).bit_length())) - 1)


def _blocks(n: int) -> Iterator[slice]:
    """Cache-sized row ranges covering ``range(n)``."""
    return (slice(start, min(start + _BLOCK, n)) for start in range(0, n, _BLOCK))


def _mix(z: np.ndarray, *, inplace: bool = False) -> np.ndarray:
    """SplitMix64's finaliser, vectorised: a strong 64-bit bijection.

    Returns a new array unless ``inplace`` (then ``z`` is overwritten and returned).
    """
    if inplace:
        z += _GOLDEN
    else:
        z = z + _GOLDEN
    t = z >> _U64(30)
    z ^= t
    z *= _MUL1
    np.right_shift(z, _U64(27), out=t)
    z ^= t
    z *= _MUL2
    np.right_shift(z, _U64(31), out=t)
    z ^= t
    return z


def id_fingerprints(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit fingerprint of each id's bytes (row order does not matter)."""
    matrix, lengths = _id_bytes(ids)
    return _fingerprint_bytes(ids, matrix, lengths)


def _fingerprint_bytes(ids: Any, matrix: np.ndarray | None, lengths: Any) -> np.ndarray:
    with np.errstate(over="ignore"):
        if matrix is None:  # very long ids: fingerprint their rank among all ids
            rank = np.empty(len(ids), dtype=np.uint64)
            rank[pc.sort_indices(ids).to_numpy()] = np.arange(len(ids), dtype=np.uint64)
            return _mix(rank ^ _U64(0xA5A5))
        words = matrix.view(np.uint64)
        lengths = np.asarray(lengths, dtype=np.int64)
        acc = np.empty(len(words), dtype=np.uint64)
        acc[:] = lengths.astype(np.uint64) * _LANE[3]
        if lengths.ndim == 0:  # one length (content ids): every lane counts
            tmp = np.empty(_BLOCK, dtype=np.uint64)
            for block in _blocks(len(acc)):  # cache-sized blocks, a few 8-byte lanes each
                part, scratch = acc[block], tmp[: block.stop - block.start]
                for j in range(words.shape[1]):
                    part ^= words[block, j]
                    part *= _LANE[j % 4]
                    np.right_shift(part, _U64(29), out=scratch)
                    part ^= scratch
                _mix(part, inplace=True)
            return acc
        for j in range(words.shape[1]):
            step = (acc ^ words[:, j]) * _LANE[j % 4]
            step ^= step >> _U64(29)
            # lanes past an id's end leave it alone, so padding never changes a fingerprint
            acc = np.where(lengths > 8 * j, step, acc)
        return _mix(acc, inplace=True)


def row_fingerprints(
    rows: pa.Table,
    id_fp: np.ndarray | None = None,
    *,
    synthetic: np.ndarray | None = None,
    inplace: bool = False,
) -> np.ndarray:
    """Fingerprints of (id, origin, generation): one name per distinct occurrence.

    ``synthetic`` (a bool per row) saves re-reading the origin column when known;
    ``inplace`` folds origin and generation into ``id_fp`` itself.
    """
    fp = id_fingerprints(rows["id"]) if id_fp is None else id_fp
    if id_fp is not None and not inplace:
        fp = id_fp.copy()
    if synthetic is None:
        synthetic = pc.equal(rows["origin"], Origin.SYNTHETIC.value).to_numpy(zero_copy_only=False)
    generation = np.asarray(rows["generation"].to_numpy())
    if len(generation) == 0:
        return fp
    low = int(generation.min())
    span = int(generation.max()) - low + 1
    with np.errstate(over="ignore"):
        if span <= 1 << 16:  # few generations: mix each (generation, origin) pair once
            values = np.arange(low, low + span, dtype=np.int64).astype(np.uint64)
            table = np.concatenate([_mix(values * _LANE[1]), _mix(values * _LANE[1] + _LANE[2])])
            for block in _blocks(len(fp)):  # cache-sized blocks, not rows
                index = generation[block].astype(np.int64)
                index -= low
                np.add(index, span, out=index, where=synthetic[block])
                fp[block] ^= np.take(table, index)
            return fp
        for block in _blocks(len(fp)):
            term = generation[block].astype(np.int64).astype(np.uint64) * _LANE[1]
            term += synthetic[block].astype(np.uint64) * _LANE[2]
            fp[block] ^= _mix(term, inplace=True)
        return fp


def row_keys(rows: pa.Table, *, seed: int, salt: int) -> np.ndarray:
    """Seeded sort keys for rows: sorting by them is a shuffle independent of row order."""
    with np.errstate(over="ignore"):
        return _mix(row_fingerprints(rows) ^ _mix(np.array([seed * 0x10001 + salt], np.uint64)))


def _id_bytes(ids: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray | None, Any]:
    """Ids as one zero-padded (n, 8k) byte matrix and their lengths (None when too long)."""
    chunks = ids.chunks if isinstance(ids, pa.ChunkedArray) else [ids]
    parts = [_chunk_bytes(c) for c in chunks if len(c)]
    if not parts:
        return np.zeros((0, 8), np.uint8), 0
    width = max(m.shape[1] if m is not None else _MAX_PADDED_ID + 1 for m, _ in parts)
    if width > _MAX_PADDED_ID:
        return None, None
    matrices = [
        m if m.shape[1] == width else np.pad(m, ((0, 0), (0, width - m.shape[1]))) for m, _ in parts
    ]
    lengths = [np.broadcast_to(np.asarray(n_, np.int64), (len(m),)) for (m, n_) in parts]
    if len(parts) == 1:
        return matrices[0], parts[0][1]
    return np.concatenate(matrices), np.concatenate(lengths)


def _chunk_bytes(arr: pa.Array) -> tuple[np.ndarray | None, Any]:
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pc.cast(arr, pa.string())
    n = len(arr)
    off_type = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], off_type)[arr.offset : arr.offset + n + 1]
    data = arr.buffers()[2]
    raw = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    width = int(lengths.max())
    if width > _MAX_PADDED_ID:
        return None, None
    padded = max(8, -(-width // 8) * 8)
    start = int(offsets[0])
    if int(lengths.min()) == width == padded:
        return raw[start : start + n * width].reshape(n, width), width
    matrix = np.zeros((n, padded), np.uint8)
    cols = np.arange(padded)
    mask = cols[None, :] < lengths[:, None]
    matrix[mask] = raw[(offsets[:-1, None] + cols[None, :])[mask]]
    return matrix, lengths


def _label_codes(
    labels: pa.ChunkedArray, keep: np.ndarray | None = None
) -> tuple[np.ndarray | None, int, pa.Array | None]:
    """Integer label codes in sorted-label order (nulls are one more label, last).

    Only the labels of the ``keep`` rows (default: all) count; other rows get code 0.
    """
    if labels.null_count == len(labels):
        return None, 1, None
    encoded = pc.dictionary_encode(labels.combine_chunks(), null_encoding="encode")
    indices = encoded.indices.to_numpy()
    dictionary = encoded.dictionary.cast(pa.string())
    present = np.arange(len(dictionary))
    if keep is not None:
        present = np.flatnonzero(np.bincount(indices[keep], minlength=len(dictionary)))
        dictionary = dictionary.take(pa.array(present))
    if dictionary.null_count == len(dictionary):
        return None, 1, None
    order = pc.array_sort_indices(dictionary, null_placement="at_end").to_numpy()
    rank = np.zeros(len(encoded.dictionary), dtype=np.int32)
    rank[present[order]] = np.arange(len(dictionary), dtype=np.int32)
    return np.take(rank, indices), len(dictionary), dictionary.take(order)


def _both(first: Callable[[], Any], second: Callable[[], Any], *, parallel: bool) -> tuple:
    """Run two independent steps; on two threads when ``parallel``.

    The steps are numpy and Arrow kernels that release the GIL, and each writes
    only arrays of its own, so the result never depends on the threads.
    """
    if not parallel:
        return first(), second()
    with ThreadPoolExecutor(max_workers=1) as executor:
        later = executor.submit(second)
        return first(), later.result()
