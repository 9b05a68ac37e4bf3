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
    #: The data set's own parameters, read from ``model_params`` (not passed to the model).
    params: tuple[str, ...] = ()


def _int(p: dict[str, Any], key: str, default: int, minimum: int = 1) -> int:
    value = p.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"data parameter {key!r} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _fortunes(p: dict[str, Any]) -> pa.Table:
    """All fortunes, or a seeded subset of ``n_texts`` (a smaller run for slow models)."""
    from tailguard.datasets import fortunes

    table = fortunes()
    if "n_texts" not in p:
        return table
    n = min(_int(p, "n_texts", table.num_rows, minimum=2), table.num_rows)
    order = np.random.default_rng(_int(p, "data_seed", 0, minimum=0)).permutation(table.num_rows)
    return table.take(pa.array(np.sort(order[:n])))


def _digits(_: dict[str, Any]) -> pa.Table:
    from tailguard.lab.models.digits import digits_records

    return digits_records()


def _zipf(p: dict[str, Any]) -> pa.Table:
    from tailguard.lab.models.categorical import zipf_records

    exponent = p.get("exponent", 1.1)
    if not isinstance(exponent, int | float) or isinstance(exponent, bool):
        raise ConfigError(f"data parameter 'exponent' must be a number, got {exponent!r}")
    return zipf_records(
        vocab_size=_int(p, "vocab_size", 1000), n_docs=_int(p, "n_docs", 1000),
        doc_length=_int(p, "doc_length", 20), exponent=float(exponent),
        seed=_int(p, "data_seed", 0, minimum=0), weights=p.get("weights"),
    )  # fmt: skip


def _gaussian(p: dict[str, Any]) -> pa.Table:
    """``n_points`` draws of the standard ``dim``-dimensional Gaussian (the truth is N(0, I))."""
    rng = np.random.default_rng(_int(p, "data_seed", 0, minimum=0))
    x = rng.standard_normal((_int(p, "n_points", 2000, minimum=3), _int(p, "dim", 2)))
    return human_vector_records(x, source="gaussian")


def _blobs(p: dict[str, Any]) -> pa.Table:
    """Three 2-D clusters holding 60%, 30% and 10% of 2,000 points: the last is the tail."""
    rng = np.random.default_rng(_int(p, "data_seed", 0, minimum=0))
    n = _int(p, "n_points", 2000, minimum=3)
    shares = np.asarray(p.get("weights", [0.6, 0.3, 0.1]), dtype=np.float64)
    if shares.shape != (3,) or (shares < 0).any() or not np.isclose(shares.sum(), 1.0):
        raise ConfigError(
            f"data parameter 'weights' must be three non-negative cluster shares summing to 1, "
            f"got {p.get('weights')!r}"
        )
    sizes = np.floor(shares * n).astype(int)
    sizes[0] += n - sizes.sum()
    centres = np.array([[0.0, 0.0], [4.0, 0.0], [2.0, 4.0]])
    x = np.concatenate(
        [c + rng.standard_normal((k, 2)) * 0.6 for c, k in zip(centres, sizes, strict=True)]
    )
    labels = np.repeat(["large", "medium", "small"], sizes)
    perm = rng.permutation(len(x))  # one shuffle for points and labels: each keeps its cluster
    return human_vector_records(x[perm], source="blobs", label=labels[perm])


def _regression(model_params: dict[str, Any]) -> pa.Table:
    from tailguard.lab.models.regression import LinearRegression

    return LinearRegression(**model_params).human_records(seed=0)


DATASETS: dict[str, LabData] = {
    d.name: d
    for d in (
        LabData(
            "fortunes",
            "text",
            _fortunes,
            "15k human quotations in 43 long-tailed categories",
            ("n_texts", "data_seed"),
        ),  # fmt: skip
        LabData("digits", "labels", _digits, "1,797 human handwritten 8x8 digits"),
        LabData(
            "zipf",
            "tokens",
            _zipf,
            "1,000 documents of 20 tokens from a Zipf(1.1) law over 1,000 types",
            ("vocab_size", "n_docs", "doc_length", "exponent", "weights", "data_seed"),
        ),
        LabData(
            "gaussian",
            "vectors",
            _gaussian,
            "2,000 draws of a standard 2-D Gaussian",
            ("n_points", "dim", "data_seed"),
        ),
        LabData(
            "blobs",
            "vectors",
            _blobs,
            "2,000 points in three clusters (60/30/10%)",
            ("n_points", "weights", "data_seed"),
        ),
        LabData(
            "regression",
            "vectors",
            _regression,
            "a fixed Gaussian design labelled by unit-norm weights plus noise",
            ("n_features", "n_samples", "noise", "design_seed"),
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


def data_only_params(model: str) -> set[str]:
    """Parameters of ``model``'s data sets that the model itself does not take."""
    from tailguard.lab.models import MODELS

    own = set(getattr(MODELS[model], "_param_names", ()))
    return {k for name in MODEL_DATA.get(model, ()) for k in DATASETS[name].params} - own


def check_params(model: str, data: str | None, params: dict[str, Any]) -> None:
    """Refuse a parameter that neither the model nor its data set takes, naming both lists."""
    from tailguard.lab.models import MODELS

    dataset = resolve(model, data)
    own = tuple(getattr(MODELS[model], "_param_names", ()))
    unknown = sorted(set(params) - set(own) - set(dataset.params))
    if unknown:
        raise ConfigError(
            f"model_params: {', '.join(map(repr, unknown))} is not a parameter of the "
            f"{model!r} model ({', '.join(own) or 'none'}) or of the {dataset.name!r} data "
            f"({', '.join(dataset.params) or 'none'})"
        )
    model_only = {k: v for k, v in params.items() if k in own}
    try:
        MODELS[model](**model_only)
    except TypeError as exc:
        raise ConfigError(f"model_params: {exc}") from None
    if dataset.kind != "text":  # loading a numeric data set validates its parameters
        dataset.load(dict(params))


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
