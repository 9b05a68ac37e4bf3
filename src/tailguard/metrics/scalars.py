"""Scalar-distribution metrics: variance ratio, tail widths and Wasserstein-1.

Variance shrinkage is the signature of collapse in one dimension: the tails
thin out while the mean stays put, so these compare spread and tails, not means.
"""

from __future__ import annotations

import numpy as np

from tailguard.errors import InputError
from tailguard.metrics import _checks


def variance_ratio(sample, reference) -> float:  # noqa: ANN001
    """var(sample) / var(reference) (unbiased); 1 is no shrinkage, below 1 is collapse."""
    s = _checks.values(sample, "sample", min_size=2)
    r = _checks.values(reference, "reference", min_size=2)
    vr = r.var(ddof=1)
    if vr == 0:
        raise InputError("reference has zero variance: the ratio is undefined")
    return float(s.var(ddof=1) / vr)


def tail_quantile_ratios(sample, reference, *, q: float = 0.01) -> dict[str, float]:  # noqa: ANN001
    """How wide the sample's tails are relative to the reference's.

    ``lower`` = (median - q-quantile) of the sample / the same for the reference;
    ``upper`` = (1-q quantile - median), likewise. Each is 1 when the tail keeps its
    width and falls toward 0 as it thins. Shift-invariant, so it works for signed data.
    """
    if not (isinstance(q, int | float) and 0 < q < 0.5):
        raise InputError(f"q must be in (0, 0.5), got {q!r}")
    s = _checks.values(sample, "sample")
    r = _checks.values(reference, "reference")
    sq = np.quantile(s, [q, 0.5, 1 - q])
    rq = np.quantile(r, [q, 0.5, 1 - q])
    ref_lower, ref_upper = rq[1] - rq[0], rq[2] - rq[1]
    if ref_lower <= 0 or ref_upper <= 0:
        raise InputError(f"reference has no spread in its {q:g} tails: tail ratios are undefined")
    return {
        "lower": float((sq[1] - sq[0]) / ref_lower),
        "upper": float((sq[2] - sq[1]) / ref_upper),
    }


def wasserstein1(sample, reference) -> float:  # noqa: ANN001
    """Wasserstein-1 (earth mover's) distance between two 1-D empirical distributions.

    The integral of |F_s - F_r| over the merged support, as scipy computes it.
    """
    s = np.sort(_checks.values(sample, "sample"))
    r = np.sort(_checks.values(reference, "reference"))
    grid = np.sort(np.concatenate([s, r]))
    widths = np.diff(grid)
    f_s = np.searchsorted(s, grid[:-1], side="right") / s.size
    f_r = np.searchsorted(r, grid[:-1], side="right") / r.size
    return float(np.sum(np.abs(f_s - f_r) * widths))
