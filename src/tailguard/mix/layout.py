"""Quota and layout: how many human slots each batch holds, and where they sit.

With an anchored policy, batch ``b`` holds ``H(b+1) - H(b)`` human slots where
``H(k) = round(f * batch_size * k)`` (half up, in exact integer arithmetic), so the
epoch's share is exact; human slots are spread evenly inside each batch.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

from tailguard.errors import ConfigError
from tailguard.mix.policies import Anchored, Selection
from tailguard.mix.streams import _both, _cycled_order

_FRACTION_DENOMINATOR = 1_000_000


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
    f, n_batches, quota, info = anchored_counts(
        policy, len(human_rows), len(synthetic_rows), batch_size, epochs
    )
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


def synthetic_target(real_fraction: float, n_human: int) -> int:
    """Synthetic slots that put ``n_human`` reservoir slots at exactly ``real_fraction``:
    ``n_human x (1 - f) / f`` (rounded down), what a whole-reservoir round admits."""
    frac = as_fraction(real_fraction)
    return n_human * (frac.denominator - frac.numerator) // frac.numerator


def human_slots(real_fraction: float, volume: int) -> int:
    """Human examples of a round that trains on ``volume`` examples at ``real_fraction``:
    ``ceil(f x volume)``, so the share is never below what was asked (0 at ``f = 0``,
    the whole volume at ``f = 1``)."""
    return math.ceil(real_fraction * volume)


def volume_slots(policy: Anchored, volume: int, n_reservoir: int) -> tuple[int, int]:
    """``(human, synthetic)`` examples of a round that trains on ``volume`` examples
    under ``policy``: :func:`human_slots` of its share, at least the reservoir's
    ``n_reservoir`` training examples when the whole reservoir is re-injected
    (``reservoir="whole"``, and ``fill_gaps``, which keeps every human row; at its
    natural share, no ``real_fraction``, the reservoir is its human side); synthetic
    examples fill the rest (none if nothing is left)."""
    f = policy.real_fraction
    human = n_reservoir if f is None else human_slots(f, volume)
    if getattr(policy, "reservoir", "whole") == "whole":
        human = max(n_reservoir, human)
    return human, max(0, volume - human)


def anchored_counts(
    policy: Anchored, n_human_rows: int, n_synthetic_rows: int, batch_size: int, epochs: int
) -> tuple[float, int, np.ndarray, dict[str, Any]]:
    """The share an anchored plan realises, its batches and human slots per batch.

    Pure arithmetic on counts, so the dial can say what a share will realise before
    the round is planned. With the whole reservoir re-injected, the share sets how
    much synthetic data is admitted (:func:`synthetic_target`, a seeded subsample
    when more passed the gate); with less, the round trains on a higher share and
    ``info`` says how many more synthetic examples the share needs.
    """
    f, n_batches, n_synthetic, info = first_batches(
        policy, n_human_rows, n_synthetic_rows, batch_size, epochs
    )
    quota = human_quota(f, batch_size, n_batches)
    if policy.reservoir == "whole" and f < 1.0 and int(quota.sum()) < epochs * n_human_rows:
        n_batches, quota = _whole_reservoir_quota(
            f,
            batch_size,
            n_batches,
            quota,
            epochs * n_human_rows,
            n_synthetic,
            subsample=policy.synthetic == "subsample",
        )
        info["reservoir_whole"] = True
    return f, n_batches, quota, info


def first_batches(
    policy: Anchored, n_human_rows: int, n_synthetic_rows: int, batch_size: int, epochs: int
) -> tuple[float, int, int, dict[str, Any]]:
    """The share, batches and synthetic slots an anchored plan starts from, before any
    array is allocated (so a plan's size can be refused from counts alone)."""
    f = policy.real_fraction
    info: dict[str, Any] = {}
    n_synthetic = epochs * n_synthetic_rows
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
        if policy.reservoir == "whole":
            target = synthetic_target(f, epochs * n_human_rows)
            info["synthetic_available"] = n_synthetic
            info["synthetic_needed"] = max(0, target - n_synthetic)
            n_synthetic = max(1, min(n_synthetic, target))
            info["synthetic_admitted"] = n_synthetic
        n_batches = _batches_to_hold(f, batch_size, n_synthetic)
    return f, n_batches, n_synthetic, info


def _whole_reservoir_quota(
    f: float,
    batch_size: int,
    n_batches: int,
    quota: np.ndarray,
    n_human: int,
    n_synthetic: int,
    *,
    subsample: bool,
) -> tuple[int, np.ndarray]:
    """Batches and human slots per batch that hold the whole reservoir at least once.

    The synthetic examples (``n_synthetic`` slots; under ``subsample`` the share
    plan's synthetic slots) are spread over the batches in proportion to each
    batch's room ``batch_size - quota_b`` (cumulative rounding), so no batch
    falls below its share quota and the rest of every batch is human.
    """
    if subsample:
        n_synthetic = n_batches * batch_size - int(quota.sum())
    n_batches = max(n_batches, math.ceil((n_human + n_synthetic) / batch_size))
    quota = human_quota(f, batch_size, n_batches)
    room = batch_size - quota
    cumulative = np.concatenate([[0], np.cumsum(room)]).astype(np.int64)
    total = int(cumulative[-1])
    synthetic = np.diff((2 * n_synthetic * cumulative + total) // (2 * total))
    return n_batches, batch_size - synthetic


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
