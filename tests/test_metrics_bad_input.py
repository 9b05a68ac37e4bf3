"""Bad input gets an InputError that names the input and the reason, never a silent NaN."""

from __future__ import annotations

import numpy as np
import pytest

from tailguard import metrics as M
from tailguard.errors import ConfigError, InputError

rng = np.random.default_rng(0)
X = rng.standard_normal((20, 4))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: M.prdc(X, np.zeros((0, 4))), "reference is empty"),
        (lambda: M.prdc(X[:1], X), "k=5 is too large for sample with 1 point"),
        (lambda: M.prdc(X[:5], X, k=5), "k=5 is too large for sample"),
        (lambda: M.prdc(np.full((10, 4), np.nan), X), "sample contains NaN"),
        (lambda: M.prdc(X, np.where(X > 2, np.inf, X)), "reference contains an infinite value"),
        (lambda: M.prdc(X[:, :3], X), "reference has 4 dimensions but sample has 3"),
        (lambda: M.prdc(X, X, k=0), "k must be an integer >= 1"),
        (lambda: M.prdc(X, X, threads=0), "threads must be an integer >= 1"),
        (lambda: M.prdc(X, X[0]), "reference must be a 2-D array"),
        (lambda: M.prdc(X, [["a"]]), "reference must be numeric"),
        (lambda: M.vendi(np.zeros((0, 3))), "X is empty"),
        (lambda: M.vendi(np.vstack([X, np.zeros((1, 4))])), "X row 20 is all zeros"),
        (lambda: M.vendi(X, q=-1), "q must be a number >= 0"),
        (lambda: M.frechet_distance(X, X[:1]), "reference has 1 point"),
        (lambda: M.mmd_rbf(X[:1], X), "sample has 1 point"),
        (lambda: M.mmd_rbf(X, X, gamma=-1.0), "gamma must be a positive number"),
        (lambda: M.variance_ratio([1.0], [1.0, 2.0]), "sample has 1 value"),
        (lambda: M.variance_ratio([1.0, 2.0], [3.0, 3.0]), "reference has zero variance"),
        (lambda: M.wasserstein1([], [1.0]), "sample is empty"),
        (lambda: M.wasserstein1([1.0, np.nan], [1.0]), "sample contains NaN"),
        (lambda: M.tail_quantile_ratios([1, 2], [1, 2], q=0.7), "q must be in"),
        (lambda: M.total_variation([], ["a"]), "sample_labels is empty"),
        (lambda: M.total_variation(["a", None], ["a"]), "sample_labels has a missing label"),
        (lambda: M.tail_recall(["a"], ["a"], q=0), "q must be a number in"),
        (lambda: M.distinct_n([], 2), "texts is empty"),
        (lambda: M.distinct_n(["one"], 2), "no 2-grams"),
        (lambda: M.distinct_n("a string", 1), "not a single string"),
        (lambda: M.distinct_n(["ok", None], 1), "missing text"),
        (lambda: M.distinct_n([1, 2], 1), "must hold strings"),
        (lambda: M.vocab_coverage(["a"], ["!!!"]), "reference_texts contain no tokens"),
        (lambda: M.compression_ratio(["", ""]), "texts are all empty"),
        (lambda: M.self_bleu(["only one"]), "at least 2 texts"),
        (lambda: M.evaluate(["a b"], ["x", "y"], ["a b"], ["x"]), "sample_labels has 2 rows"),
    ],
)
def test_bad_input_is_named(call, match):
    with pytest.raises(InputError, match=match):
        call()


def test_unknown_preset_and_metric():
    with pytest.raises(ConfigError, match="unknown preset"):
        M.evaluate(["a b"], reference_texts=["a b"], preset="nope")
    with pytest.raises(ConfigError, match="unknown metrics"):
        M.evaluate(["a b"], reference_texts=["a b"], metrics=["nope"])


def test_evaluate_skips_label_metrics_without_labels():
    out = M.evaluate(["a b c", "b c d"], None, ["a b c", "c d e"], None)
    assert "tail_recall" not in out and "distinct_2" in out
    assert all(np.isfinite(v) for v in out.values())
