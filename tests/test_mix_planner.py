"""The batch planner: exact human shares, eligibility, cycling, stratification, determinism."""

from __future__ import annotations

import collections
import math
from fractions import Fraction

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from conftest import make_pool
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tailguard.errors import ConfigError, InputError, ReservoirError
from tailguard.mix import (
    POLICIES,
    Accumulate,
    AccumulateSubsample,
    Anchored,
    FillGaps,  # noqa: F401 - named in PINNED_DIGESTS
    Fresh,
    HumanOnly,
    Policy,
    Replace,
    human_quota,
    plan,
    planner,
    policy_from_manifest,
    slots,
)
from tailguard.mix.layout import synthetic_target
from tailguard.mix.planner import as_fraction, id_fingerprints

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def human_per_batch(manifest) -> np.ndarray:
    batch = manifest.slots["batch"].to_numpy()
    human = pc.equal(manifest.slots["origin"], "human").to_numpy(zero_copy_only=False)
    return np.bincount(batch, weights=human, minlength=manifest.n_batches).astype(int)


# --------------------------------------------------------------------------- exact shares
@FAST
@given(
    batch_size=st.integers(1, 300),
    fraction=st.floats(0.01, 1.0),
    n_human=st.integers(1, 120),
    n_synthetic=st.integers(0, 700),
    seed=st.integers(0, 2**32),
)
def test_every_batch_holds_its_exact_human_share(batch_size, fraction, n_human, n_synthetic, seed):
    pool = make_pool(n_human, n_synthetic, seed=seed % 1000)
    f = 1 if n_synthetic == 0 else as_fraction(fraction)  # nothing synthetic: reservoir alone
    if f * batch_size < 1:
        with pytest.raises(ConfigError, match="rounds to zero"):
            plan(pool, Anchored(real_fraction=fraction), round=9, batch_size=batch_size)
        return
    exact = Anchored(real_fraction=fraction, reservoir="share")
    m = plan(pool, exact, round=9, batch_size=batch_size, seed=seed)
    sizes = np.bincount(m.slots["batch"].to_numpy())
    assert (sizes == batch_size).all()  # anchored batches are always full
    humans = human_per_batch(m)
    share = f * batch_size
    assert set(humans.tolist()) <= {math.floor(share), math.ceil(share)}
    if share.denominator == 1:
        assert (humans == share).all()
    # the running total is never half a slot away from exact: the epoch share is exact too
    running = np.cumsum(humans).tolist()
    assert all(abs(total - share * k) <= Fraction(1, 2) for k, total in enumerate(running, 1))
    # every selected synthetic example is in the epoch (unless the fraction is all human)
    syn_ids = set(pool.filter(pc.equal(pool["origin"], "synthetic"))["id"].to_pylist())
    planned = m.slots.filter(pc.equal(m.slots["origin"], "synthetic"))["id"].to_pylist()
    assert set(planned) == (syn_ids if f < 1 else set())
    assert m.params["batch_size"] == batch_size
    assert m.params["real_fraction_used"] == pytest.approx(humans.sum() / m.slots.num_rows)


@FAST
@given(
    batch_size=st.integers(2, 200),
    fraction=st.floats(0.05, 0.95),
    n_human=st.integers(1, 150),
    n_synthetic=st.integers(1, 700),
    epochs=st.integers(1, 2),
    mode=st.sampled_from(["accumulate", "latest", "subsample"]),
    seed=st.integers(0, 2**32),
)
def test_whole_reservoir_every_id_every_round_and_the_floor_per_batch(
    batch_size, fraction, n_human, n_synthetic, epochs, mode, seed
):
    pool = make_pool(n_human, n_synthetic, seed=seed % 1000)
    f = as_fraction(fraction)
    if f * batch_size < 1:
        return  # refused: the quota rounds to zero (tested above)
    m = plan(
        pool,
        Anchored(real_fraction=fraction, synthetic=mode),
        round=9,
        batch_size=batch_size,
        seed=seed,
        epochs=epochs,
    )
    assert (np.bincount(m.slots["batch"].to_numpy()) == batch_size).all()
    reservoir = pool.filter(pc.equal(pool["origin"], "human"))["id"].to_pylist()
    human = m.slots.filter(pc.equal(m.slots["origin"], "human"))["id"].to_pylist()
    counts = collections.Counter(human)
    assert set(counts) == set(reservoir) and min(counts.values()) >= epochs
    # every batch holds at least its planned share quota (largest remainder)
    assert (human_per_batch(m) >= human_quota(fraction, batch_size, m.n_batches)).all()
    if mode == "accumulate":
        syn = set(pool.filter(pc.equal(pool["origin"], "synthetic"))["id"].to_pylist())
        planned = m.slots.filter(pc.equal(m.slots["origin"], "synthetic"))["id"].to_pylist()
        target = synthetic_target(fraction, epochs * n_human)
        if epochs * n_synthetic <= target:  # every selected synthetic example is in the epoch
            assert set(planned) == syn
        else:  # the share admits n_human x (1 - f) / f of them: a subsample, whole batches
            assert target <= len(planned) < target + 2 * batch_size
            assert m.params["synthetic_needed"] == 0
        assert m.params["synthetic_available"] == epochs * n_synthetic
    again = plan(
        pool,
        Anchored(real_fraction=fraction, synthetic=mode),
        round=9,
        batch_size=batch_size,
        seed=seed,
        epochs=epochs,
    )
    assert again.digest == m.digest


@pytest.mark.parametrize(
    ("fraction", "n_human", "ratio", "batch_size"),
    [
        (0.2, 200, 4, 50),
        (0.2, 20_000, 5, 256),
        (0.25, 40, 3, 8),
        (0.5, 30, 1, 10),
        (0.1, 50, 9.5, 20),
    ],
)
def test_with_enough_synthetic_data_the_whole_reservoir_realises_the_share(
    fraction, n_human, ratio, batch_size
):
    # synthetic >= (1 - f) / f x reservoir: the share sets how much synthetic is admitted,
    # the whole reservoir once, and the round trains on the share asked (whole batches)
    assert ratio >= (1 - fraction) / fraction
    pool = make_pool(n_human, int(ratio * n_human), seed=2)
    whole = plan(pool, Anchored(real_fraction=fraction), round=3, batch_size=batch_size, seed=1)
    share = plan(
        pool,
        Anchored(real_fraction=fraction, reservoir="share"),
        round=3,
        batch_size=batch_size,
        seed=1,
    )
    assert whole.params["real_fraction_used"] == pytest.approx(fraction, abs=1 / batch_size)
    assert share.params["real_fraction_used"] == pytest.approx(fraction, abs=1 / batch_size)
    assert n_human <= whole.params["human_slots"] < n_human + batch_size
    assert whole.params["synthetic_admitted"] == synthetic_target(fraction, n_human)
    assert whole.params["synthetic_needed"] == 0
    # with less synthetic data they differ: the share plan leaves part of the reservoir out
    small = make_pool(n_human, max(1, n_human // 10), seed=2)
    share = plan(
        small, Anchored(real_fraction=fraction, reservoir="share"), round=3, batch_size=batch_size
    )
    whole = plan(small, Anchored(real_fraction=fraction), round=3, batch_size=batch_size)
    assert share.params["human_slots"] < n_human <= whole.params["human_slots"]


def test_a_stored_manifest_without_the_choice_reads_back_as_the_exact_share():
    m = plan(make_pool(20, 100), Anchored(reservoir="share"), round=1, batch_size=10)
    assert "reservoir" not in m.params
    assert policy_from_manifest(m) == Anchored(reservoir="share")
    m = plan(make_pool(20, 100), Anchored(), round=1, batch_size=10)
    assert policy_from_manifest(m) == Anchored()
    with pytest.raises(ConfigError, match="reservoir="):
        Anchored(reservoir="most")


def test_human_quota_reference_values():
    assert human_quota(0.2, 64, 5).tolist() == [13, 13, 12, 13, 13]  # 12.8 per batch: 64 in 5
    assert human_quota(0.25, 64, 3).tolist() == [16, 16, 16]
    assert human_quota(1 / 3, 10, 3).tolist() == [3, 4, 3]  # 10 in 3 batches
    assert human_quota(0.2, 1024, 10).sum() == 2048  # exactly 20% of 10 x 1024 slots


def test_share_rounding_to_zero_is_refused():
    pool = make_pool(10, 100)
    with pytest.raises(ConfigError, match="rounds to zero"):
        plan(pool, Anchored(real_fraction=0.01), round=3, batch_size=64)


def test_dial_fraction_overrides_anchored_only():
    pool = make_pool(50, 200)
    m = plan(pool, Anchored(real_fraction=0.2), round=3, batch_size=20, real_fraction=0.5)
    assert (human_per_batch(m) == 10).all()
    assert m.params["real_fraction"] == 0.5
    with pytest.raises(ConfigError, match="takes no real_fraction"):
        plan(pool, Accumulate(), round=3, batch_size=20, real_fraction=0.5)


# --------------------------------------------------------------------------- eligibility
@FAST
@given(n_human=st.integers(1, 60), n_synthetic=st.integers(1, 300), seed=st.integers(0, 999))
def test_only_pool_rows_and_only_accepted_synthetic_are_planned(n_human, n_synthetic, seed):
    pool = make_pool(n_human, n_synthetic, seed=seed, status=True)
    accepted = pc.equal(pool["status"], "accepted")
    for policy in (Anchored(real_fraction=0.25), Accumulate(), HumanOnly()):
        m = plan(pool, policy, round=9, batch_size=8, seed=seed)
        planned = set(m.slots["id"].to_pylist())
        assert planned <= set(pool.filter(accepted)["id"].to_pylist())
        human_planned = set(m.slots.filter(pc.equal(m.slots["origin"], "human"))["id"].to_pylist())
        assert human_planned <= set(
            pool.filter(pc.equal(pool["origin"], "human"))["id"].to_pylist()
        )


def test_rows_from_later_rounds_are_not_planned():
    pool = make_pool(20, 300, generations=5)
    m = plan(pool, Accumulate(), round=2, batch_size=16)
    assert pc.max(m.slots["generation"]).as_py() <= 2


def test_holdout_ids_in_the_pool_are_refused():
    pool = make_pool(20, 50)
    holdout = pool["id"].to_pylist()[:3]
    with pytest.raises(ReservoirError, match="held-out"):
        plan(pool, Anchored(), round=1, batch_size=10, exclude_ids=holdout)
    clean = pool.slice(3)
    m = plan(clean, Anchored(), round=1, batch_size=10, exclude_ids=holdout)
    assert not set(holdout) & set(m.slots["id"].to_pylist())


def test_replace_trains_on_the_newest_generation_only():
    pool = make_pool(20, 300, generations=4)
    m = plan(pool, Replace(), round=9, batch_size=32)
    assert set(m.slots["generation"].to_pylist()) == {4}
    assert m.counts()["human"] == 0
    newest = pool.filter(pc.equal(pool["generation"], 4))
    assert sorted(m.slots["id"].to_pylist()) == sorted(newest["id"].to_pylist())


def test_anchored_latest_uses_the_reservoir_and_the_newest_generation():
    pool = make_pool(30, 300, generations=3)
    m = plan(pool, Anchored(real_fraction=0.25, synthetic="latest"), round=9, batch_size=16)
    assert set(m.slots["generation"].to_pylist()) == {0, 3}


def test_subsample_keeps_the_epoch_size_across_rounds():
    sizes = set()
    for n_synthetic in (50, 400, 3000):
        pool = make_pool(200, n_synthetic, generations=1)
        subsample = Anchored(real_fraction=0.2, synthetic="subsample", reservoir="share")
        m = plan(pool, subsample, round=1, batch_size=50)
        sizes.add(m.slots.num_rows)
        assert (human_per_batch(m) == 10).all()
    assert sizes == {200}
    sized = Anchored(real_fraction=0.2, synthetic="subsample", size=1000, reservoir="share")
    m = plan(pool, sized, round=1, batch_size=50)
    assert m.slots.num_rows == 1000
    assert len(set(m.slots["id"].to_pylist())) == 1000  # no repeats when there is enough


def test_human_only_and_accumulate_shuffle_everything_once_per_epoch():
    pool = make_pool(40, 100)
    m = plan(pool, HumanOnly(), round=3, batch_size=16, epochs=2)
    ids = m.slots["id"].to_pylist()
    assert len(ids) == 80 and set(ids[:40]) == set(ids[40:]) and len(set(ids[:40])) == 40
    m = plan(pool, Accumulate(), round=3, batch_size=16)
    assert sorted(m.slots["id"].to_pylist()) == sorted(pool["id"].to_pylist())
    assert np.bincount(m.slots["batch"].to_numpy()).tolist() == [16] * 8 + [12]


def test_fresh_uses_the_new_human_records_of_the_round():
    old = make_pool(30, 200, seed=1, round_of_human=0)
    new = make_pool(25, 0, seed=2, round_of_human=3)
    pool = pa.concat_tables([old, new])
    m = plan(pool, Fresh(new_human_per_round=20), round=3, batch_size=10, seed=4)
    humans = set(m.slots.filter(pc.equal(m.slots["origin"], "human"))["id"].to_pylist())
    assert len(humans) == 20 and humans <= set(new["id"].to_pylist())
    assert set(
        m.slots.filter(pc.equal(m.slots["origin"], "synthetic"))["generation"].to_pylist()
    ) == {3}
    with pytest.raises(InputError, match="expects 30 new human records at round 3"):
        plan(pool, Fresh(new_human_per_round=30), round=3, batch_size=10)


# --------------------------------------------------------------------------- re-injection
@FAST
@given(
    n_human=st.integers(1, 40),
    n_synthetic=st.integers(1, 600),
    batch_size=st.integers(4, 64),
    seed=st.integers(0, 10_000),
)
def test_reservoir_is_used_fully_before_any_repeat(n_human, n_synthetic, batch_size, seed):
    pool = make_pool(n_human, n_synthetic, seed=seed)
    m = plan(pool, Anchored(real_fraction=0.5), round=9, batch_size=batch_size, seed=seed)
    human = m.slots.filter(pc.equal(m.slots["origin"], "human"))["id"].to_pylist()
    reservoir = set(pool.filter(pc.equal(pool["origin"], "human"))["id"].to_pylist())
    for start in range(0, len(human), n_human):
        chunk = human[start : start + n_human]
        assert len(set(chunk)) == len(chunk)  # no repeat inside a pass
        if len(chunk) == n_human:
            assert set(chunk) == reservoir


def test_passes_are_reshuffled():
    pool = make_pool(50, 2000)
    m = plan(pool, Anchored(real_fraction=0.5), round=9, batch_size=20)
    human = m.slots.filter(pc.equal(m.slots["origin"], "human"))["id"].to_pylist()
    assert human[:50] != human[50:100]


def partial_round(pool: pa.Table, n_human_slots: int, seed: int):
    """Plan a round that uses ``n_human_slots`` (< reservoir size) human slots: 1 per batch."""
    n_synthetic = n_human_slots
    rng = np.random.default_rng(seed)
    synthetic = pa.table(
        {
            "id": pa.array([f"s{x:031x}" for x in rng.choice(2**60, n_synthetic, replace=False)]),
            "origin": pa.array(["synthetic"] * n_synthetic),
            "generation": pa.array(np.ones(n_synthetic, np.int32)),
            "label": pa.nulls(n_synthetic, pa.string()),
            "round": pa.array(np.ones(n_synthetic, np.int32)),
        }
    )
    m = plan(
        pa.concat_tables([pool, synthetic]),
        Anchored(real_fraction=0.5, reservoir="share"),
        round=1,
        batch_size=2,
        seed=seed,
    )
    return m.slots.filter(pc.equal(m.slots["origin"], "human"))["label"].to_pylist()


@FAST
@given(n_human=st.integers(20, 300), take=st.integers(1, 299), seed=st.integers(0, 10_000))
def test_a_partial_pass_is_stratified_by_label(n_human, take, seed):
    take = min(take, n_human)
    pool = make_pool(
        n_human, 0, labels=("common", "mid", "rare"), label_p=(0.8, 0.15, 0.05), seed=seed
    )
    labels = pool["label"].to_pylist()
    drawn = partial_round(pool, take, seed)
    assert len(drawn) == take
    for label in set(labels):
        expected = take * labels.count(label) / n_human
        assert math.floor(expected) <= drawn.count(label) <= math.ceil(expected)


def test_full_passes_spread_labels_through_the_round():
    pool = make_pool(1000, 0, labels=("x", "y"), label_p=(0.9, 0.1), seed=2)
    m = plan(pool, HumanOnly(), round=0, batch_size=50, seed=1)
    labels = np.array(m.slots["label"].to_pylist())
    per_batch = [int((b == "y").sum()) for b in np.array_split(labels, 20)]
    n_y = pool["label"].to_pylist().count("y")
    assert all(abs(c - n_y / 20) <= 2 for c in per_batch)  # systematic, not clumped


def test_a_rare_class_is_never_dropped_by_chance():
    # 2 rare examples in 100; a round using half the reservoir always holds one of them.
    pool = make_pool(100, 0, labels=("x",), seed=3)
    pool = pool.set_column(3, "label", pa.array(["x"] * 98 + ["rare"] * 2))
    for seed in range(30):
        assert partial_round(pool, 50, seed).count("rare") == 1


# --------------------------------------------------------------------------- determinism
@FAST
@given(seed=st.integers(0, 2**31), n_human=st.integers(1, 80), n_synthetic=st.integers(0, 400))
def test_digest_is_independent_of_pool_order(seed, n_human, n_synthetic):
    pool = make_pool(n_human, n_synthetic, seed=seed % 97)
    shuffled = pool.take(pa.array(np.random.default_rng(seed).permutation(pool.num_rows)))
    a = plan(pool, Anchored(real_fraction=0.3), round=5, batch_size=10, seed=seed)
    b = plan(shuffled, Anchored(real_fraction=0.3), round=5, batch_size=10, seed=seed)
    assert a.digest == b.digest
    assert a.slots.equals(b.slots)


SHARE_20 = Anchored(real_fraction=0.2, reservoir="share")


def test_digest_is_independent_of_chunking_and_large_pools():
    pool = make_pool(70_000, 80_000, seed=5)  # past the packed-sort threshold
    rechunked = pa.Table.from_batches(pool.to_batches(max_chunksize=9_999))
    shuffled = pool.take(pa.array(np.random.default_rng(1).permutation(pool.num_rows)))
    a = plan(pool, SHARE_20, round=5, batch_size=256, seed=3)
    assert a.digest == plan(rechunked, SHARE_20, round=5, batch_size=256, seed=3).digest
    assert a.digest == plan(shuffled, SHARE_20, round=5, batch_size=256, seed=3).digest
    assert a.digest != plan(pool, SHARE_20, round=5, batch_size=256, seed=4).digest
    assert set(human_per_batch(a).tolist()) == {51, 52}


def test_reference_digest_is_stable():
    # The same inputs and seed give this plan on any machine.
    pool = make_pool(10, 30, seed=11)
    m = plan(pool, Anchored(real_fraction=0.25), round=2, batch_size=8, seed=7)
    assert (
        m.batches()[0]
        == plan(pool, Anchored(real_fraction=0.25), round=2, batch_size=8, seed=7).batches()[0]
    )
    assert len(m.digest) == 64


def test_fingerprints_depend_on_bytes_only():
    ids = pa.array(["a", "ab", "ab\x00", "x" * 40, "a"])
    fp = id_fingerprints(ids)
    assert fp[0] == fp[4] and len(set(fp[:4].tolist())) == 4
    chunked = pa.chunked_array([ids.slice(0, 2), ids.slice(2)])
    assert (id_fingerprints(chunked) == fp).all()
    assert id_fingerprints(pa.array(["ab"]))[0] == fp[1]


def test_variable_width_ids_plan_deterministically():
    pool = pa.table(
        {
            "id": [f"doc-{i}" for i in range(60)],
            "origin": ["human"] * 20 + ["synthetic"] * 40,
            "generation": pa.array([0] * 20 + [1] * 40, pa.int32()),
        }
    )
    a = plan(pool, Anchored(real_fraction=0.5), round=1, batch_size=4)
    b = plan(
        pool.take(pa.array(list(range(59, -1, -1)))),
        Anchored(real_fraction=0.5),
        round=1,
        batch_size=4,
    )
    assert a.digest == b.digest and a.slots["label"].null_count == a.slots.num_rows


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("fraction", [0, -0.1, 1.01, float("nan"), "lots"])
def test_fraction_outside_unit_interval_is_refused(fraction):
    with pytest.raises(ConfigError, match="real_fraction"):
        Anchored(real_fraction=fraction)
    with pytest.raises(ConfigError, match="real_fraction"):
        plan(make_pool(5, 5), Anchored(), round=1, batch_size=10, real_fraction=fraction)


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True])
def test_bad_batch_size_is_refused(batch_size):
    with pytest.raises(ConfigError, match="batch_size"):
        plan(make_pool(5, 5), Anchored(), round=1, batch_size=batch_size)


def test_empty_reservoir_is_refused():
    pool = make_pool(0, 50)
    for policy in (Anchored(), HumanOnly()):
        with pytest.raises(ReservoirError, match="no reservoir|has none"):
            plan(pool, policy, round=1, batch_size=10)


def test_replace_without_synthetic_data_is_refused():
    with pytest.raises(InputError, match="no eligible"):
        plan(make_pool(20, 0), Replace(), round=1, batch_size=10)
    pool = make_pool(5, 40, status=True, seed=2)
    rejected = pool.filter(pc.not_equal(pool["status"], "accepted"))
    with pytest.raises(InputError, match="no eligible"):
        plan(pa.concat_tables([pool.slice(0, 5), rejected]), Replace(), round=9, batch_size=10)


def test_missing_columns_are_named():
    with pytest.raises(InputError, match="'origin'"):
        plan(pa.table({"id": ["a"], "generation": [0]}), Accumulate(), round=0, batch_size=1)


def test_anchored_without_synthetic_data_trains_on_the_reservoir():
    m = plan(make_pool(30, 0), Anchored(real_fraction=0.2), round=0, batch_size=8)
    assert m.counts()["synthetic"] == 0 and m.params["real_fraction_used"] == 1.0
    assert "fallback" in m.params


# --------------------------------------------------------------------------- selection
def test_rows_a_policy_leaves_out_never_change_the_plan():
    # Rejected and later-round rows, even with labels no eligible row has, are invisible:
    # the label strata and the shuffles depend on the selected rows only.
    pool = make_pool(40, 200, seed=8)
    extra = make_pool(30, 30, labels=("zz", "yy"), seed=9, status=True)
    extra = extra.set_column(
        extra.schema.get_field_index("status"), "status", pa.array(["rejected"] * 60)
    )
    later = make_pool(10, 10, labels=("later",), seed=10).set_column(
        4, "round", pa.array(np.full(20, 99, np.int32))
    )
    noisy = pa.concat_tables(
        [pool.append_column("status", pa.array(["accepted"] * pool.num_rows)), extra, later],
        promote_options="default",
    )
    for policy in (Anchored(real_fraction=0.3), HumanOnly(), Accumulate()):
        a = plan(pool, policy, round=5, batch_size=10, seed=2)
        b = plan(noisy, policy, round=5, batch_size=10, seed=2)
        assert a.slots.equals(b.slots) and a.digest == b.digest


@pytest.mark.parametrize(
    "policy",
    [
        Anchored(real_fraction=0.25),
        Anchored(synthetic="latest"),
        HumanOnly(),
        Accumulate(),
        Replace(),
        Fresh(new_human_per_round=5, synthetic="accumulate"),
    ],
    ids=repr,
)
def test_select_is_the_selection_in_policy_order(policy):
    mixed = make_pool(30, 150, seed=1, status=True)
    pool = mixed.take(pa.array(np.random.default_rng(0).permutation(mixed.num_rows)))
    fresh = make_pool(8, 0, seed=4, round_of_human=3)
    fresh = fresh.append_column("status", pa.array(["accepted"] * fresh.num_rows))
    pool = pa.concat_tables([pool, fresh])
    selected = policy.select(pool, 3, 7)
    humans = pc.equal(selected["origin"], "human").to_numpy(zero_copy_only=False)
    if isinstance(policy, Anchored | Fresh):  # the human rows first
        assert not (np.diff(humans.astype(int)) > 0).any()
    assert selected.equals(policy.selection(pool, 3, 7).table())
    assert pc.all(pc.equal(selected["status"], "accepted")).as_py()
    assert pc.max(selected["round"]).as_py() <= 3


def test_a_policy_that_only_overrides_select_can_be_planned():
    class EveryOther(HumanOnly):
        name = "every_other"

        def select(self, pool, round, seed=0):  # noqa: A002
            return pool.take(pa.array(np.arange(0, pool.num_rows, 2)))

        selection = Policy.selection

    pool = make_pool(20, 40, seed=5)
    m = plan(pool, EveryOther(), round=9, batch_size=8)
    assert sorted(m.slots["id"].to_pylist()) == sorted(pool["id"].to_pylist()[::2])


def test_null_generations_are_refused():
    pool = make_pool(5, 5).set_column(2, "generation", pa.array([0] * 9 + [None], pa.int32()))
    with pytest.raises(InputError, match="null generations"):
        plan(pool, Accumulate(), round=9, batch_size=4)


# --------------------------------------------------------------------------- fast paths
def test_two_threads_plan_what_one_does(monkeypatch):
    pool = make_pool(3_000, 9_000, seed=6)
    policies = (Anchored(real_fraction=0.2), HumanOnly(), Accumulate())
    serial = [plan(pool, p, round=9, batch_size=64, seed=1).digest for p in policies]
    monkeypatch.setattr(planner, "_PARALLEL_MIN", 0)
    assert [plan(pool, p, round=9, batch_size=64, seed=1).digest for p in policies] == serial


@FAST
@given(flags=st.lists(st.booleans(), max_size=70))
def test_origin_column_spells_every_slot(flags):
    column = slots._origin_column(np.array(flags, dtype=bool))
    column.validate(full=True)
    assert column.to_pylist() == ["human" if f else "synthetic" for f in flags]


#: Digests of one pool planned under every built-in policy. A change here changes every
#: stored manifest's digest: it must never happen by accident.
PINNED_DIGESTS = {
    "HumanOnly()": "ac405a24155f4298bb62e9f7c52b051e74fc18349af3442ea801250e9de39eec",
    "Replace()": "f55f509b15817959bda2651fd47dfd0c42c5ca5fe67b84413b1bcfdca46dfb6b",
    "Accumulate()": "4ad9bdc05d55d5fbdb92b8985c19387b09e9be970a21990814534130a65612ff",
    "AccumulateSubsample()": "2ec2b88b911bf3499d7efb4d104e57d775f1115b010eee92a37537c9912d8bf9",
    "AccumulateSubsample(size=50)": (
        "9b8fec552d40e62bf5d9fc97ec22820218287077e3ea55f4d940f34c3601a0bf"
    ),
    "Anchored(real_fraction=0.25, reservoir='share')": (
        "7169906a0150a4dfd210f6dc68a14e73b8e0dbfa144bed061094785948a35daf"
    ),
    "Anchored(real_fraction=0.3, synthetic='latest', reservoir='share')": (
        "634e976950f692a69bacb3dba8662e3d3dbcf52645da2e73cda5adccd6a8e837"
    ),
    "Anchored(real_fraction=0.2, synthetic='subsample', reservoir='share')": (
        "b227bb6ef622376d23b1f9679d32630be89cc21a34e5a92f02af1657448e5229"
    ),
    # The whole-reservoir reading (the default) got new digests when it was introduced, and
    # again when it began to admit reservoir x (1 - f) / f synthetic examples, not all.
    "Anchored(real_fraction=0.25)": (
        "0bc94bb797c2d8507e825ff19fc2b9ff985a97059fc97cd3772611bbb044a4b2"
    ),
    "Anchored(real_fraction=0.3, synthetic='latest')": (
        "97a01dbbb3b4082f457326774113cd91b928be8e9508a47124a3b06e7f8f535f"
    ),
    "Anchored(real_fraction=0.2, synthetic='subsample')": (
        "1372378bd4f1c31ab7dfa1cef81290b989472550db20f33092d5b305dfcf1105"
    ),
    "FillGaps()": "25e5f1e0cec86b3a8ca0482fee63a72c6164107e94411f3838277f4a311d16f9",
    "FillGaps(target=25, real_fraction=0.5)": (
        "7930d06fbe1c6cbd6ee2a63e07867a1126b53f098ed170010911b1324f0fb018"
    ),
    "Fresh(new_human_per_round=10, synthetic='accumulate')": (
        "79c823b2a74a092e8f54c3a5025fc0473442575258698ba65dcd88090c2f4b97"
    ),
}


def _pinned_pool(policy: Policy) -> pa.Table:
    return make_pool(40, 120, seed=11, round_of_human=3 if isinstance(policy, Fresh) else 0)


@pytest.mark.parametrize("expr", sorted(PINNED_DIGESTS))
def test_pinned_digests(expr):
    policy = eval(expr)  # noqa: S307 - the table's keys are constructor calls
    m = plan(_pinned_pool(policy), policy, round=3, batch_size=8, seed=7, epochs=2)
    assert m.digest == PINNED_DIGESTS[expr]


def test_every_registered_policy_is_pinned():
    pinned = {eval(expr).name for expr in PINNED_DIGESTS}  # noqa: S307
    assert pinned == set(POLICIES)


@pytest.mark.parametrize("expr", sorted(PINNED_DIGESTS))
def test_manifest_rebuilds_its_policy(expr):
    # A stored manifest names its policy and params: rebuilding and replanning gives it back.
    policy = eval(expr)  # noqa: S307
    pool = _pinned_pool(policy)
    m = plan(pool, policy, round=3, batch_size=8, seed=7, epochs=2)
    rebuilt = policy_from_manifest(m)
    assert type(rebuilt) is type(policy)
    again = plan(
        pool,
        rebuilt,
        round=m.round,
        batch_size=m.params["batch_size"],
        seed=m.seed,
        epochs=m.params["epochs"],
    )
    assert again.digest == m.digest


def test_accumulate_subsample_is_a_registered_mix_policy():
    from tailguard.lab import AccumulateSubsample as FromLab
    from tailguard.mix import policy_from_name

    assert FromLab is AccumulateSubsample
    assert policy_from_name("accumulate-subsample", size=5) == AccumulateSubsample(size=5)
    with pytest.raises(ConfigError, match="size"):
        policy_from_name("accumulate_subsample", size=0)


@pytest.mark.parametrize(
    "policy",
    [Anchored(real_fraction=0.3), Anchored(real_fraction=0.3, synthetic="latest"),
     Anchored(real_fraction=0.3, reservoir="share"), FillGaps(real_fraction=0.3)],
    ids=["anchored", "latest", "share", "fill_gaps"],
)  # fmt: skip
@pytest.mark.parametrize("n_synthetic", [5, 60, 400])
def test_planned_share_is_what_the_plan_realises(policy, n_synthetic):
    """The dial's prediction from counts equals the manifest plan() writes."""
    from tailguard.mix.planner import planned_share

    pool = make_pool(40, n_synthetic, seed=3)
    for f in (0.2, 0.5):
        m = plan(pool, policy, round=3, batch_size=8, seed=1, real_fraction=f)
        share = planned_share(pool, policy, round=3, batch_size=8, real_fraction=f, seed=1)
        assert (share["human_slots"], share["synthetic_slots"]) == (
            m.params["human_slots"],
            m.params["synthetic_slots"],
        )
        assert share["realised"] == pytest.approx(m.params["real_fraction_used"])
