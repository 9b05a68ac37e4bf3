"""The recovery experiment: pure synthetic for k generations, then switch or roll back."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tailguard import evidence
from tailguard.errors import ConfigError
from tailguard.lab.recovery import ROUTES, recovery

SMALL = {
    "model": "gaussian", "volume": 60, "reservoir_size": 100, "batch_size": 10,
    "eval_size": 300, "workers": 1, "progress": False,
}  # fmt: skip


@pytest.fixture(scope="module")
def switched():
    return recovery(k=3, routes=("switch",), recovery_rounds=3, seeds=3, **SMALL)


def test_each_seed_is_judged_by_its_own_clean_models_band(switched):
    assert len(switched.round0) == len(switched.floor) == len(switched.bands) == 3
    for clean, b in zip(switched.round0, switched.bands, strict=True):
        # centred on the clean model's draws (round 0 is one of them), never narrower than
        # the preset's 10% on the variance ratio
        assert b.noise > 0 and b.half_width >= 0.10 * abs(b.center) - 1e-12
        assert abs(clean - b.center) <= b.half_width
    assert switched.baseline == pytest.approx(float(np.median([b.center for b in switched.bands])))
    # round 0 of every seed's curve is the value the floor was built from
    c = switched.curves.to_pandas()
    zero = c[c["round"] == 0].sort_values("seed")["value"].to_numpy()
    assert np.allclose(zero, switched.round0)


def test_switch_counts_the_anchored_rounds_and_their_dollars_until_back(switched):
    table = switched.table.to_pandas()
    curves = switched.curves.to_pandas()
    assert list(table["route"]) == ["switch"] * 3 and list(table["seed"]) == [0, 1, 2]
    for row in table.itertuples():
        c = curves[(curves["seed"] == row.seed)].set_index("round")
        after = c.loc[4:6]  # the anchored rounds continue the run's numbering after k = 3
        assert list(after.index) == [4, 5, 6]
        band = switched.bands[row.seed]
        within = after["value"].map(lambda v, b=band: not evidence.degraded(v, b))
        assert (evidence.recovery_round(after["value"].to_numpy(), band) is not None) == (
            row.recovered
        )
        if within.any():
            first = int(np.argmax(within.to_numpy()))
            assert row.rounds == first + 1 and row.recovered
            assert row.cost == pytest.approx(after["cost"].iloc[: first + 1].sum())
            assert row.held == bool(within.iloc[first:].all())
        else:
            assert math.isinf(row.rounds) and not row.recovered
        # an anchored round's price: its generated examples (no gate, no new human data)
        assert (after["cost"] > 0).all() and row.discarded == 0 and row.quarantined == 0
    summary = switched.summary()
    assert list(summary.index) == ["switch"] and summary.loc["switch", "seeds"] == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seeds": 0}, "seeds must be >= 1"),
        ({"k": 0}, "k must be >= 1"),
        ({"routes": ("teleport",)}, "routes must be some of"),
        ({"recovery_rounds": 0}, "recovery_rounds must be >= 1"),
    ],
)
def test_impossible_settings_are_refused_before_running(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        recovery(**{**SMALL, "routes": ("switch",), **kwargs})


def test_rollback_quarantines_the_collapsed_generations_and_prices_them():
    # a sampler that narrows the Gaussian by 0.7 per generation leaves the floor at once
    k, volume = 3, 40
    result = recovery(
        model="gaussian", k=k, routes=ROUTES, recovery_rounds=2, seeds=3, volume=volume,
        reservoir_size=600, batch_size=10, eval_size=1000, workers=1, progress=False,
        model_params={"sample_scale": 0.7},
    )  # fmt: skip
    table = result.table.to_pandas().set_index(["route", "seed"])
    curves = result.curves.to_pandas()
    for seed in range(3):
        back = table.loc[("rollback", seed)]
        c = curves[(curves["route"] == "rollback") & (curves["seed"] == seed)]
        c = c.set_index("round")
        band = result.bands[seed]
        clean = [r for r in range(k + 1) if not evidence.degraded(c.loc[r, "value"], band)]
        assert back["to_round"] == max(clean) < k  # the last clean round, before k
        gone = range(int(back["to_round"]) + 1, k + 1)
        # every synthetic record of a later generation is set aside: volume per generation
        assert back["quarantined"] == volume * len(gone)
        assert back["discarded"] == pytest.approx(sum(c.loc[r, "cost"] for r in gone))
        assert table.loc[("switch", seed), "quarantined"] == 0
        assert table.loc[("switch", seed), "to_round"] != table.loc[("switch", seed), "to_round"]
