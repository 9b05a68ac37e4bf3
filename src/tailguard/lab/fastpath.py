"""Many-generation, many-seed simulations on numpy arrays, for the closed-form checks.

The closed-form results (Gaussian variance decay, regression error growth)
need thousands of seeds and up to hundreds of generations. These functions run
the same model classes as the loop (``Gaussian``, ``LinearRegression``), but
on arrays with one model per seed stacked along the first axis, without the
ledger, gate and planner around them: the numbers they check are properties
of refitting, which the full loop would reproduce only more slowly.
"""

from __future__ import annotations

import numpy as np

from tailguard.errors import ConfigError
from tailguard.lab.models.gaussian import Estimator, Gaussian
from tailguard.lab.models.regression import LinearRegression, check_regression_setting


def gaussian_variance_path(
    *,
    generations: int,
    samples: int,
    seeds: int,
    dim: int = 1,
    sigma: float = 1.0,
    estimator: Estimator = "mle",
    seed: int = 0,
) -> np.ndarray:
    """Fitted variance after ``n`` refits, per seed: shape ``(generations + 1, seeds)``.

    Row 0 is the truth, ``sigma^2``. Fit 1 is on ``samples`` human draws from
    ``N(0, sigma^2 I)`` (the lab's round 0); fit ``n`` is on ``samples`` draws from
    fit ``n - 1``. The variance is the covariance's trace divided by ``dim``, so
    with MLE refits ``E[row n] = sigma^2 (1 - 1/M)^n``.
    """
    _check_positive(generations=generations, samples=samples, seeds=seeds, dim=dim)
    rng = np.random.default_rng(seed)
    x = sigma * rng.standard_normal((seeds, samples, dim))
    model = Gaussian(estimator=estimator)
    out = np.empty((generations + 1, seeds))
    out[0] = sigma**2
    for n in range(1, generations + 1):
        if n > 1:
            x = model.sample_array(samples, rng)
        model.fit_array(x)
        out[n] = model.variance_ / dim
    return out


def regression_error_path(
    strategy: str,
    *,
    generations: int,
    n_features: int,
    n_samples: int,
    noise: float = 1.0,
    seeds: int,
    seed: int = 0,
) -> np.ndarray:
    """Excess test error after ``n`` fits, per seed: shape ``(generations + 1, seeds)``.

    Row 0 is the truth (error 0); fit 1 is on the human labels (the lab's round 0),
    fit ``n`` on labels made by fit ``n - 1``. Each seed has its own fixed Gaussian
    design. ``replace`` refits on the latest labels only; ``accumulate`` on every
    generation's labels of the same design, which for least squares equals a fit on
    their mean label (the normal equations of ``k`` stacked copies of ``X`` are
    ``k X'X w = X' sum_i y_i``).
    """
    if strategy not in ("replace", "accumulate"):
        raise ConfigError(f"strategy must be 'replace' or 'accumulate', not {strategy!r}")
    check_regression_setting(n_features=n_features, n_samples=n_samples, noise=noise)
    _check_positive(generations=generations, seeds=seeds)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((seeds, n_samples, n_features))
    w_true = rng.standard_normal((seeds, n_features))
    w_true /= np.linalg.norm(w_true, axis=1, keepdims=True)
    model = LinearRegression(n_features=n_features, n_samples=n_samples, noise=noise)
    y = np.einsum("std,sd->st", x, w_true) + noise * rng.standard_normal((seeds, n_samples))
    label_sum = y.copy()
    out = np.zeros((generations + 1, seeds))
    for n in range(1, generations + 1):
        if n > 1:
            y = model.label_array(x, rng)
            label_sum += y
        target = y if strategy == "replace" else label_sum / n
        model.fit_array(x, target)
        out[n] = model.test_error(w_true)
    return out


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}")
