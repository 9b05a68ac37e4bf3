"""Class-distribution metrics: distances, entropy, per-class recall and the tails.

Collapse empties the rare classes first, long before the distance between class
distributions moves much, so the tail metrics here look only at the classes that
together hold the bottom ``q`` of the reference's mass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tailguard.errors import InputError
from tailguard.metrics import _checks


@dataclass(frozen=True)
class ClassCounts:
    """Sample and reference counts over the union of their classes (sorted by name)."""

    classes: pa.Array
    sample: np.ndarray
    reference: np.ndarray

    @property
    def p_sample(self) -> np.ndarray:
        return self.sample / self.sample.sum()

    @property
    def p_reference(self) -> np.ndarray:
        return self.reference / self.reference.sum()


def class_counts(sample_labels, reference_labels) -> ClassCounts:  # noqa: ANN001
    """Count both label columns over one shared, sorted class list (vectorised)."""
    s = _checks.labels(sample_labels, "sample_labels")
    r = _checks.labels(reference_labels, "reference_labels")
    both = pa.concat_arrays([s, r])
    classes = pc.unique(both).sort()
    idx = pc.index_in(both, value_set=classes).to_numpy().astype(np.int64)
    k = len(classes)
    sample = np.bincount(idx[: len(s)], minlength=k).astype(np.float64)
    reference = np.bincount(idx[len(s) :], minlength=k).astype(np.float64)
    return ClassCounts(classes, sample, reference)


def _counts(sample_labels, reference_labels) -> ClassCounts:  # noqa: ANN001
    if isinstance(sample_labels, ClassCounts):
        return sample_labels
    return class_counts(sample_labels, reference_labels)


def total_variation(sample_labels, reference_labels=None) -> float:  # noqa: ANN001
    """Total variation distance between the class distributions, in [0, 1]; lower is better."""
    c = _counts(sample_labels, reference_labels)
    # disjoint classes sum to 1 + 2e-16 in floating point: the distance is at most 1
    return float(min(1.0, 0.5 * np.abs(c.p_sample - c.p_reference).sum()))


def js_divergence(sample_labels, reference_labels=None) -> float:  # noqa: ANN001
    """Jensen-Shannon divergence in bits, in [0, 1] (scipy's jensenshannon squared, base 2)."""
    c = _counts(sample_labels, reference_labels)
    p, q = c.p_sample, c.p_reference
    m = 0.5 * (p + q)
    return float(max(0.0, 0.5 * (_kl_bits(p, m) + _kl_bits(q, m))))


def kl_divergence(sample_labels, reference_labels=None, *, alpha: float = 0.5) -> float:  # noqa: ANN001
    """KL(reference || sample) in bits with additive smoothing ``alpha`` on both counts.

    This direction charges the sample for every reference class it misses, which is
    what collapse does; smoothing keeps a missing class finite.
    """
    if not (isinstance(alpha, int | float) and alpha > 0):
        raise InputError(f"alpha must be a positive number, got {alpha!r}")
    c = _counts(sample_labels, reference_labels)
    k = len(c.sample)
    ps = (c.sample + alpha) / (c.sample.sum() + alpha * k)
    pr = (c.reference + alpha) / (c.reference.sum() + alpha * k)
    return float(max(0.0, _kl_bits(pr, ps)))


def _kl_bits(p: np.ndarray, q: np.ndarray) -> float:
    m = p > 0
    return float(np.sum(p[m] * np.log2(p[m] / q[m])))


def label_entropy(labels) -> float:  # noqa: ANN001
    """Shannon entropy of the label distribution in bits; collapse lowers it."""
    arr = _checks.labels(labels, "labels")
    counts = pc.value_counts(arr).field("counts").to_numpy().astype(np.float64)
    p = counts / counts.sum()
    return float(max(0.0, -np.sum(p * np.log2(p))))


def per_class_recall(sample_labels, reference_labels) -> pa.Table:  # noqa: ANN001
    """Per reference class: counts, shares and recall = min(1, sample share / reference share).

    Recall 1 means the sample gives the class at least its reference mass; 0 means
    the class is gone. Classes only in the sample are listed with recall null.
    """
    c = class_counts(sample_labels, reference_labels)
    ps, pr = c.p_sample, c.p_reference
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(pr > 0, np.minimum(1.0, ps / np.where(pr > 0, pr, 1.0)), np.nan)
    return pa.table(
        {
            "label": c.classes,
            "reference_count": pa.array(c.reference.astype(np.int64)),
            "sample_count": pa.array(c.sample.astype(np.int64)),
            "reference_share": pa.array(pr),
            "sample_share": pa.array(ps),
            "recall": pa.array(recall, mask=~(pr > 0)),
        }
    )


def tail_mask(reference_counts: np.ndarray, q: float = 0.2) -> np.ndarray:
    """The reference's rare classes: rarest first, while together they hold at most ``q``.

    Ties are broken by class order so the set is deterministic. If even the rarest
    class holds more than ``q``, it alone is the tail (so the set is never empty).
    """
    q = _checks.fraction(q, "q")
    counts = np.asarray(reference_counts, dtype=np.float64)
    present = np.flatnonzero(counts > 0)
    if present.size == 0:
        raise InputError("reference_labels has no classes")
    order = present[np.argsort(counts[present], kind="stable")]
    cum = np.cumsum(counts[order]) / counts.sum()
    n_tail = max(1, int(np.searchsorted(cum, q + 1e-12, side="right")))
    mask = np.zeros(counts.shape, dtype=bool)
    mask[order[:n_tail]] = True
    return mask


def tail_classes(reference_labels, q: float = 0.2) -> pa.Array:  # noqa: ANN001
    """The labels of the reference's rare classes (see :func:`tail_mask`)."""
    r = _checks.labels(reference_labels, "reference_labels")
    vc = pc.value_counts(r)
    values, counts = vc.field("values"), vc.field("counts").to_numpy()
    order = pc.sort_indices(values).to_numpy()
    values, counts = values.take(order), counts[order]
    return values.filter(pa.array(tail_mask(counts, q)))


def tail_recall(sample_labels, reference_labels=None, *, q: float = 0.2) -> float:  # noqa: ANN001
    """Share of the reference's rare classes that appear in the sample at all."""
    c = _counts(sample_labels, reference_labels)
    mask = tail_mask(c.reference, q)
    return float(np.mean(c.sample[mask] > 0))


def tail_mass_ratio(sample_labels, reference_labels=None, *, q: float = 0.2) -> float:  # noqa: ANN001
    """Sample mass on the reference's rare classes divided by the reference's mass on them."""
    c = _counts(sample_labels, reference_labels)
    mask = tail_mask(c.reference, q)
    return float(c.p_sample[mask].sum() / c.p_reference[mask].sum())
