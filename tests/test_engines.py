"""Engines: the same batch function gives the same table in-process, in a pool, on Ray."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tailguard.engines import InProcess, ProcessPool, RayEngine, engine_from_name
from tailguard.gate import Gate, NearDuplicate, Quality
from tailguard.gate.gate import _SafeVerify
from tailguard.ledger import Ledger
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


def _round_with_copies(fortunes_records: pa.Table) -> Ledger:
    """A frozen reservoir of real fortunes and a round of candidates that copy it:
    exact copies in other case, near copies (a word changed), copies of earlier
    candidates, empty and punctuation-only texts, and new text."""
    human = fortunes_records.slice(0, 240)
    texts = human["content"].to_pylist()
    rng = np.random.default_rng(3)
    syn = []
    for i in range(420):
        src = texts[rng.integers(len(texts))]
        kind = i % 6
        if kind == 0:
            syn.append(src.upper())
        elif kind == 1:
            words = src.split()
            words[rng.integers(len(words))] = "zebra"
            syn.append(" ".join(words))
        elif kind == 2 and len(syn) >= 3:
            syn.append(syn[-3] + " indeed")
        else:
            words = texts[rng.integers(len(texts))].split() + src.split()
            syn.append(" ".join(rng.permutation(words)))
    syn += ["", "!!! ???", "short"]
    led = Ledger.open(":memory:")
    led.add_records(human)
    led.freeze_reservoir("main", holdout=0.0, seed=0)
    led.add_records(
        make_records(syn, origin="synthetic", source="m", generator="g", generation=1, round=1)
    )
    return led


@pytest.mark.slow
def test_gate_on_ray_over_parquet_equals_in_process_record_for_record(
    ray_engine, fortunes_records, tmp_path
):
    from tailguard.gate import ExactDuplicate
    from tailguard.gate.distributed import gate_parquet

    led = _round_with_copies(fortunes_records)
    reservoir = led.reservoir_records("train")

    def verifiers(ref):
        return [
            Quality(),
            ExactDuplicate(reference=ref),
            NearDuplicate(reference=ref, threshold=0.7, max_bucket=2),
        ]

    local = Gate(verifiers(reservoir), progress=False).run(
        led.records(round=1, status="candidate", origin="synthetic")
    )
    paths = led.export_round(1, tmp_path)
    out = gate_parquet(
        Gate(verifiers(None), progress=False, batch_size=100),
        paths["candidates"],
        tmp_path / "verdicts",
        engine=ray_engine,
        reservoir=paths["reservoir"],
    )
    import pyarrow.dataset as pads

    cols = ["id", "verifier", "passed", "code", "detail", "score", "matched_id"]
    order = [("id", "ascending"), ("verifier", "ascending")]
    want = local.verdicts.select(cols).sort_by(order)
    got = pads.dataset(str(out)).to_table().select(cols).sort_by(order).cast(want.schema)
    assert got.equals(want)
    details = local.verdicts.filter(pa.compute.invert(local.verdicts["passed"]))["detail"]
    details = details.to_pylist()  # every path of the search was exercised:
    assert sum(d.startswith("copy of reservoir record") for d in details) > 10
    assert sum("with reservoir record" in d for d in details) > 10
    assert sum(d.startswith("copy of candidate") for d in details) > 0
    assert sum("with candidate" in d for d in details) > 0
    counts = led.record_gate_parquet(1, out)
    assert counts["accepted"] == int(local.accepted.sum())
    assert sorted(led.records(round=1, status="accepted")["id"].to_pylist()) == sorted(
        local.accepted_ids.to_pylist()
    )
    assert led.verdicts(round=1).num_rows == local.verdicts.num_rows
    led.close()


@pytest.mark.slow
def test_embeddings_and_record_metrics_on_ray_equal_in_process(
    ray_engine, fortunes_records, tmp_path
):
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    from tailguard.metrics.distributed import embed_parquet, record_metrics, record_metrics_parquet
    from tailguard.metrics.embedders import HashingEmbedder

    table = fortunes_records.slice(0, 300).select(["id", "content"])
    (tmp_path / "in").mkdir()
    pq.write_table(table.slice(0, 150), tmp_path / "in" / "a.parquet")
    pq.write_table(table.slice(150), tmp_path / "in" / "b.parquet")
    embedder = HashingEmbedder(dim=32).fit(table["content"])
    embed_parquet(embedder, tmp_path / "in", tmp_path / "emb", engine=ray_engine, batch_size=64)
    record_metrics_parquet(tmp_path / "in", tmp_path / "stats", engine=ray_engine)

    def read(name: str) -> pa.Table:
        return pads.dataset(str(tmp_path / name)).to_table().sort_by("id")

    emb = read("emb")
    order = pa.compute.sort_indices(table, [("id", "ascending")])
    want = embedder.embed(table["content"].take(order))
    got = np.stack(emb["embedding"].to_numpy(zero_copy_only=False))
    assert emb["id"].to_pylist() == table["id"].take(order).to_pylist()
    np.testing.assert_array_equal(got, want)
    assert read("stats").equals(record_metrics(table).sort_by("id"))
    words = [len(t.split()) for t in table["content"].take(order).to_pylist()]
    assert read("stats")["words"].to_pylist() == words


def test_the_ray_gate_refuses_reference_sets_it_would_not_check(tmp_path):
    """A verdict must not list a reference set (an eval set to decontaminate against) that
    the sharded gate never compared with; refused before Ray starts."""
    from tailguard.errors import ConfigError
    from tailguard.gate.distributed import gate_parquet

    gate = Gate([NearDuplicate(references={"eval": ["an evaluation question to keep out"]})])
    with pytest.raises(ConfigError, match="reference sets \\(eval\\)"):
        gate_parquet(gate, tmp_path / "c", tmp_path / "v", engine=RayEngine(num_cpus=1))
    assert not (tmp_path / "v").exists()
