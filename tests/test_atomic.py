"""A loop stage's writes and its mark land together, and ``Ledger.atomic`` keeps nothing
of a block in which any write failed, even one whose error the caller caught."""

from __future__ import annotations

import pyarrow as pa
import pytest

from tailguard.errors import InputError, TailguardError
from tailguard.ledger import Ledger
from tailguard.loop import Loop
from tailguard.mix import Anchored
from tailguard.records import make_records
from tailguard.stages import STAGES


def _synthetic(texts: list[str], r: int = 1) -> pa.Table:
    return make_records(
        texts, origin="synthetic", source="m", generator="m0", generation=max(r, 1), round=r
    )


def _forged(text: str) -> pa.Table:
    """A record whose id is not its content's hash (add_records refuses it)."""
    rec = _synthetic([text])
    return rec.set_column(0, "id", pa.array(["0" * 32]))


def test_atomic_block_commits_every_write_at_once(frozen: Ledger):
    with frozen.atomic():
        frozen.add_records(_synthetic(["one synthetic text", "two synthetic text"]))
        frozen.mark_stage("main", 1, "generate")
    assert frozen.count(origin="synthetic") == 2
    assert frozen.last_stage("main") == (1, "generate")


def test_a_caught_failure_inside_an_atomic_block_keeps_nothing(frozen: Ledger):
    with pytest.raises(TailguardError, match="nothing of the block was kept"), frozen.atomic():
        frozen.add_records(_synthetic(["kept only if the block commits"]))
        with pytest.raises(InputError):
            frozen.add_records(_forged("a forged record"))
        frozen.mark_stage("main", 1, "generate")
    assert frozen.count(origin="synthetic") == 0
    assert frozen.last_stage("main") is None
    frozen.add_records(_synthetic(["the ledger takes writes again"]))  # not left doomed
    assert frozen.count(origin="synthetic") == 1


def test_an_error_leaving_an_atomic_block_rolls_it_back(frozen: Ledger):
    with pytest.raises(RuntimeError), frozen.atomic():
        frozen.add_records(_synthetic(["written, then rolled back"]))
        frozen.write_decision(run="main", round=1, real_fraction=0.5, reason="x")
        raise RuntimeError("the stage failed")
    assert frozen.count(origin="synthetic") == 0
    assert frozen.decisions("main").num_rows == 0  # (a cached read would still show it)


def _loop(led: Ledger, **kw) -> Loop:
    words = ["alpha", "beta", "gamma", "delta", "omega"]

    def generate(model, n, r, seed):  # noqa: ANN001, ANN202
        return [f"{words[i % 5]} {words[(i + r) % 5]} text {r}-{i}" for i in range(n)]

    return Loop(
        led,
        train=lambda manifest, records: records.num_rows,
        generate=generate,
        policy=Anchored(real_fraction=0.5),
        n_generate=20,
        batch_size=8,
        **kw,
    )


def test_a_stage_whose_mark_fails_leaves_none_of_its_writes(frozen: Ledger, monkeypatch):
    loop = _loop(frozen)
    loop.run(0)
    real = frozen.mark_stage

    def failing(run, r, stage, **kw):  # noqa: ANN001, ANN202
        if (r, stage) == (1, "generate"):
            raise OSError("disk full")
        return real(run, r, stage, **kw)

    monkeypatch.setattr(frozen, "mark_stage", failing)
    with pytest.raises(OSError):
        loop.run(1, resume=True)
    # Written in separate transactions, the candidates would be in without their mark.
    assert frozen.count(origin="synthetic") == 0
    assert frozen.last_stage("main") == (0, "evaluate")
    monkeypatch.setattr(frozen, "mark_stage", real)
    loop.run(1, resume=True)
    assert frozen.count(origin="synthetic", round=1) == 20


def test_every_stage_is_marked_in_order(frozen: Ledger):
    from tailguard.monitor import Monitor

    _loop(frozen, monitor=Monitor(preset="default")).run(2)
    stages = frozen.stages("main").to_pylist()
    for r in range(3):
        mine = [s["stage"] for s in stages if s["round"] == r]
        assert mine == list(STAGES), r
    assert frozen.last_stage("main") == (2, "evaluate")
