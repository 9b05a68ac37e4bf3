"""The lab's "held", "collapsed" and "recovered" are the evidence module's verdicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from tailguard import evidence, lab
from tailguard.advise import TaskProfile, advise, advise_from_frontier, advise_from_lab
from tailguard.lab.evaluation import PRESETS, clean_bands
from tailguard.lab.frontier import Frontier
from tailguard.metrics import get_preset
from tailguard.monitor import Monitor

SMALL = {
    "model": "categorical", "volume": 200, "batch_size": 20, "seeds": 2, "workers": 1,
    "progress": False,
}  # fmt: skip
METRIC = "rare_vocab_coverage"  # tokens: the primary and the coverage metric


def independent_band(history: pd.DataFrame, run: str) -> evidence.Band:
    """The band of one seed built here from its stored draws, without the lab's helpers."""
    rows = history[(history["run"] == run) & (history["metric"] == METRIC)]
    clean = rows[(rows["round"] == 0) & rows["sample"].str.match(r"^model(#\d+)?$")]
    assert len(clean) == evidence.CLEAN_DRAWS  # the clean model and its four draws
    threshold = get_preset("lab-tokens").thresholds[METRIC]
    return evidence.band(clean["value"].to_numpy(), higher_is_better=True, threshold=threshold)


@pytest.fixture(scope="module")
def result():
    return lab.run(
        strategies="replace,anchored", generations=4, recovery_rounds=3, out=None, **SMALL
    )


def test_held_recovered_and_the_advisors_words_agree_with_the_evidence_module(result):
    history = result.ledger_metrics.to_pandas()
    axes = {r["strategy"]: r for r in result.axes.to_pylist()}
    recovery = result.recovery.to_pandas().set_index(["strategy", "seed"])
    after = result.recovery_metrics.to_pandas()
    lines = advise_from_lab(advise(TaskProfile()), result.axes).evidence
    for strategy, row in axes.items():
        drifts, back = [], []
        for seed in range(2):
            run = f"{strategy}/seed{seed}"
            b = independent_band(history, run)
            model = history[(history["run"] == run) & (history["sample"] == "model")]
            last = model[(model["round"] == 4) & (model["metric"] == METRIC)]["value"].item()
            drifts.append(evidence.drift(last, b))
            rec = recovery.loc[(strategy, seed)]
            assert bool(rec["collapsed"]) == evidence.degraded(last, b)
            if rec["collapsed"]:
                mine = after[(after["strategy"] == strategy) & (after["seed"] == seed)]
                values = mine[mine["metric"] == METRIC].sort_values("round")["value"]
                rounds = evidence.recovery_round(values.to_numpy(), b)
                assert bool(rec["recovered"]) == (rounds is not None)
                if rounds is not None:
                    assert rec["rounds"] == rounds
            back.append(bool(rec["recovered"]))
        assert row["held"] == evidence.held_across(drifts)
        assert row["coverage_drift"] == pytest.approx(float(np.median(drifts)))
        assert row["recovered_share"] == pytest.approx(np.mean(back))
        said = next(line for line in lines if f"evidence: {strategy} " in line)
        assert ("kept its tails" in said) == row["held"]


def test_the_lab_band_is_the_monitors_band(result):
    history = result.ledger_metrics
    run = "replace/seed0"
    mine = clean_bands(history.filter(pa.compute.equal(history["run"], run)), "tokens")
    monitor = Monitor.from_history(history, run=run, preset=PRESETS["tokens"]).bands(run)
    assert mine[METRIC] == monitor[METRIC]


def test_the_frontier_held_is_held_across_the_stored_draws():
    fr = lab.frontier(fractions=(0.0, 0.5), generations=4, **SMALL)
    table = fr.table.to_pandas()
    assert set(table.columns) >= {"band", "coverage_band", "tail_drift", "coverage_drift"}
    assert (table["band"] >= 0.15 - 1e-9).all()  # never narrower than the preset's 15%
    # rebuild it from a plain lab run of the same configuration (same seeds: same draws)
    again = lab.run(strategies=["anchored-share"], real_fraction=0.5, generations=4,
                    recovery_rounds=0, out=None, **SMALL)  # fmt: skip
    history = again.ledger_metrics.to_pandas()
    drifts = []
    for seed in range(2):
        run = f"anchored-share/seed{seed}"
        b = independent_band(history, run)
        rows = history[(history["run"] == run) & (history["sample"] == "model")]
        drifts.append(evidence.drift(rows[(rows["round"] == 4) & (rows["metric"] == METRIC)]
                                     ["value"].item(), b))  # fmt: skip
    assert fr.row(0.5)["held"] == evidence.held_across(drifts)
    assert fr.row(0.5)["coverage_drift"] == pytest.approx(float(np.median(drifts)))


def frontier_of(held: dict[float, bool]) -> Frontier:
    table = pa.table({
        "real_fraction": list(held), "held": list(held.values()), "strategy": ["x"] * len(held),
        "tail_ratio": [1.0] * len(held), "coverage_ratio": [1.0] * len(held),
        "band": [0.15] * len(held), "coverage_band": [0.15] * len(held),
        "cost_per_round": [1.0] * len(held), "human_per_round": [10] * len(held),
    })  # fmt: skip
    return Frontier(table, "categorical", 300, 10)


@pytest.mark.parametrize(
    ("held", "lowest", "says"),
    [
        ({0.0: False, 0.1: False, 0.2: True, 1.0: True}, 0.2, "lowest real fraction whose tails"),
        ({0.0: True, 0.5: True, 1.0: True}, None, "no fraction collapsed within 10 generations"),
        ({0.0: False, 0.5: False, 1.0: False}, None, "every fraction collapsed"),
        ({0.0: False, 0.5: True, 1.0: False}, None, "the highest swept fraction (1) collapsed"),
        ({0.0: False, 0.1: True, 0.2: False, 1.0: True}, 1.0, "0, 0.2 collapsed"),
    ],
)
def test_the_frontier_names_a_safe_share_only_when_the_sweep_shows_one(held, lowest, says):
    fr = frontier_of(held)
    assert fr.lowest_safe == lowest and says in fr.evidence
    rule = advise(TaskProfile(task="general"))
    advice = advise_from_frontier(rule, fr)
    if lowest is None:  # nothing recommended from it: the rule's fraction stands
        assert advice.real_fraction == rule.real_fraction
        assert "no evidence for a share from the frontier" in advice.evidence[-1]
        assert not any("human examples per round" in e for e in advice.evidence)
    else:
        assert advice.real_fraction == pytest.approx(min(1.0, max(lowest + 0.05, 0.15)))


def test_a_sweep_where_nothing_collapses_says_it_has_no_evidence():
    fr = lab.frontier(fractions=(0.5, 1.0), generations=2, **SMALL)
    assert fr.table["held"].to_pylist() == [True, True]
    assert fr.lowest_safe is None and fr.evidence.startswith("no fraction collapsed")
