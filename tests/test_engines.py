"""Engines: the same batch function gives the same table in-process, in a pool, on Ray."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tailguard.engines import InProcess, ProcessPool, RayEngine, engine_from_name
from tailguard.gate import Gate, NearDuplicate, Quality
from tailguard.gate.gate import _SafeVerify
from tailguard.records import make_records


def double(batch: pa.Table) -> pa.Table:
    return pa.table({"x": pa.compute.multiply(batch["x"], 2)})


@pytest.fixture(scope="module")
def texts() -> pa.Table:
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(40)]
    body = [" ".join(rng.choice(vocab, rng.integers(1, 30))) for _ in range(500)]
    body += ["!!!" * 5, "", "a a a a a a a a"]
    return make_records(body, origin="synthetic", source="t", generator="g", generation=1)


def test_in_process_and_pool_keep_order_and_values():
    t = pa.table({"x": np.arange(1000)})
    expected = np.arange(1000) * 2
    for engine in (InProcess(), ProcessPool(max_workers=2)):
        seen = []
        out = engine.map_batches(double, t, batch_size=97, progress=seen.append)
        assert out["x"].to_numpy().tolist() == expected.tolist()
        assert sum(seen) == 1000


def test_bad_engine_name_and_batch_size():
    with pytest.raises(ValueError, match="unknown engine"):
        engine_from_name("spark")
    with pytest.raises(ValueError, match="batch_size"):
        InProcess().map_batches(double, pa.table({"x": [1]}), batch_size=0)


@pytest.fixture(scope="module")
def ray_engine():
    pytest.importorskip("ray")
    engine = RayEngine(num_cpus=2)
    yield engine
    engine.shutdown()


@pytest.mark.slow
def test_a_real_verifier_on_ray_equals_in_process(ray_engine, texts):
    fn = _SafeVerify(Quality(max_repeated_ngrams=0.2))
    local = InProcess().map_batches(fn, texts, batch_size=64)
    on_ray = ray_engine.map_batches(fn, texts, batch_size=64)
    assert on_ray.equals(local)
    gate_ray = Gate(
        [Quality(), NearDuplicate()], engine=ray_engine, batch_size=100, progress=False
    ).run(texts)
    gate_local = Gate([Quality(), NearDuplicate()], progress=False).run(texts)
    assert gate_ray.verdicts.equals(gate_local.verdicts)
    assert gate_ray.accepted.tolist() == gate_local.accepted.tolist()
