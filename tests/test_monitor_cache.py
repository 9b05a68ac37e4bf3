"""The per-process noise-floor cache keeps the like-for-like baseline's dependencies."""

from __future__ import annotations

import pytest

from tailguard import monitor as monitor_module
from tailguard.loop import human_baseline
from tailguard.monitor import Monitor


@pytest.fixture
def evaluations(monkeypatch):
    """A fresh cache, and a count of the metric evaluations made."""
    monkeypatch.setattr(monitor_module, "_PREPARED", {})
    calls: list[int] = []
    original = monitor_module.evaluate
    monkeypatch.setattr(
        monitor_module, "evaluate", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    return calls


def _values(rows) -> dict[str, float]:
    return dict(zip(rows["metric"].to_pylist(), rows["value"].to_pylist(), strict=True))


def test_a_baseline_of_another_sample_size_is_measured_not_taken_from_the_cache(
    frozen, evaluations
):
    small = human_baseline(frozen, Monitor(seed=11), run="a", write=False, size=10)
    assert len(evaluations) == 3  # three disjoint draws of 10 from 48 training texts
    again = human_baseline(frozen, Monitor(seed=11), run="b", write=False, size=10)
    assert len(evaluations) == 3 and _values(again) == _values(small)
    large = human_baseline(frozen, Monitor(seed=11), run="c", write=False, size=20)
    assert len(evaluations) == 5  # two draws of 20: measured, not the size-10 values
    train = frozen.reservoir_records("train")
    holdout = frozen.reservoir_records("holdout")
    direct = Monitor(seed=11).set_reference(holdout["content"], holdout["label"])
    expected = direct.record_noise_floor(train["content"], train["label"], size=20)
    assert _values(large) == _values(expected)
    assert _values(large) != _values(small)


def test_a_monitor_with_its_own_reference_neither_reads_nor_fills_the_cache(frozen, evaluations):
    human_baseline(frozen, Monitor(seed=11), run="a", write=False, size=10)
    assert len(evaluations) == 3
    train = frozen.reservoir_records("train")
    own = Monitor(seed=11).set_reference(train["content"], train["label"])  # not the holdout
    rows = human_baseline(frozen, own, run="b", write=False, size=10)
    assert len(evaluations) == 6
    expected = (
        Monitor(seed=11)
        .set_reference(train["content"], train["label"])
        .record_noise_floor(train["content"], train["label"], size=10)
    )
    assert _values(rows) == _values(expected)
    digest = frozen.reservoir().digest
    assert own.cached_noise_floor(digest, True, size=10) is None
    assert len(monitor_module._PREPARED) == 2  # the holdout reference and its floor only
