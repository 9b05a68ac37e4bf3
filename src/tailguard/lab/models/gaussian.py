"""Gaussian models, 1-D and multivariate, refit by MLE or with the unbiased estimator.

The Gaussian is the textbook case of collapse: refit on ``M`` of its own
samples by maximum likelihood, the expected variance shrinks by ``(1 - 1/M)``
per generation. ``fit_array`` / ``sample_array`` accept leading batch axes
(one independent model per index), which is how the validation runs thousands
of seeds at once on the same class that the loop uses on records.
"""

from __future__ import annotations

from typing import Literal, Self

import numpy as np
import pyarrow as pa

from tailguard.errors import ConfigError, InputError
from tailguard.lab.models.base import ModelBase, decode_vectors, vector_records

Estimator = Literal["mle", "unbiased"]


class Gaussian(ModelBase):
    """A Gaussian in ``d`` dimensions (``d = 1`` for scalars).

    ``estimator="mle"`` divides the scatter by ``M`` (the collapse setting);
    ``"unbiased"`` divides by ``M - 1``. ``sample_scale`` multiplies the covariance
    it samples with (the sampling-bias knob: below 1 a model that under-disperses,
    as truncated or low-temperature sampling does).
    """

    name = "gaussian"
    _param_names = ("estimator", "sample_scale")

    def __init__(self, *, estimator: Estimator = "mle", sample_scale: float = 1.0) -> None:
        if estimator not in ("mle", "unbiased"):
            raise ConfigError(f"estimator must be 'mle' or 'unbiased', not {estimator!r}")
        if not sample_scale > 0:
            raise ConfigError(f"sample_scale must be > 0, got {sample_scale}")
        self.estimator: Estimator = estimator
        self.sample_scale = sample_scale
        self.mean_: np.ndarray | None = None
        self.cov_: np.ndarray | None = None

    # -- arrays (the fast path) ------------------------------------------------------------
    def fit_array(self, x: np.ndarray) -> Self:
        """Fit on ``x`` of shape ``(..., M, d)`` (or ``(M,)`` for one scalar model)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1:
            x = x[:, None]
        m = x.shape[-2]
        ddof = 0 if self.estimator == "mle" else 1
        if m <= ddof:
            raise InputError(f"need at least {ddof + 1} samples to fit a Gaussian, got {m}")
        self.mean_ = x.mean(axis=-2)
        centred = x - self.mean_[..., None, :]
        self.cov_ = np.einsum("...mi,...mj->...ij", centred, centred) / (m - ddof)
        return self

    def sample_array(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` draws per model: shape ``(..., n, d)``."""
        self._require_fitted("mean_")
        assert self.mean_ is not None and self.cov_ is not None
        d = self.mean_.shape[-1]
        # eigh rather than Cholesky: a collapsed covariance is singular, and must still sample.
        vals, vecs = np.linalg.eigh(self.cov_)
        root = vecs * np.sqrt(np.clip(vals, 0.0, None) * self.sample_scale)[..., None, :]
        z = rng.standard_normal((*self.mean_.shape[:-1], n, d))
        return self.mean_[..., None, :] + z @ np.swapaxes(root, -1, -2)

    @property
    def variance_(self) -> np.ndarray:
        """Total variance (trace of the covariance), per model."""
        self._require_fitted("cov_")
        assert self.cov_ is not None
        return np.trace(self.cov_, axis1=-2, axis2=-1)

    def statistics(self) -> dict[str, float]:
        """The fitted total variance and the 2-Wasserstein distance to ``N(0, I)``.

        ``N(0, I)`` is the truth of the ``gaussian`` data set (variance ``d``):
        ``W2^2 = |mu|^2 + tr(S + I - 2 S^(1/2))``.
        """
        self._require_fitted("cov_")
        assert self.mean_ is not None and self.cov_ is not None
        vals = np.clip(np.linalg.eigvalsh(self.cov_), 0.0, None)
        w2 = float(self.mean_ @ self.mean_ + np.sum(vals + 1.0 - 2.0 * np.sqrt(vals)))
        return {"variance": float(vals.sum()), "w2_to_truth": float(np.sqrt(max(w2, 0.0)))}

    # -- records (the loop's protocol) -----------------------------------------------------
    def fit(self, records: pa.Table) -> Self:
        return self.fit_array(decode_vectors(records.column("content")))

    def sample(self, n: int, seed: int, *, generation: int = 1, round: int = 1) -> pa.Table:  # noqa: A002
        self._require_fitted("mean_")
        if self.mean_ is not None and self.mean_.ndim != 1:
            raise InputError("a batch of Gaussians samples arrays only (sample_array)")
        x = self.sample_array(n, np.random.default_rng(seed))
        return vector_records(x, generator=self.name, generation=generation, round=round)
