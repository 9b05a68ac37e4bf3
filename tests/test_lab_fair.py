"""The lab's fair test of the trade-off: equal volume, a real price for human data, fresh."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pytest
from conftest import run_cli, tiny_lab_run
from hypothesis import given, settings
from hypothesis import strategies as st

from tailguard.errors import ConfigError
from tailguard.lab.config import LabConfig, human_budget
from tailguard.lab.job import _Job, _n_generate
from tailguard.lab.models import MODELS


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("volume", ["auto", None])
def test_fresh_for_20_generations_runs_or_is_refused_up_front_with_the_reason(model, volume):
    config = LabConfig(model=model, strategies=("fresh",), generations=20, seeds=1, volume=volume)
    n_human = config.dataset.load(config.model_params).num_rows
    n_generate = _n_generate(config, n_human)
    per_round = max(1, n_generate // 4)
    fresh = per_round * 20
    if config.volume is None:
        supplied = fresh <= n_human // 2  # half the data stays in the reservoir
        reason = rf"needs {per_round} new human records per round x 20 generations = {fresh:,}"
    else:
        supplied = (config.reservoir_size or config.volume // 2) + fresh <= n_human
        reason = rf"runs out of human data: .* fresh streams {fresh:,}"
    if not supplied:
        with pytest.raises(ConfigError, match=reason):
            human_budget(config, n_human, n_generate)
    else:
        reservoir, stream = human_budget(config, n_human, n_generate)
        assert stream == fresh and reservoir + stream <= n_human
    # a per-round count the data set can supply always runs: the stream is sized for it
    k = max(1, n_human // 50)
    small = LabConfig(
        model=model, strategies=("fresh",), generations=20, fresh_per_round=k, volume=None
    )
    reservoir, stream = human_budget(small, n_human, n_generate)
    assert stream == 20 * k and reservoir == n_human - 20 * k


def test_fresh_runs_20_generations_through_the_loop():
    result = tiny_lab_run(
        model="gaussian", strategies="fresh", generations=20, fresh_per_round=40, volume=300,
        reservoir_size=200, batch_size=50,
    )  # fmt: skip
    rounds = result.rounds.filter(pc.greater_equal(result.rounds["round"], 1))
    assert rounds["new_human"].to_pylist() == [40] * 20


def test_fresh_per_round_passes_through_and_is_refused_before_running():
    result = tiny_lab_run(
        model="gaussian", strategies="fresh", generations=3, fresh_per_round=30, n_generate=120
    )
    rounds = result.rounds.filter(pc.greater_equal(result.rounds["round"], 1))
    assert rounds["new_human"].to_pylist() == [30, 30, 30]
    with pytest.raises(ConfigError, match="'fresh' strategy needs 450 new human records"):
        tiny_lab_run(model="gaussian", strategies="fresh", generations=4, volume=None)  # crashed
    with pytest.raises(ConfigError, match="runs out of human data"):
        tiny_lab_run(model="gaussian", strategies="fresh", generations=4)  # at the auto volume


def test_equal_volume_prices_human_data_and_fills_every_strategy_to_the_volume():
    volume = 300
    result = tiny_lab_run(
        model="gaussian", strategies="human-only,replace,anchored", generations=2,
        volume=volume, reservoir_size=100, batch_size=20,
    )  # fmt: skip
    r = result.rounds.to_pandas().set_index(["strategy", "round"])
    train = r.loc[("human-only", 0), "human"]  # the reservoir's training split
    assert train == 90
    # human-only buys the difference once, at the human price, and trains on the volume
    assert r.loc[("human-only", 1), "new_human"] == volume - train
    assert (r.loc["human-only"].loc[1:, "total"] == volume).all()
    assert (r.loc["human-only"].loc[1:, "generated"] == 0).all()
    # pure synthetic generates the volume every round
    assert (r.loc["replace"].loc[1:, "generated"] == volume).all()
    assert (r.loc["replace"].loc[1:, "synthetic"] == volume).all()
    # hybrid: the whole reservoir plus synthetic data, at least the volume in full batches
    anchored = r.loc["anchored"].loc[1:]
    assert (anchored["generated"] == volume - train).all()
    assert (anchored["total"] >= volume).all() and (anchored["total"] < volume + 20).all()
    assert (anchored["human"] >= train).all()
    axes = result.axes.to_pandas().set_index("strategy")
    costs = result.config.costs
    assert axes.loc["human-only", "cost"] == pytest.approx(costs.human * (train + volume - train))
    assert axes.loc["replace", "cost"] == pytest.approx(
        costs.human * train + 2 * volume * costs.synthetic
    )
    assert axes.loc["human-only", "cost"] > axes.loc["anchored", "cost"]
    # the real share is over the synthetic rounds only: pure synthetic shows 0, not 1/3
    assert axes.loc["replace", "real_share_mean"] == 0
    assert axes.loc["human-only", "real_share_mean"] == 1
    share = (anchored["human"] / anchored["total"]).mean()
    assert axes.loc["anchored", "real_share_mean"] == pytest.approx(share)


def test_a_volume_the_data_set_cannot_supply_is_refused_up_front():
    with pytest.raises(ConfigError, match="runs out of human data"):
        tiny_lab_run(model="gaussian", strategies="human-only,replace", volume=5000, generations=1)
    with pytest.raises(ConfigError, match="reservoir_size only applies"):
        LabConfig(model="gaussian", reservoir_size=100, volume=None)


def test_the_gaussian_frontier_agrees_with_the_closed_form():
    from tailguard import lab
    from tailguard.advise import TaskProfile, advise, advise_from_frontier

    volume, generations, fractions = 20, 12, (0.0, 0.5, 1.0)
    fr = lab.frontier(
        model="gaussian", fractions=fractions, generations=generations, seeds=3, volume=volume,
        reservoir_size=400, batch_size=10, eval_size=2000, workers=1, progress=False,
    )  # fmt: skip
    # the band's relative half-width: the clean model's noise, never narrower than 10%
    noise = fr.row(0.0)["band"]
    assert noise >= 0.10 - 1e-9
    # closed form: an MLE refit on M examples keeps (1 - 1/M) of the variance; with a share
    # f drawn from the (fixed, true) reservoir, v_g = (1 - 1/M) (f + (1 - f) v_{g-1}), v_0 = 1
    a = 1 - 1 / volume

    def closed(f: float) -> float:
        if f == 1:
            return 1.0  # human-only retrains on human data alone: nothing compounds
        v = 1.0
        for _ in range(generations):
            v = a * (f + (1 - f) * v)
        return v

    assert closed(0.0) < 1 - noise  # pure synthetic loses its tails: 0.54 at M=20, G=12
    assert max(fr.row(0.0)["tail_drift"], fr.row(0.0)["coverage_drift"]) > 1
    assert not fr.row(0.0)["held"]
    assert fr.row(1.0)["held"]
    # 0.5 keeps 0.905 of the variance: at the edge of the 10% band, and its 1% tails narrow
    # beyond the clean model's noise; whichever verdict, the frontier names the lowest
    # held fraction above every collapsed one and the advisor adds its margin
    safe = 0.5 if fr.row(0.5)["held"] else 1.0
    assert fr.lowest_safe == safe
    advice = advise_from_frontier(advise(TaskProfile(task="general")), fr)
    assert advice.real_fraction == pytest.approx(min(1.0, safe + 0.05))
    assert any(f"held: {safe:g}" in e for e in advice.evidence)


@settings(max_examples=6, deadline=None)
@given(
    reservoir=st.integers(20, 120),
    extra=st.integers(1, 200),
    fraction=st.sampled_from([0.05, 0.1, 0.2, 0.3, 0.5, 0.8]),
    seed=st.integers(0, 1000),
)
def test_anchoring_reinjects_every_reservoir_id_every_round(reservoir, extra, fraction, seed):
    """Through the loop and the ledger: each synthetic round's manifest holds every id of the
    reservoir's training split, and every batch at least its human quota."""
    from tailguard.mix import human_quota

    batch = 10
    if fraction * batch < 1:
        fraction = 0.1
    volume = reservoir + extra
    cfg = LabConfig(
        model="gaussian", strategies=("anchored",), generations=2, seeds=1, recovery_rounds=0,
        volume=volume, reservoir_size=reservoir, real_fraction=fraction, batch_size=batch,
        eval_size=50, seed=seed,
    )  # fmt: skip
    job = _Job(cfg, "anchored", 0, lambda n: None)
    try:
        job.run_loop()
        ids = set(job.ledger.reservoir_records("train")["id"].to_pylist())
        for r in (1, 2):
            slots = job.ledger.manifest(r, job.run_name).slots
            human = slots.filter(pc.equal(slots["origin"], "human"))
            assert set(human["id"].to_pylist()) == ids
            per_batch = np.bincount(
                human["batch"].to_numpy(), minlength=int(slots["batch"].to_numpy().max()) + 1
            )
            assert (per_batch >= human_quota(fraction, batch, len(per_batch))).all()
            synthetic = slots.filter(pc.equal(slots["origin"], "synthetic"))
            assert set(synthetic["generation"].to_pylist()) <= {r}  # the newest generation
    finally:
        job.ledger.close()


def test_the_demo_compares_at_equal_volume_and_recommends_from_its_frontier(tmp_path):
    import re

    out = run_cli(
        "demo", "--generations", "1", "--seeds", "2", "--volume", "200", "--workers", "1",
        "--out", str(tmp_path / "runs"), "--report", str(tmp_path / "report.html"),
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    text = out.output
    assert "volume 200/round" in text and "cost-fidelity frontier" in text
    # human-only buys, at $1 each, what its reservoir lacks to fill the volume (200 minus
    # the 78-79 distinct training examples): every round trains on exactly 200
    from tailguard.lab import LabResult

    (run_dir,) = (tmp_path / "runs").iterdir()
    result = LabResult.load(run_dir)
    axes = result.axes.to_pandas().set_index("strategy")["cost_per_generation"]
    rounds = result.rounds.to_pandas()
    human_only = rounds[rounds["strategy"] == "human-only"].set_index(["seed", "round"])
    assert (human_only.xs(1, level="round")["total"] == 200).all()
    bought = 200 - human_only.xs(0, level="round")["human"]
    assert axes["human-only"] == pytest.approx(bought.median())
    assert axes["human-only"] > axes["anchored-gated"] > axes["replace"] > 0
    for strategy in ("human-only", "replace", "anchored-gated"):
        assert f"{axes[strategy]:,.2f}" in text
    assert re.search(r"lowest real fraction whose tails held: (none|[\d.]+)", text)
    assert "recommendation" in text and (tmp_path / "report.html").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["lab", "recovery", "--seeds", "0"],
            "--seeds': Input should be greater than or equal to 1",
        ),
        (["lab", "recovery", "--routes", "teleport"], "routes must be some of"),
        (["lab", "run", "--volume", "lots"], "not a number of examples, 'auto' or 'policy'"),
        (["lab", "frontier", "--volume", "-3"], "volume must be >= 2"),
    ],
)
def test_lab_commands_refuse_bad_settings_with_exit_2(args, message):
    out = run_cli(*args)
    assert out.exit_code == 2 and message in out.output, out.output


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_human_only_buys_new_texts_never_a_reservoir_members_twin(seed):
    """fortunes files 117 texts twice, some under two labels: the demo's human-only run
    at 2,000 per round buys 1,100 quotations, none of them a reservoir member's text and
    none twice, so the ledger never holds a member's label twin."""
    from tailguard.datasets import fortunes

    cfg = LabConfig(
        model="ngram", data="fortunes", strategies=("human-only",), generations=1, seeds=3,
        volume=2000, reservoir_size=1000, real_fraction=0.2,
    )  # fmt: skip
    job = _Job(cfg, "human-only", seed, lambda n: None)
    members = set(job.ledger.reservoir_records("all")["id"].to_pylist())
    bought = job.stream.slice(0, job.buy)["id"].to_pylist()
    assert job.buy == 2000 - job.n_reservoir_train
    assert len(bought) == job.buy == len(set(bought))
    assert not members & set(bought)
    assert fortunes()["id"].to_pylist().count(bought[0]) >= 1
    job._add_human(job.stream.slice(0, job.buy), 1, "bought")
    assert job.ledger.reservoir_records("train").num_rows == job.n_reservoir_train
