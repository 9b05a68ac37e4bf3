"""Exact chunked k-NN radii and ball tests, in bounded memory.

The expensive part of PRDC is comparing every pair of points. Here each chunk of
rows is compared with all points through one float32 matrix product (the
squared norms ride along as two extra coordinates, so the product *is* the
squared distance). A float32 product can be off by a bounded amount; decisions
that the bound cannot settle (a distance within the margin of a radius) are
recomputed exactly in float64 from the original points. The result is the exact
answer, rounded the way ``prdc``/scikit-learn round it: squared distances in
float64, cast to float32 and square-rooted in float32 when both inputs are
float32, plain float64 otherwise. Memory is O(chunk x n), never n x n.

Chunks are independent, so ``threads`` workers each take whole chunks with a
single-threaded BLAS: the selection and exact re-checks between products, which
numpy runs on one core, then overlap with another chunk's product.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from threadpoolctl import threadpool_limits

T = TypeVar("T")

_U32 = 2.0**-24
#: Elements of one chunk's distance block (float32): 2**23 is 32 MiB.
CHUNK_ELEMENTS = 2**23
#: Exact pairs recomputed at once (each costs d float64 values).
PAIR_BATCH = 2**15


@dataclass
class Side:
    """One point set prepared for chunked distance work."""

    points: np.ndarray  # the caller's array (float32 or float64), for exact distances
    lifted: np.ndarray  # float32 [x - mu, |x - mu|^2, 1]  (row side)
    lifted_t: np.ndarray  # float32 [-2 (y - mu), 1, |y - mu|^2]^T  (column side)
    sq_norm: np.ndarray  # float64 |x - mu|^2 of the float32 centred points


def prepare(points: np.ndarray, mu: np.ndarray) -> Side:
    centred = (points - mu).astype(np.float32)
    sq = np.einsum("ij,ij->i", centred, centred, dtype=np.float64)
    n = len(points)
    ones = np.ones((n, 1), np.float32)
    sq32 = sq.astype(np.float32)[:, None]
    lifted = np.hstack([centred, sq32, ones])
    lifted_t = np.ascontiguousarray(np.hstack([-2.0 * centred, ones, sq32]).T)
    return Side(points, lifted, lifted_t, sq)


def error_scale(dim: int) -> float:
    """c such that |approx d^2 - exact d^2| <= c * (|x|^2 + |y|^2) for the lifted product."""
    m = dim + 2
    gamma = m * _U32 / (1 - m * _U32)
    return 1.5 * (3 * gamma + 12 * _U32)


class Rounding:
    """Turns exact float64 squared distances into distances rounded like scikit-learn."""

    def __init__(self, float32: bool) -> None:
        self.dtype = np.float32 if float32 else np.float64

    def __call__(self, d2: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(d2, 0).astype(self.dtype))

    def slack(self, r2: np.ndarray) -> np.ndarray:
        """Extra margin so rounding near a threshold is always re-checked exactly."""
        eps = 8 * _U32 if self.dtype == np.float32 else 1e-12
        return eps * r2 + 1e-30


def exact_sq_dist(a: np.ndarray, b: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Squared distances of the given pairs, from the original points in float64."""
    out = np.empty(rows.size, np.float64)
    for s in range(0, rows.size, PAIR_BATCH):
        diff = a[rows[s : s + PAIR_BATCH]].astype(np.float64) - b[cols[s : s + PAIR_BATCH]]
        out[s : s + PAIR_BATCH] = np.einsum("ij,ij->i", diff, diff)
    return out


def chunk_rows(n_cols: int) -> int:
    return int(max(8, min(4096, CHUNK_ELEMENTS // max(n_cols, 1))))


def default_threads() -> int:
    """Cores this process may use (chunk workers)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def map_chunks(
    n: int, step: int, work: Callable[[int, int], T], threads: int
) -> Iterator[tuple[int, int, T]]:
    """``(start, stop, work(start, stop))`` for row chunks, ``threads`` chunks at a time."""
    bounds = [(s, min(n, s + step)) for s in range(0, n, step)]
    if threads <= 1 or len(bounds) == 1:
        for s, e in bounds:
            yield s, e, work(s, e)
        return
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(threads) as pool:
        # at most 2 x threads chunks in flight, so memory stays O(threads x chunk x n)
        pending: list = []
        for s, e in bounds:
            pending.append((s, e, pool.submit(work, s, e)))
            if len(pending) >= 2 * threads:
                s0, e0, fut = pending.pop(0)
                yield s0, e0, fut.result()
        for s0, e0, fut in pending:
            yield s0, e0, fut.result()


def kth_radius(side: Side, k: int, rnd: Rounding, c: float, *, threads: int = 1) -> np.ndarray:
    """Distance from each point to its k-th nearest *other* point (the (k+1)-th incl. itself)."""
    n = len(side.points)
    radii = np.empty(n, rnd.dtype)
    max_sq = side.sq_norm.max()

    def work(s: int, e: int) -> np.ndarray:
        d2 = side.lifted[s:e] @ side.lifted_t
        kth = np.partition(d2, k, axis=1)[:, k].astype(np.float64)
        margin = c * (side.sq_norm[s:e] + max_sq)
        bound = (kth + 2 * margin + rnd.slack(np.abs(kth) + margin)).astype(np.float32)
        rows, cols = _positions(d2 <= bound[:, None])
        del d2
        exact = rnd(exact_sq_dist(side.points, side.points, rows + s, cols))
        exact[rows + s == cols] = 0  # a point is at distance 0 from itself
        order = np.lexsort((exact, rows))
        starts = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=e - s))[:-1]])
        return exact[order][starts + k]

    for s, e, part in map_chunks(n, chunk_rows(n), work, threads):
        radii[s:e] = part
    return radii


def ball_tests(
    real: Side,
    fake: Side,
    real_radii: np.ndarray,
    fake_radii: np.ndarray,
    rnd: Rounding,
    c: float,
    *,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For PRDC: per fake, how many real balls hold it; per real, whether any fake
    lies in its ball (coverage) and whether it lies in any fake's ball (recall)."""
    n_real, n_fake = len(real.points), len(fake.points)
    in_real_balls = np.zeros(n_fake, np.int64)
    covered = np.zeros(n_real, bool)
    recalled = np.zeros(n_real, bool)
    r2 = real_radii.astype(np.float64) ** 2
    f2 = fake_radii.astype(np.float64) ** 2
    max_real, max_fake = real.sq_norm.max(), fake.sq_norm.max()
    f_margin = c * (max_real + fake.sq_norm)
    f_margin = f_margin + rnd.slack(f2 + f_margin)
    f_lo = (f2 - f_margin).astype(np.float32)[None, :]
    f_hi = (f2 + f_margin).astype(np.float32)[None, :]

    def work(s: int, e: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d2 = real.lifted[s:e] @ fake.lifted_t
        margin = c * (real.sq_norm[s:e] + max_fake)
        margin = margin + rnd.slack(r2[s:e] + margin)
        lo = (r2[s:e] - margin).astype(np.float32)[:, None]
        hi = (r2[s:e] + margin).astype(np.float32)[:, None]
        inside = d2 < lo
        _settle(inside, d2 <= hi, real, fake, s, real_radii, rnd, by_row=True)
        counts = np.count_nonzero(inside, axis=0)
        any_in = inside.any(axis=1)
        inside = d2 < f_lo
        _settle(inside, d2 <= f_hi, real, fake, s, fake_radii, rnd, by_row=False)
        return counts, any_in, inside.any(axis=1)

    for s, e, (counts, any_in, in_fake) in map_chunks(n_real, chunk_rows(n_fake), work, threads):
        in_real_balls += counts
        covered[s:e] = any_in
        recalled[s:e] = in_fake
    return in_real_balls, covered, recalled


def _settle(
    inside: np.ndarray,
    maybe: np.ndarray,
    real: Side,
    fake: Side,
    offset: int,
    radii: np.ndarray,
    rnd: Rounding,
    *,
    by_row: bool,
) -> None:
    """Decide exactly the pairs whose approximate distance is within the margin."""
    rows, cols = _positions(maybe ^ inside)
    if rows.size == 0:
        return
    d = rnd(exact_sq_dist(real.points, fake.points, rows + offset, cols))
    inside[rows, cols] = d < (radii[rows + offset] if by_row else radii[cols])


def _positions(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of True entries; flatnonzero on the raveled mask is far faster than nonzero."""
    flat = np.flatnonzero(mask)
    return np.divmod(flat, mask.shape[1])
