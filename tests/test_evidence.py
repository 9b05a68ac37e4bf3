"""The one meaning of the evidence: bands, drift, verdicts, capacity gaps (reference values)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tailguard.evidence import (
    NOISE_Z,
    band,
    capacity_gap,
    degraded,
    drift,
    held_across,
    recovery_round,
    verdict,
)
from tailguard.metrics.registry import Threshold


def test_band_is_z_sd_of_the_draws_open_on_the_good_side() -> None:
    draws = [0.20, 0.22, 0.24, 0.26, 0.28]
    b = band(draws, higher_is_better=True)
    sd = float(np.std(draws, ddof=1))  # 0.0316...
    assert b.center == pytest.approx(0.24)
    assert b.half_width == pytest.approx(NOISE_Z * sd)
    assert b.low == pytest.approx(0.24 - NOISE_Z * sd) and b.high == math.inf
    assert verdict(0.24 - NOISE_Z * sd - 1e-6, b) == "degraded"
    assert verdict(0.24 - NOISE_Z * sd + 1e-6, b) == "held"
    assert verdict(0.9, b) == "improved"  # more of a tail is no loss


def test_threshold_is_the_smallest_band() -> None:
    b = band([0.5, 0.5, 0.5], higher_is_better=False, threshold=Threshold("relative", 0.1))
    assert b.half_width == pytest.approx(0.05) and b.low == -math.inf
    assert b.high == pytest.approx(0.55)
    assert degraded(0.56, b) and not degraded(0.54, b) and not degraded(0.0, b)
    c = band([0.1], higher_is_better=True, threshold=Threshold("change", 0.05), noise=0.001)
    assert c.half_width == pytest.approx(0.05)
    assert band([0.1], higher_is_better=True, noise=0.02).half_width == pytest.approx(0.06)


def test_two_sided_and_absolute_limits() -> None:
    b = band([1.0, 1.02, 0.98], higher_is_better=None, ideal=1.0)
    off = band([0.9, 0.92, 0.88], higher_is_better=None, ideal=1.0)  # clean model off its ideal
    assert off.high == pytest.approx(1.1 + NOISE_Z * 0.02) and not degraded(1.0, off)
    w = NOISE_Z * 0.02
    assert (b.low, b.high) == (pytest.approx(1 - w), pytest.approx(1 + w))
    assert degraded(1 + w + 1e-6, b) and degraded(1 - w - 1e-6, b) and not degraded(1.0, b)
    dens = band([1.0, 1.1], higher_is_better=False, threshold=Threshold("above", 1.5))
    assert dens.high == 1.5 and dens.low == -math.inf
    assert degraded(1.51, dens) and not degraded(1.49, dens)
    assert drift(1.5, dens) == pytest.approx(1.0)


@given(
    st.lists(st.floats(-100, 100), min_size=2, max_size=8),
    st.floats(-300, 300),
    st.sampled_from([True, False, None]),
)
def test_outside_the_band_is_exactly_degraded(draws: list[float], value: float, hib) -> None:
    b = band(draws, higher_is_better=hib, threshold=Threshold("relative", 0.1))
    inside = b.low <= value <= b.high
    assert degraded(value, b) == (not inside) or math.isclose(
        abs(value - b.center), b.half_width, rel_tol=1e-9
    )


def test_held_across_seeds_and_recovery() -> None:
    assert held_across([0.2, 0.9, 3.0]) and not held_across([0.2, 1.5, 3.0])
    assert not held_across([])
    b = band([1.0, 1.0], higher_is_better=True, threshold=Threshold("relative", 0.05))
    assert recovery_round([0.5, 0.8, 0.97, 1.0], b) == 3
    assert recovery_round([0.5, 0.6], b) is None


def test_capacity_gap_is_the_clean_model_against_people() -> None:
    b = band([0.234, 0.236, 0.232], higher_is_better=True, threshold=Threshold("relative", 0.15))
    gap = capacity_gap("rare_vocab_coverage", b, 0.301)
    assert gap is not None and gap.gap == pytest.approx((0.301 - 0.234) / 0.301)
    assert "higher human share does not" in gap.describe()
    assert capacity_gap("rare_vocab_coverage", b, 0.25) is None  # within the band's width
    assert capacity_gap("rare_vocab_coverage", b, 0.2) is None  # better than people


def test_a_gap_on_a_tiny_base_is_said_in_absolute_terms() -> None:
    b = band([0.78, 0.79, 0.77], higher_is_better=False, threshold=Threshold("change", 0.25))
    gap = capacity_gap("length_shift", b, 0.067)
    assert gap is not None and gap.behind == pytest.approx(0.78 - 0.067)
    assert "(0.713 behind, absolute)" in gap.describe()
