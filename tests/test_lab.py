"""The lab's experiments: bad input, strategies, costs, axes, and small runs through the loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import make_pool, run_cli, tiny_lab_run
from hypothesis import given, settings
from hypothesis import strategies as st

from tailguard import evidence, lab
from tailguard.costs import RoundUsage
from tailguard.errors import ConfigError
from tailguard.lab import CostModel, LabConfig, LabResult
from tailguard.lab.axes import AXES_COLUMNS, score_axes
from tailguard.metrics import Threshold
from tailguard.mix import AccumulateSubsample, Anchored, Policy


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": "lstm"}, "valid models: gaussian, mixture, kde, categorical"),
        ({"strategies": ("replace", "yolo")}, "valid strategies: human-only, replace"),
        ({"data": "wikipedia"}, "valid data sets: fortunes"),
        ({"model": "ngram", "data": "digits"}, "cannot learn from 'digits'"),
        ({"generations": 0}, "zero generations"),
        ({"real_fraction": 0.0}, "anchoring with no human data"),
        ({"real_fraction": 1.5}, "real_fraction must be a number in"),
        ({"seeds": 0}, "seeds must be >= 1"),
        ({"strategies": ()}, "no strategies given"),
        (
            {"model": "regression", "model_params": {"n_features": 10, "n_samples": 11}},
            "must exceed n_features \\+ 1",
        ),
    ],
)
def test_impossible_settings_are_refused_with_the_reason(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LabConfig(**kwargs)


def test_strategy_names_accept_underscores_and_keep_order() -> None:
    names = [s.name for s in lab.parse_strategies("Anchored_Gated, replace,replace")]
    assert names == ["anchored-gated", "replace"]


def test_every_strategy_maps_to_a_mix_policy() -> None:
    from tailguard.lab.strategies import StrategySettings

    settings_ = StrategySettings(real_fraction=0.25, n_generate=400)
    for name, strategy in lab.STRATEGIES.items():
        parts = strategy.parts(settings_)
        assert isinstance(parts.policy, Policy), name
        if strategy.uses_real_fraction:
            assert isinstance(parts.policy, Anchored) and parts.policy.real_fraction == 0.25
    assert lab.strategy("fresh").parts(settings_).fresh_per_round == 100
    assert lab.strategy("anchored-gated").parts(settings_).gate is not None
    assert lab.strategy("adaptive").parts(settings_).dial is not None


# ----------------------------------------------------------------------------- costs
def test_cost_model_defaults_and_parse() -> None:
    c = CostModel()
    assert (c.human, c.synthetic, c.verification) == (1.0, 0.002, 0.01)
    usage = RoundUsage(human_bought=10, generated=1000, verified=500)
    assert c.round_cost(usage) == pytest.approx(10 + 2 + 5)
    assert CostModel.parse("human=0.5, verification=0.02") == CostModel(
        human=0.5, verification=0.02
    )
    with pytest.raises(ConfigError, match="name one of human, synthetic, verification"):
        CostModel.parse("gpu=3")
    with pytest.raises(ConfigError, match="non-negative"):
        CostModel(human=-1)


# ----------------------------------------------------------------------------- policies
@given(st.integers(1, 60), st.integers(0, 200), st.integers(0, 2**31 - 1))
@settings(max_examples=40, deadline=None)
def test_accumulate_subsample_is_a_fixed_size_order_free_sample(h: int, s: int, seed: int) -> None:
    pool = make_pool(h, s, seed=seed)
    chosen = AccumulateSubsample().select(pool, round=3, seed=seed)
    assert chosen.num_rows == min(h, h + s)  # default size: the number of human rows
    assert set(chosen["id"].to_pylist()) <= set(pool["id"].to_pylist())
    shuffled = pool.take(pa.array(np.random.default_rng(seed).permutation(pool.num_rows)))
    again = AccumulateSubsample().select(shuffled, round=3, seed=seed)
    assert sorted(again["id"].to_pylist()) == sorted(chosen["id"].to_pylist())


# ----------------------------------------------------------------------------- axes
def test_axes_reference_values() -> None:
    # One strategy, one seed: primary 1.0, 0.8, 0.6 over rounds 0..2 (G = 2).
    metrics = pa.table({
        "strategy": ["s"] * 3, "seed": pa.array([0] * 3, pa.int32()),
        "round": pa.array([0, 1, 2], pa.int32()), "metric": ["tail_recall"] * 3,
        "value": [1.0, 0.8, 0.6], "higher_is_better": [True] * 3,
    })  # fmt: skip
    rounds = pa.table({
        "round": pa.array([0, 1, 2, 3], pa.int32()), "total": [100, 50, 50, 50],
        "human": [100, 10, 0, 10], "synthetic": [0, 40, 50, 40], "traceable": [100, 50, 50, 50],
        "new_human": [100, 0, 0, 0], "generated": [0, 50, 50, 50], "verified": [0, 0, 0, 0],
        "cost": [100.0, 0.1, 0.1, 0.1], "strategy": ["s"] * 4,
        "seed": pa.array([0] * 4, pa.int32()),
    })  # fmt: skip
    recovery = pa.table(
        {
            "strategy": ["s"],
            "seed": pa.array([0], pa.int32()),
            "collapsed": [True],
            "recovered": [True],
            "rounds": pa.array([1], pa.int32()),
        }
    )
    # the ledger's rows: the clean model (round 0) with four draws, then the model's rounds;
    # the draws' mean (1.02) is the clean model every ratio reads, not round 0's one sample
    draws = [1.0, 1.0, 1.04, 1.03, 1.03]
    history = pa.table({
        "run": ["s/seed0"] * 7, "round": pa.array([0] * 5 + [1, 2], pa.int32()),
        "sample": ["model", "model#1", "model#2", "model#3", "model#4", "model", "model"],
        "metric": ["tail_recall"] * 7, "value": [*draws, 0.8, 0.6],
        "higher_is_better": [True] * 7,
    })  # fmt: skip
    axes = score_axes(
        metrics,
        rounds,
        recovery,
        history=history,
        primary="tail_recall",
        kind="labels",  # its coverage metric is tail_recall too (text reads rare words)
        generations=2,
        strategies=["s"],
    ).to_pylist()[0]
    assert list(axes) == list(AXES_COLUMNS)
    assert axes["fidelity_loss"] == pytest.approx((0.2 + 0.4) / 2)
    assert axes["coverage"] == pytest.approx(0.6)
    assert axes["coverage_vs_baseline"] == pytest.approx(0.6 / 1.02)
    assert axes["cost"] == pytest.approx(100.2)
    assert axes["cost_per_generation"] == pytest.approx(0.1)
    assert axes["traceable_share"] == 1.0
    # over the synthetic rounds of the run only (1 and 2): round 0 is human by construction
    assert axes["real_share_mean"] == pytest.approx((0.2 + 0.0) / 2)
    assert axes["real_share_min"] == 0.0
    assert axes["recovery_rounds"] == 1.0 and axes["recovery_cost"] == pytest.approx(0.1)
    # held is the evidence module's verdict against the clean model's band: the draws'
    # 3-sd noise (0.059) is inside the preset's 10% threshold, so the half-width is 0.102
    b = evidence.band(draws, higher_is_better=True, threshold=Threshold("relative", 0.10))
    assert b.half_width == pytest.approx(0.102)
    drift = (1.02 - 0.6) / 0.102
    assert axes["tail_drift"] == pytest.approx(evidence.drift(0.6, b)) == pytest.approx(drift)
    assert axes["held"] is False


# ----------------------------------------------------------------------------- runs
@pytest.fixture(scope="module")
def token_run(tmp_path_factory: pytest.TempPathFactory) -> LabResult:
    out = tmp_path_factory.mktemp("runs")
    return lab.run(
        model="categorical",
        strategies="replace,accumulate,anchored",
        generations=4,
        seeds=2,
        n_generate=60,
        recovery_rounds=2,
        workers=2,
        out=out,
        progress=False,
    )


def test_run_writes_parquet_and_reloads(token_run: LabResult) -> None:
    path = token_run.path
    assert path is not None
    for name in LabResult.TABLES:
        assert (path / f"{name}.parquet").is_file(), name
    assert (path / "config.json").is_file() and (path / "curves.png").stat().st_size > 1000
    again = LabResult.load(path)
    assert again.axes.equals(token_run.axes)
    assert again.config == token_run.config


def test_run_covers_every_strategy_seed_and_round(token_run: LabResult) -> None:
    m = token_run.metrics.to_pandas()
    assert set(m.strategy) == {"replace", "accumulate", "anchored"}
    assert set(m.seed) == {0, 1}
    assert set(m["round"]) == set(range(5))
    s = token_run.summary.to_pandas()
    one = s[(s.metric == "rare_vocab_coverage")]
    assert (one.low <= one["median"]).all() and (one["median"] <= one.high).all()
    assert (one.seeds == 2).all()


def test_run_provenance_and_costs(token_run: LabResult) -> None:
    r = token_run.rounds.to_pandas()
    assert (r.traceable == r.total).all()  # every training slot is in the ledger
    rep = r[(r.strategy == "replace") & (r["round"].between(1, 4))]
    assert (rep.human == 0).all()  # pure synthetic
    anc = r[(r.strategy == "anchored") & (r["round"].between(1, 4))]
    # the whole reservoir every round: at least the 20% share, and every training example
    reservoir = r[(r.strategy == "anchored") & (r["round"] == 0)].human.iloc[0]
    assert (anc.human / anc.total >= 0.2 - 0.02).all() and (anc.human >= reservoir).all()
    costs = token_run.config.costs
    expected = r.new_human * costs.human + r.generated * costs.synthetic
    assert np.allclose(r.cost, expected)
    axes = {row["strategy"]: row for row in token_run.axes.to_pylist()}
    assert axes["replace"]["real_share_min"] == 0.0
    assert axes["anchored"]["real_share_min"] >= 0.2 - 0.02


def test_replace_loses_rare_tokens_and_accumulate_keeps_them(token_run: LabResult) -> None:
    axes = {row["strategy"]: row for row in token_run.axes.to_pylist()}
    assert axes["replace"]["coverage_vs_baseline"] < 0.8
    assert axes["accumulate"]["coverage_vs_baseline"] > axes["replace"]["coverage_vs_baseline"]
    assert axes["replace"]["fidelity_loss"] > axes["accumulate"]["fidelity_loss"]
    rec = token_run.recovery.to_pandas()
    assert rec[rec.strategy == "replace"].collapsed.all()


def test_other_strategies_run_through_the_loop(tmp_path: Path) -> None:
    result = tiny_lab_run(
        model="categorical",
        strategies="human-only,accumulate-subsample,anchored-gated,fresh,adaptive",
        generations=2,
        n_generate=40,
    )
    r = result.rounds.to_pandas()
    fresh = r[(r.strategy == "fresh") & (r["round"] >= 1)]
    assert (fresh.new_human == 10).all()  # n_generate // 4 new human examples a round
    gated = r[(r.strategy == "anchored-gated") & (r["round"] >= 1)]
    assert (gated.verified == 40).all()
    adaptive = r[(r.strategy == "adaptive") & (r["round"] >= 1)]
    assert (adaptive.human / adaptive.total >= 0.15 - 0.01).all()  # the Dial's floor
    subsample = r[(r.strategy == "accumulate-subsample") & (r["round"] >= 1)]
    assert (subsample.total == r[(r.strategy == "accumulate-subsample")].total.iloc[0]).all()
    human_only = r[r.strategy == "human-only"]
    assert (human_only.synthetic == 0).all()
    assert result.path is None
    assert result.axes.to_pandas().fidelity_loss.notna().all()


def test_numeric_model_runs_through_the_loop() -> None:
    result = tiny_lab_run(model="gaussian", strategies=["replace"], generations=3, n_generate=30)
    curve = result.curve().to_pandas()
    assert result.primary == "vector_variance_ratio"
    assert len(curve) == 4 and curve["median"].notna().all()


# ----------------------------------------------------------------------------- CLI
def _cli(*args: str):  # noqa: ANN202
    return run_cli(*args)


def test_cli_show_prints_the_axes(token_run: LabResult) -> None:
    out = _cli("lab", "show", str(token_run.path))
    assert out.exit_code == 0, out.output
    for word in (
        "fidelity loss",
        "coverage",
        "replace",
        "accumulate",
        "anchored",
        "rare_vocab_coverage",
    ):
        assert word in out.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["lab", "run", "--model", "gpt"], "valid models"),
        (["lab", "run", "--strategies", "replace,magic"], "valid strategies"),
        (
            ["lab", "run", "--generations", "0"],
            "--generations': Input should be greater than or equal to 1",
        ),
        (["lab", "run", "--real-fraction", "0"], "anchoring with no human data"),
        (["lab", "run", "--costs", "gpu=1"], "name one of human"),
    ],
)
def test_cli_refuses_bad_input(args: list[str], message: str) -> None:
    out = _cli(*args)
    assert out.exit_code == 2
    assert message in out.output


def test_cli_show_refuses_a_directory_that_is_not_a_run(tmp_path: Path) -> None:
    out = _cli("lab", "show", str(tmp_path))
    assert out.exit_code == 2 and "not a lab run directory" in out.output


# ----------------------------------------------------------------------------- loop callables
def test_one_builder_makes_the_loop_callables_for_lab_and_project(monkeypatch) -> None:
    from tailguard.lab import callables
    from tailguard.lab.models.base import human_vector_records
    from tailguard.project import ModelSection, _model_functions

    human = human_vector_records(np.random.default_rng(0).normal(size=(200, 2)), source="unit")
    train, generate, sample = callables.loop_callables("gaussian", {}, eval_size=7)
    model = train(None, human)
    out = generate(model, 11, 2, 3)
    assert out.num_rows == 11
    assert set(out["generation"].to_pylist()) == {2} and set(out["round"].to_pylist()) == {2}
    evaluation = sample(model, 2, 3)
    assert evaluation.num_rows == 7  # the evaluation sample is its own seed stream
    assert evaluation["content"].to_pylist() != generate(model, 7, 2, 3)["content"].to_pylist()
    # A project's [model] kind = "gaussian" builds the very same callables.
    p_train, p_generate, p_sample = _model_functions(ModelSection(kind="gaussian"))
    assert p_sample is None
    again = p_generate(p_train(None, human), 11, 2, 3)
    assert again["content"].equals(out["content"]) and again["id"].equals(out["id"])
    with pytest.raises(ConfigError, match="key 'model.kind': unknown model 'nope'"):
        _model_functions(ModelSection(kind="nope"))
    monkeypatch.setattr(callables, "loop_callables", lambda kind, params: ("built", kind))
    assert _model_functions(ModelSection(kind="ngram")) == ("built", "ngram")


def test_lab_config_is_the_one_declaration_of_a_run() -> None:
    """`lab.run(**settings)` takes LabConfig's fields by name: an unknown one is refused
    before anything runs, a given one replaces the field, the rest keep LabConfig's
    defaults, which are the loop's and the ledger's own."""
    from tailguard.ledger import Ledger
    from tailguard.loop import Loop

    base = LabConfig(model="gaussian", generations=3)
    assert (base.batch_size, base.holdout) == (Loop.BATCH_SIZE, Ledger.HOLDOUT)
    again = LabConfig.build(base, strategies="replace, anchored", seeds=2)
    assert again.strategies == ("replace", "anchored") and again.seeds == 2
    assert (again.model, again.generations) == ("gaussian", 3)
    assert LabConfig.build(base) is base
    assert LabConfig.build(model="gaussian", costs=None).costs == LabConfig().costs
    with pytest.raises(ConfigError, match="unknown lab setting 'batch'"):
        LabConfig.build(base, batch=32)
    with pytest.raises(ConfigError, match="unknown lab setting 'bogus'"):
        lab.run(model="gaussian", bogus=1, out=None, progress=False)
