"""Shared fixtures and builders: real human data (Debian fortunes), in-memory ledgers,
synthetic corpora and training pools, and a tiny lab run.

The builders are plain functions (``from conftest import make_pool``) so property
tests can call them with drawn arguments.
"""

from __future__ import annotations

from typing import Any

import numpy as np
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


# ----------------------------------------------------------------------------- builders
def make_corpus(
    n: int, *, seed: int, temperature: float = 1.0, n_classes: int = 20, vocab: int = 2000
) -> tuple[list[str], list[str]]:
    """Long-tailed labelled texts: Zipf words, Zipf classes; temperature < 1 sharpens both."""
    rng = np.random.default_rng(seed)
    p_cls = (1.0 / np.arange(1, n_classes + 1) ** 1.3) ** (1 / temperature)
    p_word = (1.0 / np.arange(1, vocab + 1) ** 1.1) ** (1 / temperature)
    labels = rng.choice(n_classes, n, p=p_cls / p_cls.sum())
    lengths = rng.integers(4, 16, n)
    words = rng.choice(vocab, lengths.sum(), p=p_word / p_word.sum())
    words = (words + np.repeat(labels, lengths) * 37) % vocab  # classes use shifted words
    cuts = np.cumsum(lengths)[:-1]
    texts = [" ".join(f"w{w}" for w in ws) for ws in np.split(words, cuts)]
    return texts, [f"c{c}" for c in labels]


def make_pool(
    n_human: int,
    n_synthetic: int,
    *,
    generations: int = 3,
    labels: tuple[str, ...] = ("a", "b", "c"),
    label_p: tuple[float, ...] | None = None,
    seed: int = 0,
    status: bool = False,
    round_of_human: int = 0,
) -> pa.Table:
    """A training pool with content-id-like ids (32 hex digits)."""
    rng = np.random.default_rng(seed)
    n = n_human + n_synthetic
    ids = [f"{x:032x}" for x in rng.choice(2**62, size=n, replace=False) * 7919]
    generation = np.concatenate(
        [np.zeros(n_human, np.int32), rng.integers(1, generations + 1, n_synthetic)]
    ).astype(np.int32)
    human_labels = rng.choice(len(labels), n_human, p=label_p)
    columns = {
        "id": pa.array(ids, pa.string()),
        "origin": pa.array(["human"] * n_human + ["synthetic"] * n_synthetic),
        "generation": pa.array(generation, pa.int32()),
        "label": pa.array([labels[i] for i in human_labels] + [None] * n_synthetic, pa.string()),
        "round": pa.array(
            np.concatenate([np.full(n_human, round_of_human), generation[n_human:]]), pa.int32()
        ),
    }
    if status:
        states = np.array(["accepted", "rejected", "candidate"])
        columns["status"] = pa.array(
            ["accepted"] * n_human + list(states[rng.choice(3, n_synthetic, p=[0.6, 0.2, 0.2])])
        )
    return pa.table(columns)


def ledger_with_candidates(path: Any, human: list[str], synthetic: list[str]) -> Any:
    """A ledger file with ``human`` frozen as the reservoir and ``synthetic`` as round 1's
    candidates (generation 1): what a gate command meets."""
    with Ledger.open(path) as led:
        led.add_records(make_records(human, origin="human", source="people"))
        led.freeze_reservoir(holdout=0.1, seed=0)
        led.add_records(
            make_records(
                synthetic, origin="synthetic", source="gen", generator="m", generation=1, round=1
            )
        )
    return path


def run_cli(*args: str) -> Any:
    """The ``tailguard`` command in-process, wide enough that tables keep their rows."""
    from typer.testing import CliRunner

    from tailguard.cli import app

    return CliRunner().invoke(app, list(args), env={"COLUMNS": "220"})


def tiny_lab_run(**overrides: Any) -> Any:
    """A small lab run: one seed, one worker, no recovery rounds, nothing saved, no bar."""
    from tailguard import lab

    settings_ = {
        "seeds": 1,
        "workers": 1,
        "recovery_rounds": 0,
        "out": None,
        "progress": False,
        **overrides,
    }
    return lab.run(**settings_)
