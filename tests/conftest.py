"""Shared fixtures: real human data from the Debian fortunes package, in-memory ledgers."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import settings

from tailguard.ledger import Ledger
from tailguard.records import make_records

# Property tests check invariants, not speed: no per-example deadline on a busy machine.
settings.register_profile("tailguard", deadline=None)
settings.load_profile("tailguard")


@pytest.fixture(scope="session")
def fortunes_records() -> pa.Table:
    from tailguard.datasets import fortunes

    return fortunes()


@pytest.fixture
def ledger() -> Ledger:
    with Ledger.open(":memory:") as led:
        yield led


@pytest.fixture
def small_human() -> pa.Table:
    """60 human records in three labels of sizes 40, 15 and 5 (a long tail)."""
    labels = ["common"] * 40 + ["middle"] * 15 + ["rare"] * 5
    texts = [f"human example number {i} about {lab}" for i, lab in enumerate(labels)]
    return make_records(texts, origin="human", source="unit", label=labels)


@pytest.fixture
def frozen(ledger: Ledger, small_human: pa.Table) -> Ledger:
    ledger.add_records(small_human)
    ledger.freeze_reservoir("main", holdout=0.2, seed=7)
    return ledger
