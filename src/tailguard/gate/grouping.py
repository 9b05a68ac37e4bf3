"""Duplicate grouping: which earlier record a record copies, decided once for every engine.

The in-process gate (slice by slice, :mod:`tailguard.gate.dedup`) and the Ray gate
(one hash partition at a time, :mod:`tailguard.gate.distributed`) both call these two
functions, so "the first reference copy", "the first earlier candidate" and "the best
near match" mean the same record whichever engine ran.
"""

from __future__ import annotations

import numpy as np

#: ``side`` of a reference row and of a candidate row.
REF, CAND = 0, 1


def first_copies(
    key: np.ndarray, side: np.ndarray, pos: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact-duplicate groups of reference and candidate rows sharing a ``key``.

    Returns, for each candidate row (in row order): its row index, the row of the
    first reference copy (lowest ``pos``; -1 if none) and the row of the first
    candidate of its group (itself when it is the first).
    """
    order = np.lexsort((pos, side, key))  # per key: reference rows first, each by pos
    k = key[order]
    new = np.ones(len(k), bool)
    new[1:] = k[1:] != k[:-1]
    gid = np.cumsum(new) - 1
    gstart = np.flatnonzero(new)
    n_ref = np.add.reduceat((side[order] == REF).astype(np.int64), gstart) if len(k) else gstart
    cand = np.flatnonzero(side[order] == CAND)
    g = gid[cand]
    ref_first = np.where(n_ref[g] > 0, order[gstart[g]], -1)
    cand_first = order[gstart[g] + n_ref[g]]
    rows = order[cand]
    back = np.argsort(rows)
    return rows[back], ref_first[back], cand_first[back]


def best_pairs(q: np.ndarray, r: np.ndarray, s: np.ndarray, threshold: float) -> np.ndarray:
    """The index of each query's best confirmed pair: the highest estimated Jaccard
    ``s`` at or above ``threshold``, the lowest ``r`` among equals."""
    sel = np.flatnonzero(s >= threshold)
    sel = sel[np.lexsort((r[sel], -s[sel], q[sel]))]
    first = np.ones(len(sel), bool)
    first[1:] = q[sel][1:] != q[sel][:-1]
    return sel[first]


def best_matches(
    q: np.ndarray, r: np.ndarray, s: np.ndarray, threshold: float, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`best_pairs` per query ``0`` to ``n`` - 1: ``(match, sim)``, the matched
    ``r`` (-1 if none) and its similarity (NaN if none)."""
    match = np.full(n, -1, np.int64)
    sim = np.full(n, np.nan)
    best = best_pairs(q, r, s, threshold)
    match[q[best]] = r[best]
    sim[q[best]] = s[best]
    return match, sim
