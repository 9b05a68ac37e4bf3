"""Mixing: policies, the exact batch planner, the evidence-driven Dial, training adapters.

Depends only on :mod:`tailguard.records` and :mod:`tailguard.errors`.
"""

from __future__ import annotations

from tailguard.mix.adapters import (
    distributed_batch_sampler,
    export_manifest,
    join_records,
    manifest_batch_sampler,
    manifest_dataset,
    manifest_indices,
    manifest_sampler,
    manifest_trainer,
    rank_batches,
    rank_quota,
)
from tailguard.mix.dial import Decision, Dial, Evidence
from tailguard.mix.gaps import FillGaps
from tailguard.mix.layout import human_slots, volume_slots
from tailguard.mix.planner import human_quota, plan
from tailguard.mix.policies import (
    POLICIES,
    Accumulate,
    AccumulateSubsample,
    Anchored,
    Fresh,
    HumanOnly,
    Policy,
    Replace,
    eligible_rows,
    policy_from_manifest,
    policy_from_name,
)

__all__ = [
    "POLICIES",
    "Accumulate",
    "AccumulateSubsample",
    "Anchored",
    "Decision",
    "Dial",
    "Evidence",
    "FillGaps",
    "Fresh",
    "HumanOnly",
    "Policy",
    "Replace",
    "distributed_batch_sampler",
    "eligible_rows",
    "export_manifest",
    "human_quota",
    "human_slots",
    "join_records",
    "manifest_batch_sampler",
    "manifest_dataset",
    "manifest_indices",
    "manifest_sampler",
    "manifest_trainer",
    "plan",
    "policy_from_manifest",
    "policy_from_name",
    "rank_batches",
    "rank_quota",
    "volume_slots",
]
