"""Linear regression with relabelling: the setting of Gerstgrasser et al. (2024).

A fixed design ``X`` (``T`` rows, ``d`` Gaussian features) is labelled once by
the true weights plus noise (the human data). Every later generation labels
the *same* design with the previous fit plus fresh noise. Refit on the latest
labels only ("replace"), the test error grows linearly,
``n sigma^2 d / (T - d - 1)``; refit on all labels so far ("accumulate"), it
stays below ``(pi^2 / 6) sigma^2 d / (T - d - 1)``.

One record is one row: ``content`` is the JSON array ``[x_1, ..., x_d, y]``. A model
fit on records remembers their distinct ``x`` rows (its *training design*) and
relabels exactly those when it samples, so in the loop every generation relabels
the reservoir's training rows, never a holdout row.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import pyarrow as pa

from tailguard.errors import ConfigError, InputError
from tailguard.lab.models.base import (
    ModelBase,
    decode_vectors,
    human_vector_records,
    vector_records,
)


class LinearRegression(ModelBase):
    """Ordinary least squares that relabels a fixed Gaussian design when it samples.

    ``n_samples`` (``T``), ``n_features`` (``d``) and ``design_seed`` fix the design;
    ``noise`` is the label noise's standard deviation ``sigma``.
    """

    name = "regression"
    _param_names = ("n_features", "n_samples", "noise", "design_seed")

    def __init__(
        self,
        *,
        n_features: int = 10,
        n_samples: int = 100,
        noise: float = 1.0,
        design_seed: int = 0,
    ) -> None:
        check_regression_setting(n_features=n_features, n_samples=n_samples, noise=noise)
        self.n_features = n_features
        self.n_samples = n_samples
        self.noise = noise
        self.design_seed = design_seed
        self.coef_: np.ndarray | None = None
        self.design_: np.ndarray | None = None  # the distinct x rows of the last fit

    def design(self) -> np.ndarray:
        """The fixed design ``X`` (``T x d``, standard Gaussian rows)."""
        rng = np.random.default_rng(self.design_seed)
        return rng.standard_normal((self.n_samples, self.n_features))

    def true_coef(self) -> np.ndarray:
        """The weights that label the human data (unit norm, from the design seed)."""
        w = np.random.default_rng([self.design_seed, 1]).standard_normal(self.n_features)
        return w / np.linalg.norm(w)

    # -- arrays (the fast path; leading batch axes allowed) ------------------------------
    def fit_array(self, x: np.ndarray, y: np.ndarray) -> Self:
        """Least squares on ``x`` ``(..., T, d)`` and ``y`` ``(..., T)``."""
        xtx = np.swapaxes(x, -1, -2) @ x
        xty = np.einsum("...td,...t->...d", x, y)
        self.coef_ = np.linalg.solve(xtx, xty[..., None])[..., 0]
        return self

    def label_array(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Relabel ``x`` with this fit plus Gaussian noise of std ``noise``."""
        self._require_fitted("coef_")
        assert self.coef_ is not None
        mean = np.einsum("...td,...d->...t", x, self.coef_)
        return mean + self.noise * rng.standard_normal(mean.shape)

    def test_error(self, coef_true: np.ndarray) -> np.ndarray:
        """Excess test error ``E_x[(x.(w - w*))^2]`` for ``x ~ N(0, I)``: ``|w - w*|^2``."""
        self._require_fitted("coef_")
        assert self.coef_ is not None
        return ((self.coef_ - coef_true) ** 2).sum(axis=-1)

    def statistics(self) -> dict[str, float]:
        """Model-level statistics: the excess test error against the true weights."""
        return {"test_error": float(self.test_error(self.true_coef()))}

    # -- records (the loop's protocol) -----------------------------------------------------
    def fit(self, records: pa.Table) -> Self:
        rows = decode_vectors(records.column("content"), dim=self.n_features + 1)
        if len(rows) <= self.n_features:
            raise InputError(
                f"need more than {self.n_features} rows to fit {self.n_features} "
                f"weights, got {len(rows)}"
            )
        x = rows[:, :-1]
        _, first = np.unique(x, axis=0, return_index=True)
        self.fit_array(x, rows[:, -1])
        self.design_ = x[np.sort(first)]  # in the order the records gave them
        return self

    def sample(self, n: int, seed: int, *, generation: int = 1, round: int = 1) -> pa.Table:  # noqa: A002
        """Relabel the training design with this fit: ``n`` rows cycling through it.

        With ``n`` equal to the design's size (the lab's default), every training row
        is relabelled once; a model fit on arrays relabels the full fixed design.
        """
        design = self.design_ if self.design_ is not None else self.design()
        x = np.resize(design, (n, self.n_features))
        y = self.label_array(x, np.random.default_rng(seed))
        return vector_records(
            np.column_stack([x, y]), generator=self.name, generation=generation, round=round
        )

    def human_records(self, seed: int = 0) -> pa.Table:
        """The human data: the design labelled by the true weights plus noise."""
        x = self.design()
        y = x @ self.true_coef() + self.noise * np.random.default_rng(seed).standard_normal(len(x))
        return human_vector_records(np.column_stack([x, y]), source="regression")


def check_regression_setting(*, n_features: int, n_samples: int, noise: float) -> None:
    """Refuse settings where least squares (or its error formula) is undefined."""
    if n_features < 1:
        raise ConfigError(f"n_features (d) must be >= 1, got {n_features}")
    if n_samples <= n_features + 1:
        raise ConfigError(
            f"n_samples (T={n_samples}) must exceed n_features + 1 (d + 1 = {n_features + 1}): "
            "with T <= d + 1 the least-squares error is infinite"
        )
    if not noise > 0:
        raise ConfigError(f"noise (sigma) must be > 0, got {noise}")


def expected_test_error(
    strategy: str, *, fits: int, n_features: int, n_samples: int, noise: float
) -> float:
    """Closed-form expected excess test error after ``fits`` fits (fit 1: human labels).

    replace: ``n sigma^2 d / (T - d - 1)``;
    accumulate: ``sigma^2 d / (T - d - 1) * sum_{k=1}^{n} 1 / k^2`` (< pi^2/6 of the unit).
    """
    check_regression_setting(n_features=n_features, n_samples=n_samples, noise=noise)
    unit = noise**2 * n_features / (n_samples - n_features - 1)
    if strategy == "replace":
        return fits * unit
    if strategy == "accumulate":
        return unit * float(np.sum(1.0 / np.arange(1, fits + 1) ** 2))
    raise ConfigError(f"no closed form for strategy {strategy!r}; choose replace or accumulate")
