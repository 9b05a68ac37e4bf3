"""One cost function, one figure: the lab, the frontier, the advisor and the report agree."""

from __future__ import annotations

import numpy as np
import pytest

from tailguard.costs import CostModel, RoundUsage
from tailguard.errors import ConfigError


# ----------------------------------------------------------------------- the function
def test_round_cost_reference_values() -> None:
    c = CostModel()  # $1 human, $0.002 generated, $0.01 verified
    # round 0: a reservoir of 1,000 owned, nothing generated
    assert c.round_cost(RoundUsage(reservoir_owned=1000)) == pytest.approx(1000.0)
    # a gated round: 1,000 generated and verified, 10 fresh human examples bought
    usage = RoundUsage(human_bought=10, generated=1000, verified=1000)
    assert c.round_cost(usage) == pytest.approx(10 + 2 + 10)
    # an ungated round: generated only
    assert c.round_cost(RoundUsage(generated=975)) == pytest.approx(1.95)
    priced = CostModel(human=0.5, synthetic=0.001, verification=0.02)
    assert priced.round_cost(usage) == pytest.approx(5 + 1 + 20)
    assert c.round_cost(RoundUsage()) == 0


def test_round_cost_over_columns_is_the_same_function() -> None:
    summary = {
        "round": np.array([0, 1, 2]),
        "bought": np.array([0, 110, 0]),
        "generated": np.array([0, 100, 100]),
        "verified": np.array([0, 100, 0]),
    }
    usage = RoundUsage.from_summary(summary, reservoir=90)
    assert usage.reservoir_owned.tolist() == [90, 0, 0]  # owned once, in round 0
    costs = CostModel().round_cost(usage)
    assert costs.tolist() == pytest.approx([90.0, 110 + 0.2 + 1.0, 0.2])
    for i in range(3):
        one = RoundUsage(
            human_bought=int(summary["bought"][i]), reservoir_owned=90 * (i == 0),
            generated=int(summary["generated"][i]), verified=int(summary["verified"][i]),
        )  # fmt: skip
        assert CostModel().round_cost(one) == costs[i]


def test_prices_come_from_the_config_with_the_cost_models_defaults() -> None:
    from tailguard.config import validate

    assert CostModel(**validate({}).costs.model_dump()) == CostModel()
    section = validate({"costs": {"human": 2, "verification": 0.5}}).costs
    assert CostModel(**section.model_dump()) == CostModel(human=2.0, verification=0.5)
    for bad in ({"human": -1}, {"synthetic": "cheap"}, {"human": True}, {"tokens": 1}):
        with pytest.raises(ConfigError, match="costs"):
            validate({"costs": bad})
    assert CostModel.parse("human=0.5") == CostModel(human=0.5)


# ----------------------------------------------------------------- every page agrees
@pytest.fixture(scope="module")
def lab_and_frontier():
    from tailguard import lab

    result = lab.run(
        model="ngram", data="fortunes", strategies=("human_only", "replace", "anchored_gated"),
        generations=2, seeds=2, volume=200, workers=1, recovery_rounds=1, out=None,
        progress=False,
    )  # fmt: skip
    front = lab.frontier(
        model="ngram", data="fortunes", fractions=(0.0, 0.5, 1.0), generations=2, seeds=2,
        volume=200, workers=1, known=result, progress=False,
    )  # fmt: skip
    return result, front


def test_lab_frontier_chart_advice_and_report_quote_one_figure(lab_and_frontier) -> None:
    from tailguard.advise import TaskProfile, advise, advise_from_frontier, advise_from_lab
    from tailguard.report import from_lab, money, render

    result, front = lab_and_frontier
    axes = result.axes.to_pandas().set_index("strategy")
    table = front.table.to_pandas().set_index("strategy")
    points = front.points().set_index("real_fraction")
    rounds = result.rounds.to_pandas()
    costs = result.config.costs
    for strategy, f in (("replace", 0.0), ("human-only", 1.0)):  # one configuration each
        per_gen = axes.loc[strategy, "cost_per_generation"]
        assert table.loc[strategy, "cost_per_round"] == per_gen
        assert points.loc[f, "x"] == per_gen  # the chart plots the table's figure
        # and that figure is the cost function over what the rounds used
        g = result.config.generations  # the run's synthetic rounds, not the recovery ones
        r = rounds[(rounds.strategy == strategy) & rounds["round"].between(1, g)]
        priced = costs.round_cost(
            RoundUsage(human_bought=r.bought.to_numpy(), generated=r.generated.to_numpy(),
                       verified=r.verified.to_numpy())
        )  # fmt: skip
        assert np.allclose(priced, r.cost)
        assert per_gen == pytest.approx(r.groupby("seed")["cost"].mean().median())
    # the reservoir (round 0 trains on all of it) is owned once, in round 0, by every strategy
    round0 = rounds[rounds["round"] == 0]
    assert np.allclose(round0["cost"], round0["human"] * costs.human)

    advice = advise_from_frontier(
        advise_from_lab(advise(TaskProfile(task="general")), result.axes,
                        strategy="anchored-gated"), front,
    )  # fmt: skip
    gated = axes.loc["anchored-gated", "cost_per_generation"]
    lines = advice.lines()
    if front.lowest_safe is None:  # no share from the frontier: the lab's gated hybrid
        assert advice.cost_per_round == gated  # the gated hybrid, priced as itself
        assert f"data cost per round: ${gated:,.2f} (measured: the lab's anchored-gated" in (
            "\n".join(lines)
        )
    else:  # the recommended share is its own configuration, priced by the cost function
        synthetic = round((1 - advice.real_fraction) * front.volume)  # the reservoir is owned
        expected = synthetic * (costs.synthetic + costs.verification)
        assert (expected == 0) == (advice.real_fraction == 1.0)
        assert advice.cost_per_round == pytest.approx(expected)
        assert f"data cost per round: ${expected:,.2f} (estimated for the recommendation" in (
            "\n".join(lines)
        )
    for strategy in axes.index:  # every lab evidence line quotes the axes row
        line = next(x for x in lines if x.startswith(f"lab evidence: {strategy} "))
        assert f"${axes.loc[strategy, 'cost_per_generation']:,.2f} per generation" in line
        if axes.loc[strategy, "recovery_rounds"] > 0:
            seeds = int(axes.loc[strategy, "seeds"])
            back = round(axes.loc[strategy, "recovered_share"] * seeds)
            assert f"recovered in {back} of {seeds} seeds" in line
            assert f"${axes.loc[strategy, 'recovery_cost']:,.2f}" in line
    if front.lowest_safe is not None:
        row = front.row(front.lowest_safe)
        assert any(f"${row['cost_per_round']:,.2f} per synthetic round" in x for x in lines)

    data = from_lab(result)
    data.recommendation = lines
    page = render(data)
    assert f"${gated:,.2f}" in page
    for strategy in axes.index:
        assert money(axes.loc[strategy, "cost_per_generation"]) in page
        assert money(axes.loc[strategy, "cost"]) in page


def test_the_frontier_refuses_a_comparison_priced_otherwise(lab_and_frontier) -> None:
    from tailguard import lab

    result, _ = lab_and_frontier
    with pytest.raises(ConfigError, match="priced at"):
        lab.frontier(
            model="ngram", data="fortunes", fractions=(0.0, 1.0), generations=2, seeds=2,
            volume=200, workers=1, known=result, progress=False, costs=CostModel(human=2.0),
        )  # fmt: skip


# ------------------------------------------------------------- a project's advisor
@pytest.fixture(scope="module")
def project_ledger(tmp_path_factory):
    """A small project ledger: a reservoir, round 0 and two gated synthetic rounds."""
    from tailguard.lab.config import LabConfig
    from tailguard.lab.job import _Job
    from tailguard.ledger import Ledger

    path = tmp_path_factory.mktemp("project") / "ledger.duckdb"
    config = LabConfig(
        model="ngram", data="fortunes", strategies=("anchored_gated",), generations=2, seeds=1,
        volume=200, recovery_rounds=0,
    )  # fmt: skip
    job = _Job(config, "anchored-gated", 0, lambda n: None, ledger=Ledger.open(path), run="main")
    try:
        job.run_loop()
    finally:
        job.ledger.close()
    return path


def test_advise_ledger_prices_the_last_round_at_the_configured_prices(
    project_ledger, tmp_path, monkeypatch
) -> None:
    from conftest import run_cli

    from tailguard.advise import ledger_advice
    from tailguard.ledger import Ledger

    with Ledger.open(project_ledger, read_only=True) as led:
        last = led.round_summary("main").to_pylist()[-1]
        reservoir = len(led.reservoir().train_ids)
        base = ledger_advice(led, costs=CostModel())
        dearer = ledger_advice(led, costs=CostModel(synthetic=0.003, verification=0.02))
    assert last["generated"] > 0 and last["verified"] > 0
    expected = last["bought"] * 1.0 + last["generated"] * 0.002 + last["verified"] * 0.01
    assert base.cost_per_round == pytest.approx(expected)
    moved = last["generated"] * 0.001 + last["verified"] * 0.01
    assert dearer.cost_per_round - base.cost_per_round == pytest.approx(moved)
    assert f"round {last['round']} of run main used" in base.cost_basis
    assert f"reservoir's {reservoir:,} training examples are owned once" in base.cost_basis

    # the command reads [costs] from tailguard.toml
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tailguard.toml").write_text("[costs]\nsynthetic = 0.003\nverification = 0.02\n")
    out = run_cli("advise", "--ledger", str(project_ledger))
    assert out.exit_code == 0, out.output
    assert f"data cost per round: ${dearer.cost_per_round:,.2f}" in " ".join(out.output.split())


def test_a_ledger_without_a_synthetic_round_invents_no_volume(tmp_path) -> None:
    from tailguard.advise import ledger_advice
    from tailguard.ledger import Ledger
    from tailguard.records import make_records

    with Ledger.open(tmp_path / "l.duckdb") as led:
        led.add_records(
            make_records([f"text number {i}" for i in range(20)], origin="human", source="t")
        )
        led.freeze_reservoir("main", holdout=0.2, seed=0)
        none = ledger_advice(led)
        assert none.cost_per_round is None and "not measured yet" in none.cost_line()
        planned = ledger_advice(led, n_generate=500, gated=True)
        assert planned.cost_per_round == pytest.approx(500 * 0.002 + 500 * 0.01)
        assert "n_generate = 500" in planned.cost_basis
