"""Embedding-space metrics: PRDC, Vendi, Fréchet distance and unbiased RBF MMD.

These work on feature vectors (rows are points). PRDC and MMD are computed in
row chunks so memory stays O(chunk x n); Vendi uses the d x d covariance when
there are more points than dimensions, so a million points is cheap.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from tailguard.errors import InputError
from tailguard.metrics import _checks, _knn


def prdc(sample, reference, k: int = 5, *, threads: int | None = None) -> dict[str, float]:  # noqa: ANN001
    """Precision, recall, density and coverage (Naeem et al. 2020), as ``prdc`` computes them.

    ``prdc(sample, reference)`` is ``prdc.compute_prdc(real=reference, fake=sample)``.

    The k-th nearest neighbour excludes the point itself, ball membership is
    strict (``<``), and distances are rounded exactly as the ``prdc`` package
    rounds them (float32 when both inputs are float32). Exact, but chunked: a
    100,000-point set needs no n x n matrix. ``threads`` chunk workers (default:
    the cores this process may use) share the work; the answer does not depend on it.
    """
    k = _checks.positive_int(k, "k")
    threads = (
        _knn.default_threads() if threads is None else _checks.positive_int(threads, "threads")
    )
    real = _checks.points(reference, "reference")
    fake = _checks.points(sample, "sample")
    _checks.same_dim(real, fake, "reference", "sample")
    for arr, name in ((real, "reference"), (fake, "sample")):
        if len(arr) <= k:
            raise InputError(
                f"k={k} is too large for {name} with {len(arr)} point(s): "
                f"the k-th neighbour needs at least k+1 = {k + 1} points"
            )
    mu = real.mean(axis=0, dtype=np.float64)
    rnd = _knn.Rounding(real.dtype == np.float32 and fake.dtype == np.float32)
    c = _knn.error_scale(real.shape[1])
    r_side, f_side = _knn.prepare(real, mu), _knn.prepare(fake, mu)
    real_radii = _knn.kth_radius(r_side, k, rnd, c, threads=threads)
    fake_radii = _knn.kth_radius(f_side, k, rnd, c, threads=threads)
    in_real, covered, recalled = _knn.ball_tests(
        r_side, f_side, real_radii, fake_radii, rnd, c, threads=threads
    )
    return {
        "precision": float(np.mean(in_real > 0)),
        "recall": float(np.mean(recalled)),
        "density": float(in_real.mean() / k),
        "coverage": float(np.mean(covered)),
    }


def vendi(X, q: float = 1.0, *, chunk_rows: int = 8192) -> float:  # noqa: ANN001
    """Vendi score (Friedman & Dieng 2023) with the cosine kernel, of any order ``q``.

    exp of the order-q Rényi entropy of the eigenvalues of K/n, K the cosine
    similarity matrix. When n > d the nonzero eigenvalues are those of the d x d
    matrix X^T X / n of the normalised rows, so the cost is O(n d^2) and memory
    O(d^2). ``q`` may be any value >= 0 or ``float('inf')``. Eigenvalues below
    n * d * machine epsilon of the largest are treated as zero (numerical rank),
    which matters for q = 0.
    """
    if not isinstance(q, int | float) or isinstance(q, bool) or not q >= 0:
        raise InputError(f"q must be a number >= 0 (or inf), got {q!r}")
    X = _checks.points(X, "X")
    n, d = X.shape
    if n <= d:
        Xn = _normalised(X, 0)
        w = scipy.linalg.eigvalsh(Xn @ Xn.T / n)
    else:
        cov = np.zeros((d, d))
        for s in range(0, n, chunk_rows):
            Xn = _normalised(X[s : s + chunk_rows], s)
            cov += Xn.T @ Xn
        w = scipy.linalg.eigvalsh(cov / n)
    w = w[w > w.max() * max(n, d) * np.finfo(np.float64).eps]
    w = w / w.sum()
    return float(np.exp(_renyi_entropy(w, float(q))))


def _normalised(X: np.ndarray, offset: int) -> np.ndarray:
    Xd = X.astype(np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", Xd, Xd))
    if not norms.all():
        raise InputError(
            f"X row {offset + int(np.flatnonzero(norms == 0)[0])} is all zeros: "
            "the cosine kernel is undefined for it"
        )
    return Xd / norms[:, None]


def _renyi_entropy(p: np.ndarray, q: float) -> float:
    if q == 1.0:
        return float(-np.sum(p * np.log(p)))
    if np.isinf(q):
        return float(-np.log(p.max()))
    return float(np.log(np.sum(p**q)) / (1.0 - q))


def frechet_distance(sample, reference) -> float:  # noqa: ANN001
    """Fréchet distance between Gaussians fitted to the two sets (FID's formula); lower is better.

    ``|mu_r - mu_f|^2 + tr(S_r + S_f - 2 (S_r^1/2 S_f S_r^1/2)^1/2)``, the trace term
    through a symmetric eigendecomposition, which stays real and stable.
    """
    real = _checks.points(reference, "reference", min_rows=2)
    fake = _checks.points(sample, "sample", min_rows=2)
    _checks.same_dim(real, fake, "reference", "sample")
    mu_r, mu_f = real.mean(0, dtype=np.float64), fake.mean(0, dtype=np.float64)
    cov_r = np.cov(real, rowvar=False, dtype=np.float64).reshape(real.shape[1], -1)
    cov_f = np.cov(fake, rowvar=False, dtype=np.float64).reshape(fake.shape[1], -1)
    w, v = scipy.linalg.eigh(cov_r)
    root_r = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = root_r @ cov_f @ root_r
    tr_sqrt = np.sqrt(np.clip(scipy.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    value = float(np.sum((mu_r - mu_f) ** 2) + np.trace(cov_r) + np.trace(cov_f) - 2 * tr_sqrt)
    return max(0.0, value)


def spread(sample, reference) -> float:  # noqa: ANN001
    """Total variance of the sample's embeddings / the reference's (population variance)."""
    sample = _checks.points(sample, "sample")
    reference = _checks.points(reference, "reference")
    return float(np.var(sample, axis=0).sum() / np.var(reference, axis=0).sum())


def vendi_of_rows(X, q: float = 1.0) -> float:  # noqa: ANN001
    """:func:`vendi` of the rows with a direction: a text with no tokens embeds to zero."""
    X = np.asarray(X)
    keep = np.any(X != 0, axis=1) if X.ndim == 2 else np.ones(len(X), dtype=bool)
    if not keep.any():
        raise InputError("every sample text embeds to zero (no tokens): Vendi is undefined")
    return vendi(X[keep], q)


def median_heuristic_gamma(X, *, max_points: int = 1000, seed: int = 0) -> float:  # noqa: ANN001
    """RBF gamma = 1 / (2 median^2) from the pairwise distances of a seeded subsample."""
    X = _checks.points(X, "X", min_rows=2)
    if len(X) > max_points:
        X = X[np.random.default_rng(seed).choice(len(X), max_points, replace=False)]
    Xd = X.astype(np.float64)
    sq = np.einsum("ij,ij->i", Xd, Xd)
    d2 = sq[:, None] + sq[None, :] - 2 * Xd @ Xd.T
    med = np.median(d2[np.triu_indices(len(Xd), 1)].clip(0))
    if med <= 0:
        raise InputError("X has (almost) no spread: cannot choose an RBF bandwidth")
    return float(1.0 / (2.0 * med))


def mmd_rbf(sample, reference, *, gamma: float | None = None, chunk_rows: int = 2048) -> float:  # noqa: ANN001
    """Unbiased squared MMD with the kernel exp(-gamma |x - y|^2); lower is better.

    ``gamma`` defaults to the median heuristic on ``reference``. The unbiased
    estimator drops the diagonal terms, so it can be slightly negative when the
    sets come from one distribution.
    """
    real = _checks.points(reference, "reference", min_rows=2)
    fake = _checks.points(sample, "sample", min_rows=2)
    _checks.same_dim(real, fake, "reference", "sample")
    if gamma is None:
        gamma = median_heuristic_gamma(real)
    elif not (isinstance(gamma, int | float) and gamma > 0 and np.isfinite(gamma)):
        raise InputError(f"gamma must be a positive number, got {gamma!r}")
    m, n = len(real), len(fake)
    k_rr = _kernel_sum(real, real, gamma, chunk_rows) - m  # drop k(x, x) = 1
    k_ff = _kernel_sum(fake, fake, gamma, chunk_rows) - n
    k_rf = _kernel_sum(real, fake, gamma, chunk_rows)
    return float(k_rr / (m * (m - 1)) + k_ff / (n * (n - 1)) - 2 * k_rf / (m * n))


def _kernel_sum(a: np.ndarray, b: np.ndarray, gamma: float, chunk_rows: int) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    sa, sb = np.einsum("ij,ij->i", a, a), np.einsum("ij,ij->i", b, b)
    total = 0.0
    for s in range(0, len(a), chunk_rows):
        d2 = sa[s : s + chunk_rows, None] + sb[None, :] - 2 * a[s : s + chunk_rows] @ b.T
        total += float(np.exp(-gamma * np.clip(d2, 0, None)).sum())
    return total
