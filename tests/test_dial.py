"""The Dial: bounded, moves the right way, and resumes identically from stored decisions."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailguard.errors import ConfigError, InputError
from tailguard.mix import Decision, Dial, Evidence

SETTINGS = settings(max_examples=80, deadline=None)


def ev(metric: str, degraded: bool, change: float = -0.12) -> Evidence:
    return Evidence(
        metric=metric,
        value=0.8,
        baseline=0.9,
        relative_change=change,
        threshold=0.1,
        degraded=degraded,
    )


def history(flags: list[bool], metric: str = "tail_coverage") -> list[list[Evidence]]:
    return [[ev(metric, flag)] for flag in flags]


def run(dial: Dial, rounds: list[list[Evidence]]) -> list[Decision]:
    return [dial.decide(r + 1, evidence) for r, evidence in enumerate(rounds)]


def test_one_evidence_type_round_trips_and_reads_stored_decisions():
    assert Evidence.from_dict(ev("x", True).to_dict()) == ev("x", True)
    stored = {"metric": "x", "value": 0.8, "baseline": 0.9, "change": -0.12}
    assert Evidence.from_dict({**stored, "threshold": 0.1, "degraded": True}) == ev("x", True)
    assert ev("x", True).change == -0.12


def test_the_monitor_reports_the_dials_evidence_type():
    from tailguard import monitor

    assert monitor.Evidence is Evidence


def test_degradation_raises_the_real_fraction():
    dial = Dial(start=0.2, step=0.05, watch=["tail_coverage"])
    d = dial.decide(1, [ev("tail_coverage", True), ev("vendi", False)])
    assert d.real_fraction == 0.25
    assert "raised" in d.reason and "tail_coverage" in d.reason
    assert d.evidence["degraded"] == ["tail_coverage"]
    assert d.evidence["metrics"][0]["value"] == 0.8


def test_lowering_waits_for_patience():
    dial = Dial(start=0.5, minimum=0.15, step=0.1, patience=3)
    fractions = [d.real_fraction for d in run(dial, history([False] * 7))]
    assert fractions == [0.5, 0.5, 0.4, 0.4, 0.4, 0.3, 0.3]


def test_a_degradation_resets_the_patience_count():
    dial = Dial(start=0.5, step=0.1, patience=2)
    fractions = [d.real_fraction for d in run(dial, history([False, True, False, False]))]
    assert fractions == [0.5, 0.6, 0.6, 0.5]


def test_unwatched_metrics_are_ignored_and_missing_ones_hold():
    dial = Dial(start=0.3, watch=["tail_coverage"], patience=1)
    d = dial.decide(1, [ev("vendi", True)])
    assert d.real_fraction == 0.3 and "no evidence for tail_coverage" in d.reason
    assert dial.decide(2, [ev("tail_coverage", False)]).real_fraction == 0.25


def test_the_degraded_flag_is_the_truth_not_the_sign():
    dial = Dial(start=0.3)
    assert dial.decide(1, [ev("perplexity", True, change=+0.4)]).real_fraction == 0.35


@SETTINGS
@given(
    flags=st.lists(st.booleans(), max_size=40),
    start=st.floats(0.15, 0.9),
    step=st.floats(0.01, 0.5),
    patience=st.integers(1, 4),
)
def test_the_dial_never_leaves_its_bounds(flags, start, step, patience):
    dial = Dial(start=start, minimum=0.15, maximum=0.9, step=step, patience=patience)
    for d in run(dial, history(flags)):
        assert 0.15 <= d.real_fraction <= 0.9


@SETTINGS
@given(n=st.integers(1, 30), start=st.floats(0.15, 0.9), patience=st.integers(1, 4))
def test_steady_histories_only_lower_and_degrading_ones_only_raise(n, start, patience):
    steady = [
        d.real_fraction for d in run(Dial(start=start, patience=patience), history([False] * n))
    ]
    assert all(b <= a for a, b in zip([start, *steady], steady, strict=False))
    if n >= patience * 20:
        assert steady[-1] == 0.15
    bad = [d.real_fraction for d in run(Dial(start=start, patience=patience), history([True] * n))]
    assert all(b >= a for a, b in zip([start, *bad], bad, strict=False))
    assert bad[0] == min(0.9, round(start + 0.05, 10))


@SETTINGS
@given(flags=st.lists(st.booleans(), min_size=1, max_size=25), cut=st.integers(0, 25))
def test_a_resumed_dial_continues_identically(flags, cut):
    cut = min(cut, len(flags))
    params = dict(start=0.3, step=0.05, patience=2, watch=["tail_coverage"])
    whole = run(Dial(**params), history(flags))
    # store the first `cut` decisions the way the ledger does (JSON evidence), then resume
    stored = pa.table(
        {
            "run": ["main"] * cut,
            "round": [d.round for d in whole[:cut]],
            "real_fraction": [d.real_fraction for d in whole[:cut]],
            "reason": [d.reason for d in whole[:cut]],
            "evidence": [json.dumps(d.evidence, sort_keys=True) for d in whole[:cut]],
        }
    )
    resumed = Dial.resume(stored) if cut else Dial(**params)
    rest = [resumed.decide(r + 1, h) for r, h in enumerate(history(flags)) if r >= cut]
    assert [d.real_fraction for d in rest] == [d.real_fraction for d in whole[cut:]]
    assert [d.reason for d in rest] == [d.reason for d in whole[cut:]]


def test_state_round_trips():
    dial = Dial(start=0.4, patience=3)
    run(dial, history([False, False]))
    clone = Dial.from_state(dial.params(), dial.state)
    assert clone.state == dial.state and clone.params() == dial.params()
    assert clone.decide(3, [ev("x", False)]) == dial.decide(3, [ev("x", False)])


def test_resume_with_other_parameters_is_refused():
    decisions = run(Dial(start=0.3, step=0.1), history([True]))
    rows = [
        {
            "run": "main",
            "round": d.round,
            "real_fraction": d.real_fraction,
            "evidence": json.dumps(d.evidence),
        }
        for d in decisions
    ]
    with pytest.raises(ConfigError, match="resume with the parameters"):
        Dial.resume(rows, start=0.3, step=0.05)


@pytest.mark.parametrize(
    "params",
    [
        dict(minimum=0.0),
        dict(start=0.1, minimum=0.15),
        dict(maximum=1.5),
        dict(step=0),
        dict(patience=0),
        dict(start=0.95),
    ],
)
def test_bad_parameters_are_refused(params):
    with pytest.raises(ConfigError):
        Dial(**params)


def test_rounds_must_advance_and_evidence_must_fit_the_protocol():
    dial = Dial()
    dial.decide(2, [])
    with pytest.raises(ConfigError, match="already decided"):
        dial.decide(2, [])
    with pytest.raises(InputError, match="lacks"):
        dial.decide(3, [{"metric": "x"}])
