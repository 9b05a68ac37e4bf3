"""The lab's human data sets, and which models can learn from which.

Every data set is real or exactly specified, and loads offline: the fortunes
corpus and scikit-learn's digits ship with packages; the numeric ones are drawn
from a stated distribution with a seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from tailguard.errors import ConfigError
from tailguard.lab.models.base import human_vector_records


@dataclass(frozen=True)
class LabData:
    """A named human data set: how to load it, and what kind of data it is."""

    name: str
    kind: str  # "text" | "tokens" | "labels" | "vectors" (see tailguard.lab.evaluation)
    load: Callable[[dict[str, Any]], pa.Table]
    description: str


def _fortunes(_: dict[str, Any]) -> pa.Table:
    from tailguard.datasets import fortunes

    return fortunes()


def _digits(_: dict[str, Any]) -> pa.Table:
    from tailguard.lab.models.digits import digits_records

    return digits_records()


def _zipf(_: dict[str, Any]) -> pa.Table:
    from tailguard.lab.models.categorical import zipf_records

    return zipf_records(vocab_size=1000, n_docs=1000, doc_length=20, exponent=1.1, seed=0)


def _gaussian(_: dict[str, Any]) -> pa.Table:
    x = np.random.default_rng(0).standard_normal((2000, 2))
    return human_vector_records(x, source="gaussian")


def _blobs(_: dict[str, Any]) -> pa.Table:
    """Three 2-D clusters holding 60%, 30% and 10% of 2,000 points: the last is the tail."""
    rng = np.random.default_rng(0)
    sizes = [1200, 600, 200]
    centres = np.array([[0.0, 0.0], [4.0, 0.0], [2.0, 4.0]])
    x = np.concatenate(
        [c + rng.standard_normal((k, 2)) * 0.6 for c, k in zip(centres, sizes, strict=True)]
    )
    labels = np.repeat(["large", "medium", "small"], sizes)
    return human_vector_records(
        x[rng.permutation(len(x))], source="blobs", label=labels[rng.permutation(len(x))]
    )


def _regression(model_params: dict[str, Any]) -> pa.Table:
    from tailguard.lab.models.regression import LinearRegression

    return LinearRegression(**model_params).human_records(seed=0)


DATASETS: dict[str, LabData] = {
    d.name: d
    for d in (
        LabData("fortunes", "text", _fortunes, "15k human quotations in 43 long-tailed categories"),
        LabData("digits", "labels", _digits, "1,797 human handwritten 8x8 digits"),
        LabData(
            "zipf",
            "tokens",
            _zipf,
            "1,000 documents of 20 tokens from a Zipf(1.1) law over 1,000 types",
        ),
        LabData("gaussian", "vectors", _gaussian, "2,000 draws of a standard 2-D Gaussian"),
        LabData("blobs", "vectors", _blobs, "2,000 points in three clusters (60/30/10%)"),
        LabData(
            "regression",
            "vectors",
            _regression,
            "a fixed Gaussian design labelled by unit-norm weights plus noise",
        ),
    )
}

#: The data each model can learn from; the first is its default.
MODEL_DATA: dict[str, tuple[str, ...]] = {
    "ngram": ("fortunes",),
    "transformer": ("fortunes",),
    "categorical": ("zipf",),
    "digits": ("digits",),
    "gaussian": ("gaussian", "blobs"),
    "mixture": ("blobs", "gaussian"),
    "kde": ("blobs", "gaussian"),
    "regression": ("regression",),
}


def resolve(model: str, data: str | None) -> LabData:
    """The data set for ``model`` (its default when ``data`` is None), or a clear error."""
    from tailguard.lab.models import MODELS

    if model not in MODELS:
        raise ConfigError(f"unknown model {model!r}; valid models: {', '.join(MODELS)}")
    allowed = MODEL_DATA[model]
    name = allowed[0] if data is None else data
    if name not in DATASETS:
        raise ConfigError(f"unknown data {name!r}; valid data sets: {', '.join(DATASETS)}")
    if name not in allowed:
        raise ConfigError(
            f"the {model!r} model cannot learn from {name!r}; it takes: {', '.join(allowed)}"
        )
    return DATASETS[name]
