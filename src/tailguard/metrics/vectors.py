"""Metrics on numeric records: rows of JSON arrays (``"[0.1, -2.0]"``) compared as vectors.

The lab's numeric models (Gaussian, mixture, KDE, regression) write such records.
Every function takes ``(sample, reference)``: Arrow/list texts of JSON arrays or
float matrices. The tail and Wasserstein metrics read the last coordinate (the
label, for regression).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tailguard.errors import InputError
from tailguard.metrics.scalars import tail_quantile_ratios, wasserstein1

#: The tail quantile the tail-width metrics compare.
TAIL_Q = 0.01


def decode_vectors(content: pa.Array | pa.ChunkedArray, *, dim: int | None = None) -> np.ndarray:
    """JSON array texts (all of one length) back to an ``(n, d)`` float matrix."""
    if len(content) == 0:
        return np.empty((0, dim or 0))
    inner = pc.utf8_trim(content, "[] \n")
    parts = pc.split_pattern_regex(inner, r"\s*,\s*")
    lengths = pc.list_value_length(parts).to_numpy(zero_copy_only=False)
    d = int(lengths[0])
    if (lengths != d).any() or (dim is not None and d != dim):
        want = dim if dim is not None else d
        bad = int(np.flatnonzero(lengths != want)[0]) if (lengths != want).any() else 0
        raise InputError(
            f"numeric records must all be JSON arrays of {want} numbers; row {bad} is not",
            line=bad,
            field="content",
        )
    flat = pc.list_flatten(parts)
    try:
        values = pc.cast(flat, pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid as exc:
        raise InputError(
            f"numeric content is not a JSON array of numbers ({exc})", field="content"
        ) from None
    return values.reshape(len(content), d)


def as_vectors(values: Any, *, dim: int | None = None) -> np.ndarray:
    """A float matrix from a matrix or from JSON array texts (decoded once)."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
        matrix = values.astype(np.float64, copy=False)
        return matrix[:, None] if matrix.ndim == 1 else matrix
    if not isinstance(values, pa.Array | pa.ChunkedArray):
        values = pa.array(values, pa.string())
    return decode_vectors(values, dim=dim)


def _pair(sample: Any, reference: Any) -> tuple[np.ndarray, np.ndarray]:
    r = as_vectors(reference)
    return as_vectors(sample, dim=r.shape[1]), r


def total_variance_ratio(sample: Any, reference: Any) -> float:
    """Total (unbiased) variance of the sample's vectors / the reference's; 1 is no change."""
    s, r = _pair(sample, reference)
    denominator = r.var(axis=0, ddof=1).sum()
    if denominator == 0:
        raise InputError("reference has zero variance: the ratio is undefined")
    return float(s.var(axis=0, ddof=1).sum() / denominator)


def tail_width_lower(sample: Any, reference: Any) -> float:
    """Width of the last coordinate's lower 1% tail / the reference's."""
    s, r = _pair(sample, reference)
    return tail_quantile_ratios(s[:, -1], r[:, -1], q=TAIL_Q)["lower"]


def tail_width_upper(sample: Any, reference: Any) -> float:
    """Width of the last coordinate's upper 1% tail / the reference's."""
    s, r = _pair(sample, reference)
    return tail_quantile_ratios(s[:, -1], r[:, -1], q=TAIL_Q)["upper"]


def last_coordinate_w1(sample: Any, reference: Any) -> float:
    """Wasserstein-1 between the last coordinates of the sample and the reference."""
    s, r = _pair(sample, reference)
    return wasserstein1(s[:, -1], r[:, -1])
