"""Duplicate grouping: which earlier record a record copies, decided once for every engine.

The in-process gate (slice by slice, :mod:`tailguard.gate.scan`) and the Ray gate
(one hash partition at a time, :mod:`tailguard.gate.distributed`) both call these
functions, so "the first reference copy", "the first earlier candidate", "the first
``cap`` references of an LSH bucket" and "the best near match" mean the same record
whichever engine ran.

- Exact duplicates: :func:`first_copies` groups rows by key.
- Near duplicates: records that share an LSH bucket (one band key) are candidate pairs
  (:func:`reference_pairs`, :func:`earlier_pairs`, :func:`index_pairs`, all bands at
  once: :func:`candidate_pairs`); pairs confirmed by their estimated Jaccard give each
  query its best match (:func:`best_pairs`, :func:`best_matches`).
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
    gid, gstart = _groups(key[order])
    n_ref = np.add.reduceat((side[order] == REF).astype(np.int64), gstart) if len(key) else gstart
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


def candidate_pairs(
    query_keys: np.ndarray,
    ref_keys: np.ndarray | None,
    *,
    cap: int = 32,
    query_valid: np.ndarray | None = None,
    ref_valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (query index, reference index) sharing at least one band key, each once.

    ``query_keys`` and ``ref_keys`` are band keys of shape ``(bands, n)``. With
    ``ref_keys=None`` the queries are matched against themselves, each record only
    with *earlier* ones (:func:`earlier_pairs`), else with the references
    (:func:`reference_pairs`). Per bucket at most ``cap`` references are paired, so a
    bucket of thousands of identical texts cannot explode into millions of pairs.
    """
    qs, rs = [], []
    for band in range(query_keys.shape[0]):
        if ref_keys is None:
            q, r = earlier_pairs(query_keys[band], query_valid, cap)
        else:
            q, r = reference_pairs(query_keys[band], ref_keys[band], query_valid, ref_valid, cap)
        qs.append(q)
        rs.append(r)
    q = np.concatenate(qs) if qs else np.zeros(0, np.int64)
    r = np.concatenate(rs) if rs else np.zeros(0, np.int64)
    n_ref = (
        len(ref_valid)
        if ref_valid is not None
        else (ref_keys.shape[1] if ref_keys is not None else query_keys.shape[1])
    )
    code = np.unique(q * max(n_ref, 1) + r)
    return code // max(n_ref, 1), code % max(n_ref, 1)


def reference_pairs(
    kq: np.ndarray,
    kr: np.ndarray,
    q_valid: np.ndarray | None,
    r_valid: np.ndarray | None,
    cap: int,
) -> tuple[np.ndarray, np.ndarray]:
    """One band's pairs of queries and references in the same bucket: each query with
    the bucket's first ``cap`` references (by index; ``*_valid``: rows taken part)."""
    iq = np.arange(len(kq)) if q_valid is None else np.flatnonzero(q_valid)
    ir = np.arange(len(kr)) if r_valid is None else np.flatnonzero(r_valid)
    keys = np.concatenate([kr[ir], kq[iq]])
    is_q = np.concatenate([np.zeros(len(ir), bool), np.ones(len(iq), bool)])
    order = np.argsort(keys, kind="stable")  # references first within a key: they come first
    gid, gstart = _groups(keys[order])
    n_ref = np.add.reduceat((~is_q[order]).astype(np.int64), gstart) if len(gstart) else gstart
    qpos = np.flatnonzero(is_q[order])
    m = np.minimum(n_ref[gid[qpos]], cap)
    rep, within = _expand(qpos, m)
    refpos = gstart[gid[rep]] + within
    src = np.concatenate([ir, iq])
    return src[order[rep]], src[order[refpos]]


def earlier_pairs(
    k: np.ndarray, valid: np.ndarray | None, cap: int
) -> tuple[np.ndarray, np.ndarray]:
    """One band's pairs within one set of records: each record with the first ``cap``
    earlier records (by index) of its bucket."""
    idx = np.arange(len(k)) if valid is None else np.flatnonzero(valid)
    keys = k[idx]
    order = np.argsort(keys, kind="stable")
    gid, gstart = _groups(keys[order])
    pos = np.arange(len(order))
    m = np.minimum(pos - gstart[gid], cap)
    rep, within = _expand(pos, m)
    earlier = gstart[gid[rep]] + within
    return idx[order[rep]], idx[order[earlier]]


def index_pairs(
    kq: np.ndarray,
    q_valid: np.ndarray | None,
    sorted_keys: np.ndarray,
    sorted_idx: np.ndarray,
    cap: int,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`reference_pairs` from the references' keys sorted once (stably, so equal
    keys keep the lower index first) with their indices: a binary search per query."""
    iq = np.arange(len(kq)) if q_valid is None else np.flatnonzero(q_valid)
    k = kq[iq]
    lo = np.searchsorted(sorted_keys, k, side="left")
    hi = np.searchsorted(sorted_keys, k, side="right")
    rep, within = _expand(np.arange(len(iq)), np.minimum(hi - lo, cap))
    return iq[rep], sorted_idx[lo[rep] + within]


def _expand(pos: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Repeat each position ``counts`` times, with the 0..count-1 offset of each repeat."""
    rep = np.repeat(pos, counts)
    within = np.arange(len(rep)) - np.repeat(np.cumsum(counts) - counts, counts)
    return rep, within


def _groups(sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's group number and each group's first row, for keys in sorted order."""
    new = np.empty(len(sorted_keys), bool)
    if len(new):
        new[0] = True
        new[1:] = sorted_keys[1:] != sorted_keys[:-1]
    gid = np.cumsum(new) - 1
    return gid, np.flatnonzero(new)
