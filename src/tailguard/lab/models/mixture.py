"""Gaussian mixture and kernel density models (scikit-learn), on numeric records.

A mixture shows collapse in the tails first: a small component fit on few
samples drifts, and once a generation draws none of it, it is gone. A kernel
density estimate never forgets a point but widens every generation (each
refit adds the bandwidth's variance), the opposite failure.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import pyarrow as pa
from sklearn.mixture import GaussianMixture as _SkGaussianMixture
from sklearn.neighbors import KernelDensity as _SkKernelDensity

from tailguard.errors import ConfigError
from tailguard.lab.models.base import ModelBase, decode_vectors, vector_records


class GaussianMixture(ModelBase):
    """A ``n_components`` full-covariance Gaussian mixture, refit by EM each generation."""

    name = "mixture"
    _param_names = ("n_components", "covariance_type", "max_iter", "random_state")

    def __init__(
        self,
        *,
        n_components: int = 3,
        covariance_type: str = "full",
        max_iter: int = 100,
        random_state: int = 0,
    ) -> None:
        if n_components < 1:
            raise ConfigError(f"n_components must be >= 1, got {n_components}")
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.max_iter = max_iter
        self.random_state = random_state
        self.model_: _SkGaussianMixture | None = None

    def fit_array(self, x: np.ndarray) -> Self:
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        self.model_ = _SkGaussianMixture(
            n_components=min(self.n_components, len(x)),
            covariance_type=self.covariance_type,
            max_iter=self.max_iter,
            random_state=self.random_state,
            reg_covar=1e-6,
        ).fit(x)
        return self

    def sample_array(self, n: int, rng: np.random.Generator) -> np.ndarray:
        self._require_fitted("model_")
        assert self.model_ is not None
        return sample_mixture(self.model_, n, rng)

    def fit(self, records: pa.Table) -> Self:
        return self.fit_array(decode_vectors(records.column("content")))

    def sample(self, n: int, seed: int, *, generation: int = 1, round: int = 1) -> pa.Table:  # noqa: A002
        x = self.sample_array(n, np.random.default_rng(seed))
        return vector_records(x, generator=self.name, generation=generation, round=round)


def sample_mixture(m: _SkGaussianMixture, n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` points from a fitted scikit-learn mixture with our generator.

    (scikit-learn's own ``sample`` takes a seed but returns points grouped by
    component; drawing here keeps the order random and the seed ours.)
    """
    comp = rng.choice(len(m.weights_), size=n, p=m.weights_ / m.weights_.sum())
    d = m.means_.shape[1]
    vals, vecs = np.linalg.eigh(_full_covariances(m, d))
    roots = vecs * np.sqrt(np.clip(vals, 0.0, None))[:, None, :]
    return m.means_[comp] + np.einsum("nij,nj->ni", roots[comp], rng.standard_normal((n, d)))


def _full_covariances(m: _SkGaussianMixture, d: int) -> np.ndarray:
    k = len(m.weights_)
    c = m.covariances_
    if m.covariance_type == "full":
        return c
    if m.covariance_type == "tied":
        return np.broadcast_to(c, (k, d, d))
    if m.covariance_type == "diag":
        return np.einsum("ki,ij->kij", c, np.eye(d))
    return c[:, None, None] * np.eye(d)[None]  # spherical


class KernelDensity(ModelBase):
    """A Gaussian kernel density estimate with a fixed ``bandwidth``."""

    name = "kde"
    _param_names = ("bandwidth",)

    def __init__(self, *, bandwidth: float = 0.2) -> None:
        if not bandwidth > 0:
            raise ConfigError(f"bandwidth must be > 0, got {bandwidth}")
        self.bandwidth = bandwidth
        self.model_: _SkKernelDensity | None = None

    def fit_array(self, x: np.ndarray) -> Self:
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        self.model_ = _SkKernelDensity(kernel="gaussian", bandwidth=self.bandwidth).fit(x)
        return self

    def sample_array(self, n: int, rng: np.random.Generator) -> np.ndarray:
        self._require_fitted("model_")
        assert self.model_ is not None
        seed = int(rng.integers(2**31 - 1))
        return self.model_.sample(n, random_state=seed)

    def fit(self, records: pa.Table) -> Self:
        return self.fit_array(decode_vectors(records.column("content")))

    def sample(self, n: int, seed: int, *, generation: int = 1, round: int = 1) -> pa.Table:  # noqa: A002
        x = self.sample_array(n, np.random.default_rng(seed))
        return vector_records(x, generator=self.name, generation=generation, round=round)
