"""FillGaps: synthetic examples only where a label's human data is thin."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailguard.errors import ConfigError
from tailguard.mix import FillGaps, plan, policy_from_manifest, policy_from_name
from tailguard.mix.planner import human_quota


def _pool(human: dict[str, int], synthetic: dict[str, int], unlabelled: int = 0) -> pa.Table:
    labels = [k for k, n in human.items() for _ in range(n)]
    syn = [k for k, n in synthetic.items() for _ in range(n)] + [None] * unlabelled
    ids = [f"h{i:05d}" for i in range(len(labels))] + [f"s{i:05d}" for i in range(len(syn))]
    return pa.table(
        {
            "id": ids,
            "origin": ["human"] * len(labels) + ["synthetic"] * len(syn),
            "generation": [0] * len(labels) + [1] * len(syn),
            "label": pa.array(labels + syn, pa.string()),
        }
    )


def _counts(manifest, origin: str) -> dict[str, int]:
    """Distinct examples per label (full batches may repeat a few)."""
    slots = manifest.slots.filter(pa.compute.equal(manifest.slots["origin"], origin))
    _, first = np.unique(np.asarray(slots["id"].to_pylist(), dtype=str), return_index=True)
    slots = slots.take(pa.array(first))
    labels, n = np.unique(np.asarray(slots["label"].to_pylist(), dtype=str), return_counts=True)
    return dict(zip(labels.tolist(), n.tolist(), strict=True))


def test_median_target_fills_only_thin_labels_and_records_the_gaps():
    pool = _pool({"a": 50, "b": 20, "c": 5, "d": 30}, {"a": 40, "b": 40, "c": 40}, unlabelled=5)
    m = plan(pool, FillGaps(), round=1, batch_size=10)
    # median of (50, 20, 5, 30) is 25: b lacks 5, c lacks 20, a and d are covered
    assert m.params["gaps"] == {"a": 0, "b": 5, "c": 20, "d": 0}
    assert m.params["filled"] == {"a": 0, "b": 5, "c": 20, "d": 0}
    assert _counts(m, "synthetic") == {"b": 5, "c": 20}
    assert _counts(m, "human") == {"a": 50, "b": 20, "c": 5, "d": 30}
    assert m.params["real_fraction_used"] == pytest.approx(105 / 130)


def test_a_gap_larger_than_the_synthetic_supply_takes_all_of_it():
    m = plan(_pool({"a": 30, "b": 2}, {"b": 3}), FillGaps(target=20), round=1, batch_size=8)
    assert m.params["gaps"] == {"a": 0, "b": 18}
    assert m.params["filled"] == {"a": 0, "b": 3}


def test_a_user_table_sets_each_target_and_leaves_the_rest_alone():
    pool = _pool({"a": 10, "b": 10}, {"a": 10, "b": 10, "c": 10})
    m = plan(pool, FillGaps(target={"a": 14, "c": 3}), round=1, batch_size=4)
    assert m.params["gaps"] == {"a": 4, "b": 0, "c": 3}
    assert _counts(m, "synthetic") == {"a": 4, "c": 3}


def test_a_manifest_rebuilds_its_policy_and_the_same_plan():
    pool = _pool({"a": 40, "b": 6}, {"b": 30})
    for policy in (FillGaps(), FillGaps(target={"b": 9}, real_fraction=0.5)):
        m = plan(pool, policy, round=1, batch_size=8, seed=3)
        again = policy_from_manifest(m)
        assert again == policy
        assert plan(pool, again, round=1, batch_size=8, seed=3).digest == m.digest
    assert policy_from_name("fill-gaps", target=7) == FillGaps(target=7)


def test_bad_targets_are_refused():
    for bad in ("mean", -1, {"a": -2}, {"a": 1.5}):
        with pytest.raises(ConfigError):
            FillGaps(target=bad)


@settings(max_examples=40, deadline=None)
@given(
    human=st.dictionaries(st.sampled_from("abcdef"), st.integers(1, 40), min_size=1),
    synthetic=st.dictionaries(st.sampled_from("abcdefg"), st.integers(0, 40)),
    target=st.one_of(st.just("median"), st.integers(0, 50)),
    batch_size=st.integers(2, 16),
)
def test_fill_never_exceeds_a_gap_and_every_batch_keeps_its_human_share(
    human, synthetic, target, batch_size
):
    policy = FillGaps(target=target)
    try:
        m = plan(_pool(human, synthetic), policy, round=1, batch_size=batch_size)
    except ConfigError as exc:  # a share below one example per batch is refused, as anchored
        assert "rounds to zero" in str(exc)
        return
    gaps, filled = m.params["gaps"], m.params["filled"]
    got = _counts(m, "synthetic")
    for label, n in got.items():
        assert n <= gaps[label] and n == filled[label]
    for label, n in human.items():  # covered labels never get synthetic data
        level = target if isinstance(target, int) else int(np.median(list(human.values())))
        if n >= level:
            assert got.get(label, 0) == 0
        else:
            assert got.get(label, 0) == min(level - n, synthetic.get(label, 0))
    # every human row once, and the planner's exact per-batch share
    assert _counts(m, "human") == human
    f = m.params["real_fraction_used"]
    batches = m.slots["batch"].to_numpy()
    is_human = np.asarray(m.slots["origin"].to_pylist()) == "human"
    per_batch = np.bincount(batches, weights=is_human).astype(int)
    if sum(got.values()):
        quota = human_quota(
            sum(human.values()) / (sum(human.values()) + sum(got.values())),
            batch_size,
            len(per_batch),
        )
        assert per_batch.tolist() == quota.tolist()
    assert 0 < f <= 1
