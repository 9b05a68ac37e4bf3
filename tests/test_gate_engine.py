"""Where the gate runs its verifiers by default: in this process, at any size."""

from __future__ import annotations

import pyarrow as pa

from tailguard.engines import InProcess, ProcessPool
from tailguard.gate import Gate, Quality, Rules, gate_from_config


def test_the_default_engine_for_cheap_row_independent_verifiers_is_in_process():
    cheap = [Quality(), Rules(rules=[{"name": "x", "reason": "x", "forbid": "xyz"}])]
    for gate in (
        Gate(cheap, progress=False),
        gate_from_config({"verifiers": [{"kind": "quality"}]}, progress=False),
    ):
        for v in gate.verifiers:
            assert v.row_independent
            for n in (1, 4_096, 300_000, 10_000_000):
                assert isinstance(gate._engine_for(v, n), InProcess), (v.name, n)


def test_a_pool_is_used_only_when_asked_for():
    gate = Gate([Quality()], parallel_min=1000, progress=False)
    assert isinstance(gate._engine_for(gate.verifiers[0], 999), InProcess)
    assert isinstance(gate._engine_for(gate.verifiers[0], 1000), ProcessPool)
    asked = Gate([Quality()], engine=ProcessPool(), progress=False)
    assert isinstance(asked._engine_for(asked.verifiers[0], 10), ProcessPool)
    texts = ["a fine text of words", "x", "a fine text of words again"]
    table = pa.table({"id": ["a", "b", "c"], "content": texts})
    assert (
        Gate([Quality()], progress=False)
        .run(table)
        .verdicts.equals(
            Gate([Quality()], parallel_min=1, batch_size=1, progress=False).run(table).verdicts
        )
    )
