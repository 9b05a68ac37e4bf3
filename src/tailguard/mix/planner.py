"""The batch planner: a pure, seeded function from eligible rows to an ordered manifest.

How a plan is made (all vectorised with numpy, no per-row Python):

1. The policy selects the eligible rows of the pool.
2. Every row gets a 64-bit *fingerprint* from its id bytes, origin and
   generation. Shuffles sort rows by a seeded mix of that fingerprint, so the
   plan depends on the rows, never on their order in the pool, and the same
   inputs and seed give the same digest on any machine.
3. Human slots are drawn from a *cycled* human stream: each pass over the
   human rows is a fresh shuffle, so every reservoir example appears before any
   repeats. Within a pass the order is stratified by label (systematic
   sampling: each label's rows are spread evenly through the pass with a random
   phase), so any prefix of a pass - in particular a round's last, partial
   pass - holds every label within one example of its proportion.
4. With an anchored policy, batch ``b`` holds ``H(b+1) - H(b)`` human slots where
   ``H(k) = round(f * batch_size * k)`` (half up, in exact integer arithmetic):
   exactly ``f * batch_size`` per batch when that is whole, otherwise its floor or
   ceiling with the cumulative share exact (largest remainder across batches).
   Human slots are spread evenly inside each batch, so micro-batches keep the mix.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tailguard import limits
from tailguard.errors import ConfigError, InputError, ReservoirError
from tailguard.mix.layout import (
    _anchored_layout,
    _positions,
    _row_positions,
    _subset,
    anchored_counts,
    as_fraction,
    first_batches,
    human_quota,
)
from tailguard.mix.policies import Anchored, HumanOnly, Policy, check_fraction
from tailguard.mix.slots import _slots_table
from tailguard.mix.streams import (
    _both,
    _cycled_order,
    _fingerprint_bytes,
    _id_bytes,
    _label_codes,
    id_fingerprints,
    row_fingerprints,
    row_keys,
)
from tailguard.records import Manifest

#: Pools at least this large run independent steps (e.g. the two shuffles) on two threads.
_PARALLEL_MIN = 1 << 20


def plan(
    pool: pa.Table,
    policy: Policy,
    *,
    round: int,  # noqa: A002 - the ledger's own name
    batch_size: int,
    real_fraction: float | None = None,
    seed: int = 0,
    epochs: int = 1,
    run: str = "main",
    exclude_ids: pa.Array | pa.ChunkedArray | list[str] | None = None,
) -> Manifest:
    """Plan round ``round``'s training batches from ``pool`` under ``policy``.

    ``real_fraction`` overrides an anchored policy's fraction (the Dial's
    output); other policies take none. ``epochs`` passes over the selected
    synthetic (or, without an anchor, all selected) rows are planned in one
    manifest. ``exclude_ids`` (the reservoir's holdout) must not occur in the
    pool at all: if one does, nothing is planned. The result is not written
    anywhere; store it with ``Ledger.write_manifest``.
    """
    batch_size = _positive_int(batch_size, "batch_size", limits.BATCH_SIZE_MAX)
    epochs = _positive_int(epochs, "epochs", limits.EPOCHS_MAX)
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    limits.check_count(seed, "seed", low=0, high=limits.SEED_MAX)
    if not isinstance(policy, Policy):
        raise ConfigError(f"policy must be a tailguard.mix Policy, got {type(policy).__name__}")
    if real_fraction is not None:
        if not isinstance(policy, Anchored):
            raise ConfigError(
                f"the '{policy.name}' policy takes no real_fraction; use Anchored to set the "
                "human share"
            )
        policy = policy.with_real_fraction(real_fraction)
    if exclude_ids is not None:
        _refuse_excluded(pool, exclude_ids)

    selection = policy.selection(pool, round, seed)
    layout_policy = policy.resolve(selection)
    _check_planned_slots(selection, layout_policy, batch_size, epochs)
    rows = selection.pool
    # Everything below reads only the selected rows (``selection.keep``) of the pool, so
    # rows a policy leaves out never change a plan.
    id_matrix, id_lengths = _id_bytes(rows["id"])
    parallel = rows.num_rows >= _PARALLEL_MIN

    def fingerprints() -> np.ndarray:
        if id_matrix is None and selection.keep is not None:  # long ids: rank among selected
            id_fp = np.zeros(rows.num_rows, dtype=np.uint64)
            id_fp[selection.keep] = id_fingerprints(rows["id"].filter(pa.array(selection.keep)))
        else:
            id_fp = _fingerprint_bytes(rows["id"], id_matrix, id_lengths)
        return row_fingerprints(rows, id_fp, synthetic=~selection.human, inplace=True)

    fp, (codes, n_labels, label_values) = _both(
        fingerprints, lambda: _label_codes(rows["label"], selection.keep), parallel=parallel
    )
    rng_seed = int(seed)

    if isinstance(layout_policy, Anchored):
        src, human_slot, info = _anchored_layout(
            layout_policy,
            fp,
            _row_positions(selection, human=True),
            _row_positions(selection, human=False),
            codes,
            n_labels,
            batch_size,
            epochs,
            rng_seed,
            parallel=parallel,
        )
    else:
        stratify = isinstance(policy, HumanOnly)
        selected = _row_positions(selection)
        order = _cycled_order(
            _subset(fp, selected),
            epochs * len(selected),
            rng_seed,
            salt=1,
            codes=_subset(codes, selected) if stratify and codes is not None else None,
            n_codes=n_labels,
        )
        src = _positions(selected, order)
        human_slot = np.take(selection.human, src)
        info = {}

    slots = _slots_table(
        rows,
        src,
        batch_size,
        id_matrix,
        id_lengths,
        human_slot,
        codes,
        label_values,
        parallel=parallel,
    )
    n_human = int(np.count_nonzero(human_slot))
    params: dict[str, Any] = {
        **policy.params(),
        "batch_size": batch_size,
        "epochs": epochs,
        **info,
        **(selection.info or {}),
        "real_fraction_used": n_human / len(src) if len(src) else 0.0,
        "human_slots": n_human,
        "synthetic_slots": len(src) - n_human,
    }
    return Manifest(
        round=int(round), slots=slots, policy=policy.name, params=params, seed=rng_seed, run=run
    )


def planned_share(
    pool: pa.Table,
    policy: Anchored,
    *,
    round: int,  # noqa: A002
    batch_size: int,
    real_fraction: float,
    seed: int = 0,
    epochs: int = 1,
) -> dict[str, Any]:
    """What :func:`plan` will realise at ``real_fraction``, from counts alone.

    ``asked`` is the share, ``realised`` the human share of the round's training
    slots (what ``tailguard audit`` reports), and ``synthetic_needed`` how many more
    accepted synthetic examples the share needs when fewer passed the gate (the
    whole reservoir is always re-injected, so the round then trains on more human).
    """
    policy = policy.with_real_fraction(real_fraction)
    selection = policy.selection(pool, round, seed)
    n_human, n_synthetic = (
        len(_row_positions(selection, True)),
        len(_row_positions(selection, False)),
    )
    layout = policy.resolve(selection)  # as plan() lays it out (fill_gaps sets its epoch)
    _, n_batches, quota, info = anchored_counts(layout, n_human, n_synthetic, batch_size, epochs)
    human_slots, slots = int(quota.sum()), n_batches * batch_size
    return {
        "asked": float(real_fraction),
        "realised": human_slots / slots if slots else 1.0,
        "human_slots": human_slots,
        "synthetic_slots": slots - human_slots,
        "synthetic_available": info.get("synthetic_available", epochs * n_synthetic),
        "synthetic_needed": info.get("synthetic_needed", 0),
    }


def describe_share(share: dict[str, Any]) -> str:
    """The share asked and realised, and why they differ, as a person reads it."""
    asked, got = share["asked"], share["realised"]
    text = f"realised {got:.0%} human of {share['human_slots'] + share['synthetic_slots']:,} slots"
    if share.get("synthetic_needed"):
        text += (
            f" (asked {asked:.0%}: the whole reservoir is re-injected and "
            f"{share['synthetic_available']:,} synthetic examples passed the gate; "
            f"{share['synthetic_needed']:,} more would reach {asked:.0%})"
        )
    return text


# ---------------------------------------------------------------------------- checks
def _positive_int(value: Any, name: str, high: int) -> int:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return limits.check_count(value, name, high=high)


def _check_planned_slots(selection: Any, policy: Policy, batch_size: int, epochs: int) -> None:
    """Count the plan's slots from the pool's counts before any of it is laid out."""
    n_human = len(_row_positions(selection, True))
    n_synthetic = len(_row_positions(selection, False))
    slots = epochs * (n_human + n_synthetic)
    if isinstance(policy, Anchored) and slots <= limits.SLOTS_MAX:
        # Plus the human slots a whole reservoir adds: at most one pass of it per epoch.
        _, n_batches, _, _ = first_batches(policy, n_human, n_synthetic, batch_size, epochs)
        slots = n_batches * batch_size + epochs * n_human
    limits.check_slots(
        slots,
        detail=f"{n_human + n_synthetic:,} examples, {epochs:,} epoch(s), batches of "
        f"{batch_size:,}",
    )


def _refuse_excluded(pool: pa.Table, exclude_ids: Any) -> None:
    if "id" not in pool.column_names:
        raise InputError("the pool has no 'id' column", field="id")
    excluded = (
        exclude_ids
        if isinstance(exclude_ids, pa.Array | pa.ChunkedArray)
        else pa.array(list(exclude_ids), pa.string())
    )
    if len(excluded) == 0:
        return
    hit = pc.is_in(
        pool["id"],
        value_set=excluded.cast(pa.string())
        if isinstance(excluded, pa.Array)
        else excluded.combine_chunks().cast(pa.string()),
    )
    n = pc.sum(hit).as_py() or 0
    if n:
        example = pool["id"].filter(hit)[0].as_py()
        raise ReservoirError(
            f"the pool holds {n} held-out reservoir id(s) (e.g. {example}): holdout examples "
            "are never trained on; nothing was planned"
        )


__all__ = [
    "as_fraction",
    "check_fraction",
    "describe_share",
    "human_quota",
    "id_fingerprints",
    "plan",
    "planned_share",
    "row_fingerprints",
    "row_keys",
]
