"""The one place of bounds on the numbers a user gives tailguard.

Every count, size and index a user types (CLI options, tailguard.toml) is checked
against these before anything is allocated or written, so a mistyped number costs
a named error rather than the machine's memory or a half-written ledger. Rounds and
generations are bounded by the ledger's ``INTEGER`` columns, seeds by ``BIGINT``;
the other caps are stated here and in docs/security.md.
"""

from __future__ import annotations

from typing import Any

from tailguard.errors import ConfigError

#: The ledger stores rounds, generations and batch numbers as ``INTEGER``.
INT32_MAX = 2**31 - 1
#: Seeds are stored as ``BIGINT``.
INT64_MAX = 2**63 - 1

ROUND_MAX = INT32_MAX
GENERATION_MAX = INT32_MAX
SEED_MAX = INT64_MAX
#: Rounds one `tailguard run` may be asked for (each trains, generates and gates).
RUN_ROUNDS_MAX = 10_000
#: Examples in one training batch.
BATCH_SIZE_MAX = 1 << 20
#: Passes over a round's selected examples.
EPOCHS_MAX = 10_000
#: Slots (one trained example each) in one round's plan: about 1 GB of manifest.
SLOTS_MAX = 1 << 26
#: Worker processes.
WORKERS_MAX = 256
#: Lab generations per run and seeds per strategy.
GENERATIONS_MAX = 10_000
SEEDS_MAX = 1_000
#: Training examples per lab round (`demo --volume`, sizes of the lab's pools).
VOLUME_MAX = 10_000_000
#: The smallest `demo --volume` whose held-out reference set is not empty.
DEMO_VOLUME_MIN = 50
#: Nesting of arrays and tables in tailguard.toml (and of Parquet columns).
NESTING_MAX = 64


def check_count(value: Any, name: str, *, low: int = 1, high: int) -> int:
    """``value`` as an int in ``[low, high]``, or a :class:`ConfigError` naming the limit."""
    if isinstance(value, bool) or not isinstance(value, int) and not hasattr(value, "__index__"):
        raise ConfigError(f"{name} must be a whole number in [{low:,}, {high:,}], got {value!r}")
    v = int(value)
    if not low <= v <= high:
        raise ConfigError(f"{name} must be a whole number in [{low:,}, {high:,}], got {v:,}")
    return v


def check_slots(slots: int, *, detail: str) -> int:
    """Refuse a plan of more than :data:`SLOTS_MAX` slots before it is laid out."""
    if slots > SLOTS_MAX:
        raise ConfigError(
            f"the plan would hold {slots:,} slots ({detail}); the limit is {SLOTS_MAX:,}: "
            "lower --batch-size or --epochs"
        )
    return slots


def nesting_depth(value: Any) -> int:
    """How deeply lists and dicts nest in ``value`` (iteratively, so depth costs no stack)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            deepest = max(deepest, depth)
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest
