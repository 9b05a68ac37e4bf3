"""The lab reproduces known results (each row of docs/validation.md is a test here)."""

from __future__ import annotations

import numpy as np
import pytest

from tailguard.errors import ConfigError
from tailguard.lab import validation
from tailguard.lab.fastpath import gaussian_variance_path, regression_error_path
from tailguard.lab.models.regression import expected_test_error


@pytest.mark.parametrize("name", list(validation.CHECKS))
def test_closed_form_check(name: str) -> None:
    check = validation.CHECKS[name]()
    assert check.passed, check


def test_gaussian_mean_decays_along_the_whole_path() -> None:
    path = gaussian_variance_path(generations=10, samples=20, seeds=6000, seed=11)
    expected = (1 - 1 / 20) ** np.arange(11)
    np.testing.assert_allclose(path.mean(axis=1), expected, rtol=0.05)


def test_regression_paths_follow_their_closed_forms() -> None:
    d, t = 5, 30
    for strategy in ("replace", "accumulate"):
        path = regression_error_path(
            strategy, generations=8, n_features=d, n_samples=t, seeds=3000, seed=5
        )
        expected = [
            expected_test_error(strategy, fits=n, n_features=d, n_samples=t, noise=1.0)
            for n in range(1, 9)
        ]
        np.testing.assert_allclose(path[1:].mean(axis=1), expected, rtol=0.07)
    bound = (np.pi**2 / 6) * d / (t - d - 1)
    acc = regression_error_path(
        "accumulate", generations=30, n_features=d, n_samples=t, seeds=2000, seed=6
    )
    assert (acc.mean(axis=1) < bound).all()


def test_fast_path_refuses_impossible_settings() -> None:
    with pytest.raises(ConfigError, match="d \\+ 1"):
        regression_error_path("replace", generations=3, n_features=10, n_samples=11, seeds=2)
    with pytest.raises(ConfigError, match="generations"):
        gaussian_variance_path(generations=0, samples=10, seeds=2)
    with pytest.raises(ConfigError, match="strategy"):
        regression_error_path("anchored", generations=3, n_features=2, n_samples=10, seeds=2)


@pytest.fixture(scope="module")
def fortunes_runs():  # noqa: ANN201
    return validation.fortunes_runs(seeds=3, workers=2)


@pytest.mark.slow
def test_fortunes_replace_loses_rare_categories_and_ngrams(fortunes_runs) -> None:  # noqa: ANN001
    replace, _ = fortunes_runs
    for check in validation.fortunes_replace_loses_tails(replace):
        assert check.passed, check


@pytest.mark.slow
def test_fortunes_anchored_keeps_tail_recall(fortunes_runs) -> None:  # noqa: ANN001
    _, anchored = fortunes_runs
    check = validation.fortunes_anchored_keeps_tails(anchored)
    assert check.passed, check
