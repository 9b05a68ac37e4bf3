"""The batch planner: a pure, seeded function from eligible rows to an ordered manifest.

How a plan is made (all vectorised with numpy, no per-row Python):

1. The policy selects the eligible rows of the pool.
2. Every row gets a 64-bit *fingerprint* from its id bytes, origin and
   generation. Shuffles sort rows by a seeded mix of that fingerprint, so the
   plan depends on the rows, never on their order in the pool, and the same
   inputs and seed give the same digest on any machine.
3. Human slots are drawn from a *cycled* human stream: each pass over the
   human rows is a fresh shuffle, so every reservoir example appears before any
   repeats. Within a pass the order is stratified by label (systematic
   sampling: each label's rows are spread evenly through the pass with a random
   phase), so any prefix of a pass - in particular a round's last, partial
   pass - holds every label within one example of its proportion.
4. With an anchored policy, batch ``b`` holds ``H(b+1) - H(b)`` human slots where
   ``H(k) = round(f * batch_size * k)`` (half up, in exact integer arithmetic):
   exactly ``f * batch_size`` per batch when that is whole, otherwise its floor or
   ceiling with the cumulative share exact (largest remainder across batches).
   Human slots are spread evenly inside each batch, so micro-batches keep the mix.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tailguard.errors import ConfigError, InputError, ReservoirError
from tailguard.mix.policies import Anchored, HumanOnly, Policy, Selection, check_fraction
from tailguard.records import MANIFEST_SLOTS, Manifest, Origin

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
_FRACTION_DENOMINATOR = 1_000_000
#: Pools at least this large are shuffled pass by pass with a packed value sort.
_PACKED_SORT_MIN = 65_536
#: Rows per block when a chain of elementwise steps runs block by block (fits in L2).
_BLOCK = 32_768
#: Pools at least this large run independent steps (e.g. the two shuffles) on two threads.
_PARALLEL_MIN = 1 << 20


def plan(
    pool: pa.Table,
    policy: Policy,
    *,
    round: int,  # noqa: A002 - the ledger's own name
    batch_size: int,
    real_fraction: float | None = None,
    seed: int = 0,
    epochs: int = 1,
    run: str = "main",
    exclude_ids: pa.Array | pa.ChunkedArray | list[str] | None = None,
) -> Manifest:
    """Plan round ``round``'s training batches from ``pool`` under ``policy``.

    ``real_fraction`` overrides an anchored policy's fraction (the Dial's
    output); other policies take none. ``epochs`` passes over the selected
    synthetic (or, without an anchor, all selected) rows are planned in one
    manifest. ``exclude_ids`` (the reservoir's holdout) must not occur in the
    pool at all: if one does, nothing is planned. The result is not written
    anywhere; store it with ``Ledger.write_manifest``.
    """
    batch_size = _positive_int(batch_size, "batch_size")
    epochs = _positive_int(epochs, "epochs")
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(policy, Policy):
        raise ConfigError(f"policy must be a tailguard.mix Policy, got {type(policy).__name__}")
    if real_fraction is not None:
        if not isinstance(policy, Anchored):
            raise ConfigError(
                f"the '{policy.name}' policy takes no real_fraction; use Anchored to set the "
                "human share"
            )
        policy = policy.with_real_fraction(real_fraction)
    if exclude_ids is not None:
        _refuse_excluded(pool, exclude_ids)

    selection = policy.selection(pool, round, seed)
    rows = selection.pool
    # Everything below reads only the selected rows (``selection.keep``) of the pool, so
    # rows a policy leaves out never change a plan.
    id_matrix, id_lengths = _id_bytes(rows["id"])
    parallel = rows.num_rows >= _PARALLEL_MIN

    def fingerprints() -> np.ndarray:
        if id_matrix is None and selection.keep is not None:  # long ids: rank among selected
            id_fp = np.zeros(rows.num_rows, dtype=np.uint64)
            id_fp[selection.keep] = id_fingerprints(rows["id"].filter(pa.array(selection.keep)))
        else:
            id_fp = _fingerprint_bytes(rows["id"], id_matrix, id_lengths)
        return row_fingerprints(rows, id_fp, synthetic=~selection.human, inplace=True)

    fp, (codes, n_labels, label_values) = _both(
        fingerprints, lambda: _label_codes(rows["label"], selection.keep), parallel=parallel
    )
    rng_seed = int(seed)

    if isinstance(policy, Anchored):
        src, human_slot, info = _anchored_layout(
            policy,
            fp,
            _row_positions(selection, human=True),
            _row_positions(selection, human=False),
            codes,
            n_labels,
            batch_size,
            epochs,
            rng_seed,
            parallel=parallel,
        )
    else:
        stratify = isinstance(policy, HumanOnly)
        selected = _row_positions(selection)
        order = _cycled_order(
            _subset(fp, selected),
            epochs * len(selected),
            rng_seed,
            salt=1,
            codes=_subset(codes, selected) if stratify and codes is not None else None,
            n_codes=n_labels,
        )
        src = _positions(selected, order)
        human_slot = np.take(selection.human, src)
        info = {}

    slots = _slots_table(
        rows,
        src,
        batch_size,
        id_matrix,
        id_lengths,
        human_slot,
        codes,
        label_values,
        parallel=parallel,
    )
    n_human = int(np.count_nonzero(human_slot))
    params: dict[str, Any] = {
        **policy.params(),
        "batch_size": batch_size,
        "epochs": epochs,
        **info,
        "real_fraction_used": n_human / len(src) if len(src) else 0.0,
        "human_slots": n_human,
        "synthetic_slots": len(src) - n_human,
    }
    return Manifest(
        round=int(round), slots=slots, policy=policy.name, params=params, seed=rng_seed, run=run
    )


# ---------------------------------------------------------------------------- layout
def as_fraction(real_fraction: float) -> Fraction:
    """The exact ratio a real fraction stands for (nearest with denominator <= 10**6)."""
    return Fraction(real_fraction).limit_denominator(_FRACTION_DENOMINATOR)


def human_quota(real_fraction: float, batch_size: int, n_batches: int) -> np.ndarray:
    """Human slots per batch: cumulative half-up rounding of ``f * batch_size * k``.

    Each entry is the floor or the ceiling of ``f * batch_size`` and the running
    total never strays half a slot from exact, so the epoch's share is exact too.
    Raises :class:`ConfigError` when a batch would hold no human example.
    """
    frac = as_fraction(real_fraction)
    num, den = frac.numerator, frac.denominator
    if num * batch_size < den:
        raise ConfigError(
            f"real_fraction {real_fraction} x batch_size {batch_size} = "
            f"{real_fraction * batch_size:.3g} human examples per batch: the human share "
            "rounds to zero, so some batches would hold no reservoir example; raise "
            "real_fraction or batch_size"
        )
    return np.diff(_cumulative_humans(num, den, batch_size, np.arange(n_batches + 1)))


def _cumulative_humans(num: int, den: int, batch_size: int, k: np.ndarray) -> np.ndarray:
    return (2 * num * batch_size * k.astype(np.int64) + den) // (2 * den)


def _anchored_layout(
    policy: Anchored,
    fp: np.ndarray,
    human_rows: np.ndarray | range,
    synthetic_rows: np.ndarray | range,
    codes: np.ndarray | None,
    n_labels: int,
    batch_size: int,
    epochs: int,
    seed: int,
    *,
    parallel: bool = False,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Source rows and human-slot mask of an anchored plan (full batches only).

    ``human_rows`` and ``synthetic_rows`` are ascending positions in ``fp``.
    """
    f = policy.real_fraction
    info: dict[str, Any] = {}
    n_human_rows, n_synthetic_rows = len(human_rows), len(synthetic_rows)
    if n_synthetic_rows == 0 or as_fraction(f) == 1:
        # Nothing synthetic to anchor (or a pure reservoir): one pass of the reservoir.
        if n_synthetic_rows == 0 and f < 1.0:
            info["fallback"] = "no eligible synthetic examples: reservoir only"
        f = 1.0
        n_batches = math.ceil(epochs * n_human_rows / batch_size)
    elif policy.synthetic == "subsample":
        size = policy.size if policy.size is not None else n_human_rows
        info["size"] = size
        n_batches = max(1, math.ceil(epochs * size / batch_size))
    else:
        n_batches = _batches_to_hold(f, batch_size, epochs * n_synthetic_rows)
    quota = human_quota(f, batch_size, n_batches)
    n_human_slots = int(quota.sum())
    n_slots = n_batches * batch_size

    # Human slots, spread evenly inside each batch: slot floor(j * B / h_b) for j < h_b.
    batch_of_human = np.repeat(np.arange(n_batches, dtype=np.int64), quota)
    first = np.concatenate([[0], np.cumsum(quota)[:-1]])
    j = np.arange(n_human_slots, dtype=np.int64) - first[batch_of_human]
    human_pos = batch_of_human * batch_size + (j * batch_size) // quota[batch_of_human]
    human_slot = np.zeros(n_slots, dtype=bool)
    human_slot[human_pos] = True

    human_order, synthetic_order = _both(
        lambda: _cycled_order(
            _subset(fp, human_rows),
            n_human_slots,
            seed,
            salt=2,
            codes=None if codes is None else _subset(codes, human_rows),
            n_codes=n_labels,
        ),
        lambda: _cycled_order(_subset(fp, synthetic_rows), n_slots - n_human_slots, seed, salt=3),
        parallel=parallel,
    )
    src = np.empty(n_slots, dtype=np.int64)
    src[human_pos] = _positions(human_rows, human_order)
    if n_slots > n_human_slots:
        src[~human_slot] = _positions(synthetic_rows, synthetic_order)
    info["real_fraction"] = policy.real_fraction
    return src, human_slot, info


def _row_positions(selection: Selection, human: bool | None = None) -> np.ndarray | range:
    """Ascending positions of the selected rows; a ``range`` (no array) when contiguous."""
    mask = selection.mask(human)
    if mask is None:
        return range(selection.pool.num_rows)
    count = int(np.count_nonzero(mask))
    first = int(np.argmax(mask)) if count else 0
    if mask[first : first + count].all():
        return range(first, first + count)
    return np.flatnonzero(mask)


def _subset(values: np.ndarray, rows: np.ndarray | range) -> np.ndarray:
    """``values[rows]`` for strictly ascending ``rows``: a view when they are contiguous."""
    if _is_contiguous(rows):
        return values[int(rows[0]) : int(rows[0]) + len(rows)]
    return np.take(values, rows)


def _positions(rows: np.ndarray | range, order: np.ndarray) -> np.ndarray:
    """``rows[order]`` for strictly ascending ``rows``: an offset when they are contiguous."""
    if _is_contiguous(rows):
        if rows[0]:
            order += rows[0]  # ``order`` is a fresh array from a shuffle: offset it in place
        return order
    return np.take(rows, order)


def _is_contiguous(rows: np.ndarray | range) -> bool:
    return len(rows) > 0 and int(rows[-1]) - int(rows[0]) == len(rows) - 1


def _batches_to_hold(f: float, batch_size: int, n_synthetic: int) -> int:
    """The fewest full batches whose synthetic slots hold ``n_synthetic`` examples."""
    frac = as_fraction(f)
    num, den = frac.numerator, frac.denominator
    per_batch = Fraction(batch_size * (den - num), den)
    n = max(1, math.ceil(n_synthetic / per_batch) - 1)

    def room(k: int) -> int:
        return k * batch_size - int(_cumulative_humans(num, den, batch_size, np.array([k]))[0])

    while room(n) < n_synthetic:
        n += 1
    while n > 1 and room(n - 1) >= n_synthetic:
        n -= 1
    return n


# ---------------------------------------------------------------------------- streams
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


# ---------------------------------------------------------------------------- keys
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


# ---------------------------------------------------------------------------- output
def _slots_table(
    rows: pa.Table,
    src: np.ndarray,
    batch_size: int,
    id_matrix: Any,
    id_lengths: Any,
    human_slot: np.ndarray,
    codes: np.ndarray | None,
    label_values: pa.Array | None,
    *,
    parallel: bool = False,
) -> pa.Table:
    """The manifest's slot table: ``rows`` taken at ``src``, in training order."""
    n = len(src)

    def other_columns() -> dict[str, pa.Array]:
        generation = np.asarray(rows["generation"].to_numpy(), dtype=np.int32)
        n_batches = -(-n // batch_size)
        return {
            "batch": pa.array(np.repeat(np.arange(n_batches, dtype=np.int32), batch_size)[:n]),
            "origin": _origin_column(human_slot),
            "generation": pa.array(np.take(generation, src)),
            "label": pa.nulls(n, pa.string())
            if codes is None
            else label_values.take(pa.array(np.take(codes, src))),
        }

    ids, columns = _both(
        lambda: _take_ids(rows["id"], src, id_matrix, id_lengths), other_columns, parallel=parallel
    )
    columns["id"] = ids
    return pa.table({name: columns[name] for name in MANIFEST_SLOTS.names}, schema=MANIFEST_SLOTS)


def _origin_column(human_slot: np.ndarray) -> pa.Array:
    """``"human"`` / ``"synthetic"`` per slot, as a string column.

    Eight slots at a time: their flags index 256 precomputed concatenations, whose
    bytes are exactly the column's data; the offsets are a running sum of lengths.
    """
    n = len(human_slot)
    if n == 0:
        return pa.array([], pa.string())
    lengths = human_slot.astype(np.int32)
    lengths *= len(Origin.HUMAN.value) - len(Origin.SYNTHETIC.value)
    lengths += len(Origin.SYNTHETIC.value)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    data = _origin_patterns().take(pa.array(np.packbits(human_slot)))
    start = int(np.frombuffer(data.buffers()[1], np.int32)[data.offset])
    buffer = data.buffers()[2].slice(start, int(offsets[-1]))
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), buffer])


@functools.cache
def _origin_patterns() -> pa.Array:
    """The 256 strings of eight origins, bit 7 (``np.packbits`` order) first; 1 is human."""
    names = (Origin.SYNTHETIC.value, Origin.HUMAN.value)
    return pa.array(["".join(names[(b >> (7 - i)) & 1] for i in range(8)) for b in range(256)])


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


def _take_ids(column: pa.ChunkedArray, src: np.ndarray, matrix: Any, lengths: Any) -> pa.Array:
    """Take ids; ids of one width (content ids) are gathered as byte rows in numpy."""
    n_lengths = np.asarray(lengths)
    width = int(n_lengths.flat[0]) if matrix is not None and n_lengths.size else 0
    same_width = width > 0 and (n_lengths.ndim == 0 or bool((n_lengths == width).all()))
    if not same_width or len(src) * width >= 2**31:
        return column.combine_chunks().cast(pa.string()).take(pa.array(src, pa.int64()))
    rows = np.ascontiguousarray(matrix[:, :width]) if matrix.shape[1] != width else matrix
    lanes = width // 8 if width % 8 == 0 else 0
    if lanes:  # np.take on whole 8-byte lanes is the fastest row gather numpy has
        data = np.take(rows.view(np.uint64).reshape(len(rows), lanes), src, axis=0)
    else:
        data = np.take(rows.view(np.dtype((np.void, width))).ravel(), src)
    offsets = np.arange(0, (len(src) + 1) * width, width, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), len(src), [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


# ---------------------------------------------------------------------------- checks
def _positive_int(value: Any, name: str) -> int:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _refuse_excluded(pool: pa.Table, exclude_ids: Any) -> None:
    if "id" not in pool.column_names:
        raise InputError("the pool has no 'id' column", field="id")
    excluded = (
        exclude_ids
        if isinstance(exclude_ids, pa.Array | pa.ChunkedArray)
        else pa.array(list(exclude_ids), pa.string())
    )
    if len(excluded) == 0:
        return
    hit = pc.is_in(
        pool["id"],
        value_set=excluded.cast(pa.string())
        if isinstance(excluded, pa.Array)
        else excluded.combine_chunks().cast(pa.string()),
    )
    n = pc.sum(hit).as_py() or 0
    if n:
        example = pool["id"].filter(hit)[0].as_py()
        raise ReservoirError(
            f"the pool holds {n} held-out reservoir id(s) (e.g. {example}): holdout examples "
            "are never trained on; nothing was planned"
        )


__all__ = [
    "check_fraction",
    "human_quota",
    "id_fingerprints",
    "plan",
    "row_fingerprints",
    "row_keys",
]
