"""What the lab measures each round: the loop's monitor, with a preset per data kind.

The loop scores every round's sample against the reservoir's human holdout
through a :class:`tailguard.monitor.Monitor`, so a lab run's metric history is
the one a real run would have. Each data kind has a preset and one *primary*
metric, the one the axes (fidelity, coverage, recovery) read:

- ``text`` (n-gram on fortunes): the ``default`` preset (category metrics such
  as ``tail_recall``, the primary, and text metrics such as ``distinct_2`` and
  ``rare_vocab_coverage``);
- ``tokens`` (Zipf documents, categorical model): the vocabulary metrics
  (``lab-tokens``: ``rare_vocab_coverage``, the primary, ``vocab_coverage``,
  ``ngram_entropy_1``, ``distinct_1``);
- ``labels`` (digits): the category metrics only (``lab-labels``);
- ``vectors`` (Gaussian, mixture, KDE, regression): ``lab-vectors``, four
  metrics registered here on numeric records: ``vector_variance_ratio`` (the
  primary: trace of the sample covariance over the reference's; 1 is no
  change), and on the last coordinate (the label, for regression) the 1% tail
  widths ``vector_tail_lower`` / ``vector_tail_upper`` and ``vector_w1``
  (Wasserstein-1).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tailguard.lab.models.base import decode_vectors
from tailguard.metrics import REGISTRY, Preset, Threshold
from tailguard.metrics.registry import Comparison, Metric, register
from tailguard.metrics.scalars import tail_quantile_ratios, wasserstein1

#: The primary metric of each data kind (the axes read it).
PRIMARY = {
    "text": "tail_recall",
    "tokens": "rare_vocab_coverage",
    "labels": "tail_recall",
    "vectors": "vector_variance_ratio",
}
#: The tail metric whose last-generation value is the coverage axis.
COVERAGE = {
    "text": "tail_recall",
    "tokens": "rare_vocab_coverage",
    "labels": "tail_recall",
    "vectors": "vector_tail_width",
}

LABEL_METRICS = ("tail_recall", "tail_mass_ratio", "label_js", "label_tv", "label_entropy")
TOKEN_METRICS = ("rare_vocab_coverage", "vocab_coverage", "ngram_entropy_1", "distinct_1")


def _vectors(c: Comparison) -> tuple[np.ndarray, np.ndarray]:
    """Sample and reference matrices (the reference's decoded once and kept on it)."""
    ref = c.reference
    cached = getattr(ref, "_lab_vectors", None)
    if cached is None:
        cached = decode_vectors(ref.texts)
        ref._lab_vectors = cached  # type: ignore[attr-defined]
    return decode_vectors(c.texts, dim=cached.shape[1]), cached


def _variance_ratio(c: Comparison) -> float:
    xs, xr = _vectors(c)
    return float(xs.var(axis=0, ddof=1).sum() / xr.var(axis=0, ddof=1).sum())


def _tail(side: str) -> Any:
    def fn(c: Comparison) -> float:
        xs, xr = _vectors(c)
        return tail_quantile_ratios(xs[:, -1], xr[:, -1], q=0.01)[side]

    return fn


def _w1(c: Comparison) -> float:
    xs, xr = _vectors(c)
    return wasserstein1(xs[:, -1], xr[:, -1])


_VECTOR_METRICS = (
    Metric("vector_variance_ratio", True, "diversity", ("texts",), _variance_ratio,
           "total variance of numeric records / the reference's (1: no change)"),
    Metric("vector_tail_lower", True, "tail", ("texts",), _tail("lower"),
           "width of the last coordinate's lower 1% tail / the reference's"),
    Metric("vector_tail_upper", True, "tail", ("texts",), _tail("upper"),
           "width of the last coordinate's upper 1% tail / the reference's"),
    Metric("vector_w1", False, "fidelity", ("texts",), _w1,
           "Wasserstein-1 between the last coordinates"),
)  # fmt: skip
for _metric in _VECTOR_METRICS:
    if _metric.name not in REGISTRY:
        register(_metric)

PRESETS: dict[str, Preset | str] = {
    "text": "default",
    "tokens": Preset(
        "lab-tokens",
        TOKEN_METRICS,
        {
            "rare_vocab_coverage": Threshold("relative", 0.15),
            "vocab_coverage": Threshold("relative", 0.10),
        },
    ),
    "labels": Preset(
        "lab-labels",
        LABEL_METRICS,
        {
            "tail_recall": Threshold("relative", 0.10),
            "tail_mass_ratio": Threshold("relative", 0.25),
            "label_js": Threshold("change", 0.05),
        },
    ),
    "vectors": Preset(
        "lab-vectors",
        tuple(m.name for m in _VECTOR_METRICS),
        {
            "vector_variance_ratio": Threshold("relative", 0.10),
            "vector_tail_lower": Threshold("relative", 0.10),
            "vector_tail_upper": Threshold("relative", 0.10),
        },
    ),
}


def monitor_for(kind: str, *, run: str, seed: int = 0) -> Any:
    """A monitor with the data kind's preset (the loop sets its reference and history)."""
    from tailguard.monitor import Monitor

    return Monitor(preset=PRESETS[kind], run=run, seed=seed)
