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
    assert bad.exit_code == 2 and "maybe" in bad.output  # --verifiable is a flag (or yes|no)


def test_lab_evidence_says_which_strategies_kept_their_tails():
    from tailguard.advise import advise_from_lab

    axes = [
        {
            "strategy": "replace", "coverage_vs_baseline": 0.55, "held": False,
            "coverage_drift": 3.0, "cost_per_generation": 4.0,
            "fidelity_loss": 0.4, "recovery_rounds": 3.0, "recovery_cost": 11.86,
            "recovered_share": 2 / 3, "seeds": 3,
        },
        {
            # the evidence module's verdict decides, not a ratio: 85% is inside this band
            "strategy": "anchored", "coverage_vs_baseline": 0.85, "held": True,
            "coverage_drift": 0.9, "cost_per_generation": 24.0,
            "fidelity_loss": 0.05, "recovery_rounds": 0.0, "recovery_cost": 0.0,
            "recovered_share": 1.0, "seeds": 3,
        },
        {
            "strategy": "accumulate", "coverage_vs_baseline": 0.6, "held": False,
            "coverage_drift": 2.5, "cost_per_generation": 2.0,
            "fidelity_loss": 0.3, "recovery_rounds": float("inf"), "recovery_cost": 5.0,
            "recovered_share": 0.0, "seeds": 3,
        },
    ]  # fmt: skip
    lines = advise_from_lab(advise(TaskProfile()), axes).lines()
    assert lines[-3] == (
        "lab evidence: anchored kept its tails (coverage 85% of the clean model's, drift 0.9 "
        "band half-widths; fidelity loss 0.050; $24.00 per generation)"
    )
    # the words state the axes table's own numbers: seeds back, median rounds, dollars
    assert lines[-2].startswith(
        "lab evidence: accumulate lost its tails (coverage 60% of the clean model's, drift 2.5 "
        "band half-widths; after switching to anchoring recovered in 0 of 3 seeds, median "
        "never, $5.00;"
    )
    assert lines[-1].startswith(
        "lab evidence: replace lost its tails (coverage 55% of the clean model's, drift 3.0 "
        "band half-widths; after switching to anchoring recovered in 2 of 3 seeds, median 3 "
        "rounds, $11.86;"
    )


def test_the_recommended_configuration_is_priced_as_itself():
    from tailguard.advise import advise_from_lab

    axes = [
        {"strategy": s, "coverage_vs_baseline": 1.0, "held": True, "coverage_drift": 0.0,
         "cost_per_generation": c,
         "fidelity_loss": 0.0, "recovery_rounds": 0.0, "recovery_cost": 0.0,
         "recovered_share": 1.0, "seeds": 2}
        for s, c in (("anchored-share", 1.95), ("anchored-gated", 12.98))
    ]  # fmt: skip
    advice = advise_from_lab(advise(TaskProfile(task="general")), axes)
    assert advice.strategy == "hybrid (anchored)"
    assert advice.cost_per_round == 12.98
    assert advice.cost_line().startswith(
        "data cost per round: $12.98 (measured: the lab's anchored-gated run"
    )


def test_a_verifiable_high_stakes_task_is_not_told_it_has_no_checker():
    lines = advise(TaskProfile(stakes="high", task="narrow", verifiable=True)).lines()
    assert not any("no checker" in line for line in lines)
    assert any("checker misses" in line for line in lines)
    assert any("no checker" in line for line in advise(TaskProfile(stakes="high")).lines())


def _ledger_with_falling_tails(path):
    from tailguard.ledger import Ledger
    from tailguard.monitor import NOISE_FLOOR_SAMPLE, Monitor

    mon = Monitor()
    mon.record_values(0, {"tail_recall": 1.0, "distinct_2": 0.7}, sample=NOISE_FLOOR_SAMPLE)
    for r, (t, d) in enumerate([(0.96, 0.75), (0.92, 0.7), (0.83, 0.69)]):
        mon.record_values(r, {"tail_recall": t, "distinct_2": d})
    with Ledger.open(path) as led:
        led.write_metrics(mon.history)
    return path


def test_advise_ledger_and_the_report_say_the_same_words(tmp_path):
    from typer.testing import CliRunner

    from tailguard.advise import recommendation_lines
    from tailguard.cli import app
    from tailguard.ledger import Ledger

    path = _ledger_with_falling_tails(tmp_path / "l.duckdb")
    with Ledger.open(path, read_only=True) as led:
        lines = recommendation_lines(led)
    assert lines[0].startswith("2 active alert(s)")
    assert "raise the human share 20% -> 25%" in lines[0]
    # one share: the next round's, never the profile's starting share beside it
    assert lines[1].startswith("hybrid (anchored): 25% human per batch next round")
    assert not any("start at" in line for line in lines)
    out = CliRunner().invoke(app, ["advise", "--ledger", str(path)])
    assert out.exit_code == 0, out.output
    printed = [line.strip().removeprefix("• ") for line in out.output.splitlines()]
    assert " ".join(printed) == " ".join(lines)
    html = tmp_path / "r.html"
    out = CliRunner().invoke(app, ["report", "--ledger", str(path), "-o", str(html)])
    assert out.exit_code == 0, out.output
    import html as html_lib

    page = html_lib.unescape(html.read_text())
    assert all(line in page for line in lines)


def test_without_alerts_the_recommendation_follows_the_dial():
    from tailguard.advise import recommend
    from tailguard.mix import Dial, Evidence

    e = Evidence(metric="tail_recall", value=0.99, baseline=1.0, relative_change=-0.01,
                 threshold=0.1, degraded=False, round=3)  # fmt: skip
    dial = Dial(start=0.3, patience=1)
    advice = recommend([e], dial=dial)
    assert advice.next_fraction == 0.25
    assert advice.headline == "no active alerts: lower the human share 30% -> 25% next round"
    assert not any("start at" in line for line in advice.lines())


def test_lab_words_follow_the_alerts_of_the_last_generation():
    """A strategy whose coverage looks fine but which the monitor alerts on at the last
    generation is not said to keep its tails; one alerted only earlier is."""
    import pyarrow as pa

    from tailguard.advise import advise_from_lab

    axes = [
        {"strategy": s, "coverage_vs_baseline": 1.0, "cost_per_generation": 1.0,
         "fidelity_loss": 0.0, "recovery_rounds": 0.0, "recovery_cost": 0.0,
         "recovered_share": 1.0, "seeds": 2, "held": True, "coverage_drift": 0.2}
        for s in ("anchored-gated", "anchored")
    ]  # fmt: skip
    alerts = pa.table({
        "strategy": ["anchored-gated", "anchored-gated", "anchored"],
        "seed": [0, 1, 0], "round": [3, 3, 1], "sample": ["model"] * 3,
        "rule": ["early_warning", "threshold", "threshold"],
        "metrics": ["distinct_2, tail_recall", "distinct_2", "tail_recall"],
        "message": ["m"] * 3,
    })  # fmt: skip
    words = " ".join(
        advise_from_lab(advise(TaskProfile()), axes, alerts=alerts, generations=3).lines()
    )
    assert "anchored-gated kept its tails" not in words
    assert (
        "anchored-gated did not keep all its tails (alerted at generation 3 in 2 of 2 seeds, "
        "distinct_2, tail_recall outside the clean model's band; its tail and coverage "
        "metrics held in the median seed)" in words
    )
    assert "anchored kept its tails (coverage" in words
    axes[1]["held"] = False  # the axes' verdict stands where no alert says otherwise
    words = " ".join(
        advise_from_lab(advise(TaskProfile()), axes, alerts=alerts, generations=3).lines()
    )
    assert "anchored lost its tails (coverage" in words
