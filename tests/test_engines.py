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


def _copy(src: str, *, near: bool, rng: np.random.Generator) -> str:
    """An exact copy in other case, or a near copy (a word changed)."""
    if not near:
        return src.upper()
    words = src.split()
    words[rng.integers(len(words))] = "zebra"
    return " ".join(words)


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
        if kind < 2:
            syn.append(_copy(src, near=kind == 1, rng=rng))
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


def _two_generations(fortunes_records: pa.Table) -> tuple[Ledger, pa.Table]:
    """A reservoir, an eval set, and two generations: generation 1 gated without the
    eval set (so some of its accepted records are eval texts), generation 2 holding
    exact and near copies of generation 1's accepted records, of the eval set, of the
    reservoir, of earlier candidates, and new text."""
    from tailguard.gate import ExactDuplicate

    human = fortunes_records.slice(0, 150)
    evals = fortunes_records.slice(150, 60).select(["id", "content"])
    pool = fortunes_records.slice(210, 200)["content"].to_pylist()
    rng = np.random.default_rng(5)
    gen1 = [
        " ".join(rng.permutation(t.split() + pool[i + 1].split())) for i, t in enumerate(pool[:-1])
    ]
    gen1 += evals["content"].to_pylist()[:15]
    led = Ledger.open(":memory:")
    led.add_records(human)
    led.freeze_reservoir("main", holdout=0.0, seed=0)
    led.add_records(
        make_records(gen1, origin="synthetic", source="m", generator="g", generation=1, round=1)
    )
    reservoir = led.reservoir_records("train")
    Gate([ExactDuplicate(reference=reservoir)], progress=False).run_round(led, 1)
    accepted = led.records(round=1, status="accepted")["content"].to_pylist()
    sources = [accepted, evals["content"].to_pylist(), reservoir["content"].to_pylist()]
    syn, fresh = [], []
    for i in range(300):
        src = sources[i % 3][rng.integers(len(sources[i % 3]))]
        kind = (i // 3) % 4
        if kind < 2:
            syn.append(_copy(src, near=kind == 1, rng=rng))
        elif kind == 2 and fresh:  # an exact or a near copy of an earlier new text
            syn.append(fresh[-1].lower() if i % 2 else fresh[-1] + " indeed")
        else:
            words = src.split() + pool[rng.integers(len(pool))].split()
            fresh.append(" ".join(rng.permutation(words)))
            syn.append(fresh[-1])
    syn += ["", "short"]
    led.add_records(
        make_records(syn, origin="synthetic", source="m", generator="g", generation=2, round=2)
    )
    return led, evals


@pytest.mark.slow
def test_ray_gate_compares_with_earlier_generations_and_named_sets_as_in_process(
    ray_engine, fortunes_records, tmp_path
):
    import json

    from tailguard.gate import ExactDuplicate
    from tailguard.gate.distributed import gate_round_on_ray

    led, evals = _two_generations(fortunes_records)
    reservoir = led.reservoir_records("train")

    def verifiers(ref):
        sets = {"eval": evals}
        return [
            Quality(),
            ExactDuplicate(reference=ref, references=sets),
            NearDuplicate(reference=ref, references=sets, threshold=0.7, max_bucket=2),
        ]

    gate = Gate(verifiers(reservoir), progress=False)
    local = gate.run(
        led.records(round=2, status="candidate", origin="synthetic"), earlier=gate._earlier(led, 2)
    )
    counts = gate_round_on_ray(
        Gate(verifiers(None), progress=False, batch_size=100), led, 2, tmp_path, engine=ray_engine
    )
    cols = ["id", "verifier", "passed", "code", "detail", "score", "matched_id"]
    order = [("id", "ascending"), ("verifier", "ascending")]
    want = local.verdicts.select(cols).sort_by(order)
    got = led.verdicts(round=2).select(cols).sort_by(order).cast(want.schema)
    assert got.equals(want)
    assert counts["accepted"] == int(local.accepted.sum())
    details = [d for d in want["detail"].to_pylist() if d]
    for what in ("generation 1 synthetic record", "eval record", "reservoir record", "candidate"):
        assert sum(d.startswith(f"copy of {what}") for d in details) > 3, what
        assert sum(f"with {what}" in d for d in details) > 3, what
    # a record in both the eval set and generation 1 is named by the set compared first
    both = set(evals["id"].to_pylist()) & set(gate._earlier(led, 2)["id"].to_pylist())
    hits = [
        d
        for d, m in zip(want["detail"].to_pylist(), want["matched_id"].to_pylist(), strict=True)
        if m in both
    ]
    assert len(hits) > 3 and all("eval record" in d for d in hits)
    # the verdicts list exactly the sets compared, of the same sizes as in-process
    for name in ("exact_duplicate", "near_duplicate"):
        ray_params = led.verdicts(round=2).filter(
            pa.compute.equal(pa.compute.field("verifier"), name)
        )
        ray_sets = json.loads(ray_params["params"][0].as_py())["references"]
        local_v = local.verdicts.filter(pa.compute.equal(local.verdicts["verifier"], name))
        local_sets = json.loads(local_v["params"][0].as_py())["references"]
        assert sorted(ray_sets) == sorted(local_sets) == ["earlier_generations", "eval"]
        assert {k: v["records"] for k, v in ray_sets.items()} == {
            k: v["records"] for k, v in local_sets.items()
        }
    led.close()


def test_export_round_writes_earlier_generations_and_named_sets_in_gate_order(
    fortunes_records, tmp_path
):
    import pyarrow.dataset as pads

    led, evals = _two_generations(fortunes_records)
    paths = led.export_round(2, tmp_path, references={"eval": evals, "a/..": evals.slice(0, 3)})

    def read(path):
        return pads.dataset(str(path)).to_table().sort_by("pos")

    earlier = read(paths["earlier"])
    want = Gate([Quality()], progress=False)._earlier(led, 2)
    assert earlier["pos"].to_pylist() == list(range(want.num_rows))
    assert earlier["id"].to_pylist() == want["id"].to_pylist()
    assert set(earlier["set"].to_pylist()) == {"generation 1 synthetic"}
    ev = read(paths["references"]["eval"])
    assert ev["id"].to_pylist() == evals["id"].to_pylist()
    assert set(ev["set"].to_pylist()) == {"eval"}
    odd = paths["references"]["a/.."]
    assert odd.parent == tmp_path / "references"
    assert read(odd)["set"].to_pylist() == ["a/.."] * 3
    assert read(paths["candidates"]).num_rows == led.count(round=2, status="candidate")
    first = led.export_round(1, tmp_path / "r1")  # round 1 has no earlier generation
    assert read(first["earlier"]).num_rows == 0
    assert "references" not in first
    led.close()


def test_the_ray_gate_needs_every_named_set_as_shards_and_no_other(tmp_path):
    """A verdict must list exactly the reference sets (an eval set to decontaminate
    against) the sharded gate compared with; checked before Ray starts."""
    from tailguard.errors import ConfigError
    from tailguard.gate.distributed import gate_parquet

    gate = Gate([NearDuplicate(references={"eval": ["an evaluation question to keep out"]})])
    engine = RayEngine(num_cpus=1)
    with pytest.raises(ConfigError, match="reference set\\(s\\) 'eval', not given as shards"):
        gate_parquet(gate, tmp_path / "c", tmp_path / "v", engine=engine)
    with pytest.raises(ConfigError, match="'test' given as shards, but no duplicate verifier"):
        gate_parquet(
            gate,
            tmp_path / "c",
            tmp_path / "v",
            engine=engine,
            references={"eval": tmp_path / "e", "test": tmp_path / "t"},
        )
    assert not (tmp_path / "v").exists()
