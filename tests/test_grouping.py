"""The duplicate-grouping core both engines call, against plain-Python definitions."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tailguard.gate import grouping

KEYS = st.lists(st.integers(0, 6), max_size=40)


def masks(n: int):  # noqa: ANN201
    return st.one_of(st.none(), st.lists(st.booleans(), min_size=n, max_size=n))


def _valid(mask, n: int) -> list[bool]:  # noqa: ANN001
    return [True] * n if mask is None else list(mask)


def py_reference_pairs(kq, kr, q_valid, r_valid, cap) -> set[tuple[int, int]]:  # noqa: ANN001
    """Each valid query with the first ``cap`` valid references of its bucket, by index."""
    out = set()
    for i, k in enumerate(kq):
        if q_valid[i]:
            same = [j for j, key in enumerate(kr) if key == k and r_valid[j]]
            out |= {(i, j) for j in same[:cap]}
    return out


def py_earlier_pairs(k, valid, cap) -> set[tuple[int, int]]:  # noqa: ANN001
    """Each valid record with the first ``cap`` valid earlier records of its bucket."""
    out = set()
    for i, key in enumerate(k):
        if valid[i]:
            earlier = [j for j in range(i) if k[j] == key and valid[j]]
            out |= {(i, j) for j in earlier[:cap]}
    return out


@settings(max_examples=80, deadline=None)
@given(kq=KEYS, kr=KEYS, cap=st.integers(1, 4), data=st.data())
def test_bucket_pairs_are_the_first_references_of_the_bucket_on_both_paths(kq, kr, cap, data):
    q_mask, r_mask = data.draw(masks(len(kq))), data.draw(masks(len(kr)))
    q_valid = None if q_mask is None else np.array(q_mask, bool)
    r_valid = None if r_mask is None else np.array(r_mask, bool)
    qk, rk = np.array(kq, np.uint64), np.array(kr, np.uint64)
    want = py_reference_pairs(kq, kr, _valid(q_mask, len(kq)), _valid(r_mask, len(kr)), cap)
    i, j = grouping.reference_pairs(qk, rk, q_valid, r_valid, cap)  # the Ray gate's path
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == want and len(i) == len(want)
    idx = np.arange(len(rk)) if r_valid is None else np.flatnonzero(r_valid)
    order = np.argsort(rk[idx], kind="stable")
    i, j = grouping.index_pairs(qk, q_valid, rk[idx][order], idx[order], cap)  # in-process
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == want and len(i) == len(want)


@settings(max_examples=80, deadline=None)
@given(k=KEYS, cap=st.integers(1, 4), data=st.data())
def test_pairs_within_a_set_reach_only_earlier_records(k, cap, data):
    mask = data.draw(masks(len(k)))
    valid = None if mask is None else np.array(mask, bool)
    i, j = grouping.earlier_pairs(np.array(k, np.uint64), valid, cap)
    want = py_earlier_pairs(k, _valid(mask, len(k)), cap)
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == want and len(i) == len(want)


@settings(max_examples=40, deadline=None)
@given(bands=st.lists(KEYS.filter(bool), min_size=1, max_size=4), cap=st.integers(1, 3))
def test_candidate_pairs_join_the_bands_once_each(bands, cap):
    n = min(len(b) for b in bands)
    keys = np.array([b[:n] for b in bands], np.uint64)
    q, r = grouping.candidate_pairs(keys, None, cap=cap)
    want = set().union(*(py_earlier_pairs(list(b[:n]), [True] * n, cap) for b in bands))
    assert sorted(zip(q.tolist(), r.tolist(), strict=True)) == sorted(want)
