import pytest

from tailguard.advise import MINIMUM, TaskProfile, advise
from tailguard.costs import CostModel
from tailguard.errors import ConfigError


@pytest.mark.parametrize(
    ("profile", "strategy", "fraction"),
    [
        (TaskProfile(stakes="high", task="narrow", verifiable=True), "human-anchored", 0.5),
        (TaskProfile(stakes="low", task="open-ended"), "human-anchored", 0.5),
        (
            TaskProfile(stakes="low", task="narrow", verifiable=True),
            "synthetic-leaning, gated",
            0.15,
        ),
        (TaskProfile(stakes="low", task="general"), "hybrid (anchored)", 0.2),
        (TaskProfile(stakes="low", task="narrow", verifiable=False), "hybrid (anchored)", 0.2),
    ],
)
def test_decision_rule(profile, strategy, fraction):
    advice = advise(profile)
    assert advice.strategy == strategy
    assert advice.real_fraction == fraction
    assert advice.real_fraction >= MINIMUM
    assert any("reservoir" in r for r in advice.reasons)


def test_verifiable_narrow_tasks_gate_with_their_checker():
    gate = advise(TaskProfile(task="narrow", verifiable=True)).gate
    assert any("code_tests" in g for g in gate)


def test_cost_follows_the_cost_model():
    advice = advise(
        TaskProfile(task="general", examples_per_round=1000),
        costs=CostModel(human=1.0, synthetic=0.0, verification=0.0),
    )
    assert advice.cost_per_round == pytest.approx(200.0)


def test_a_tight_budget_lowers_the_fraction_but_never_below_the_minimum():
    costs = CostModel(human=1.0, synthetic=0.0, verification=0.0)
    tight = advise(TaskProfile(task="general", budget=170, examples_per_round=1000), costs=costs)
    assert tight.real_fraction == pytest.approx(0.17)
    broke = advise(TaskProfile(task="general", budget=10, examples_per_round=1000), costs=costs)
    assert broke.real_fraction == 0.2
    assert any("minimum" in r for r in broke.reasons)


@pytest.mark.parametrize(
    "kwargs",
    [dict(stakes="medium"), dict(task="poetry"), dict(budget=-1), dict(examples_per_round=0)],
)
def test_bad_profiles_are_refused(kwargs):
    with pytest.raises(ConfigError):
        TaskProfile(**kwargs)


def test_cli_prints_strategy_and_refuses_bad_values():
    import json

    from typer.testing import CliRunner

    from tailguard.cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["advise", "--stakes", "high", "--task", "open-ended", "--json"])
    assert out.exit_code == 0
    assert json.loads(out.output)["strategy"] == "human-anchored"
    bad = runner.invoke(app, ["advise", "--verifiable", "maybe"])
    assert bad.exit_code == 2 and "yes or no" in bad.output


def test_lab_evidence_says_which_strategies_kept_their_tails():
    from tailguard.advise import advise_from_lab

    axes = [
        {
            "strategy": "replace",
            "coverage_vs_baseline": 0.55,
            "cost_per_generation": 4.0,
            "fidelity_loss": 0.4,
            "recovered_share": 0.0,
        },
        {
            "strategy": "anchored",
            "coverage_vs_baseline": 0.97,
            "cost_per_generation": 24.0,
            "fidelity_loss": 0.05,
            "recovered_share": 1.0,
        },
    ]
    lines = advise_from_lab(advise(TaskProfile()), axes).lines()
    assert lines[-2].startswith("lab evidence: anchored kept its tails (coverage 97%")
    assert lines[-1].startswith(
        "lab evidence: replace lost its tails (coverage 55% of baseline, did not recover"
    )
