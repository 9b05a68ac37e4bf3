"""An image model on scikit-learn's handwritten digits: a Gaussian mixture in PCA space.

Each generation refits PCA and the mixture on the images it is given and
samples new 8x8 images (64 pixel intensities in [0, 16], a JSON array per
record). A fixed classifier, trained once on the 1,797 human digits, labels
the generated images, so the label distribution shows which digits a
collapsing model stops producing.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Self

import numpy as np
import pyarrow as pa
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.mixture import GaussianMixture as _SkGaussianMixture
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from tailguard.errors import ConfigError
from tailguard.lab.models.base import (
    ModelBase,
    decode_vectors,
    human_vector_records,
    vector_records,
)
from tailguard.lab.models.mixture import sample_mixture

PIXELS = 64


@lru_cache(maxsize=1)
def digits_labeller() -> Pipeline:
    """Logistic regression on all human digits: the fixed judge of generated images."""
    data = load_digits()
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return clf.fit(data.data, data.target)


def digits_records() -> pa.Table:
    """The 1,797 human digits as records (label = the digit)."""
    data = load_digits()
    return human_vector_records(data.data, source="sklearn-digits", label=data.target.astype(str))


class DigitsMixture(ModelBase):
    """PCA to ``n_pca`` dimensions, then a ``n_components`` Gaussian mixture."""

    name = "digits"
    _param_names = ("n_pca", "n_components", "random_state")

    def __init__(self, *, n_pca: int = 16, n_components: int = 10, random_state: int = 0) -> None:
        if not 1 <= n_pca <= PIXELS:
            raise ConfigError(f"n_pca must be in 1..{PIXELS}, got {n_pca}")
        if n_components < 1:
            raise ConfigError(f"n_components must be >= 1, got {n_components}")
        self.n_pca = n_pca
        self.n_components = n_components
        self.random_state = random_state
        self.pca_: PCA | None = None
        self.mixture_: _SkGaussianMixture | None = None

    def fit_array(self, x: np.ndarray) -> Self:
        k = min(self.n_pca, len(x) - 1, PIXELS)
        self.pca_ = PCA(n_components=k, random_state=self.random_state).fit(x)
        z = self.pca_.transform(x)
        self.mixture_ = _SkGaussianMixture(
            n_components=min(self.n_components, len(x)),
            covariance_type="full",
            random_state=self.random_state,
            reg_covar=1e-4,
        ).fit(z)
        return self

    def sample_array(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` images (``n x 64``), clipped to the valid pixel range."""
        self._require_fitted("mixture_")
        m, pca = self.mixture_, self.pca_
        assert m is not None and pca is not None
        z = sample_mixture(m, n, rng)
        return np.clip(pca.inverse_transform(z), 0.0, 16.0)

    def fit(self, records: pa.Table) -> Self:
        return self.fit_array(decode_vectors(records.column("content"), dim=PIXELS))

    def sample(self, n: int, seed: int, *, generation: int = 1, round: int = 1) -> pa.Table:  # noqa: A002
        x = np.round(self.sample_array(n, np.random.default_rng(seed)), 3)
        labels = digits_labeller().predict(x).astype(str)
        return vector_records(
            x, generator=self.name, generation=generation, round=round, label=labels
        )
