"""Adapters: PyTorch samplers, the datasets view and file export replay the plan exactly."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tailguard.errors import InputError
from tailguard.mix import (
    Anchored,
    export_manifest,
    join_records,
    manifest_batch_sampler,
    manifest_dataset,
    manifest_indices,
    manifest_sampler,
    plan,
)
from tailguard.records import make_records


@pytest.fixture(scope="module")
def records() -> pa.Table:
    human = make_records(
        [f"person wrote {i}" for i in range(30)],
        origin="human",
        source="people",
        label=["a", "b", "c"] * 10,
    )
    synthetic = make_records(
        [f"model wrote {i}" for i in range(90)],
        origin="synthetic",
        source="model",
        generator="m",
        generation=1,
        round=1,
        status="accepted",
    )
    return pa.concat_tables([human, synthetic])


@pytest.fixture(scope="module")
def manifest(records):
    return plan(records, Anchored(real_fraction=0.25), round=1, batch_size=12, seed=5)


def test_indices_follow_the_plan(records, manifest):
    order = manifest_indices(manifest, records["id"])
    assert records["id"].take(pa.array(order)).to_pylist() == manifest.slots["id"].to_pylist()
    as_map = {i: k for k, i in enumerate(records["id"].to_pylist())}
    assert (manifest_indices(manifest, as_map) == order).all()
    with pytest.raises(InputError, match="lacks"):
        manifest_indices(manifest, records["id"].slice(1))


def test_torch_batch_sampler_keeps_every_batch_exact(records, manifest):
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    origins = records["origin"].to_pylist()
    dataset = [0 if o == "human" else 1 for o in origins]
    sampler = manifest_batch_sampler(manifest, records["id"])
    assert len(sampler) == manifest.n_batches
    loader = DataLoader(dataset, batch_sampler=sampler)
    batches = [b for b in loader]
    assert all(isinstance(b, torch.Tensor) and len(b) == 12 for b in batches)
    assert [int((b == 0).sum()) for b in batches] == [3] * manifest.n_batches
    flat = list(manifest_sampler(manifest, records["id"]))
    assert flat == [i for b in sampler for i in b]


def test_join_and_datasets_view_are_in_training_order(records, manifest):
    joined = join_records(manifest, records)
    assert joined["id"].to_pylist() == manifest.slots["id"].to_pylist()
    assert joined["content"].null_count == 0 and "source" in joined.column_names
    ds = manifest_dataset(manifest, records)
    assert ds["id"] == manifest.slots["id"].to_pylist()


def test_export_round_trips(tmp_path, records, manifest):
    parquet = export_manifest(manifest, records, tmp_path / "train.parquet")
    back = pq.read_table(parquet)
    assert back["id"].to_pylist() == manifest.slots["id"].to_pylist()
    jsonl = export_manifest(manifest, records, tmp_path / "train.jsonl")
    lines = [json.loads(x) for x in jsonl.read_text().splitlines()]
    assert [x["id"] for x in lines] == manifest.slots["id"].to_pylist()
    assert {x["batch"] for x in lines} == set(range(manifest.n_batches))
    with pytest.raises(InputError, match="unknown export format"):
        export_manifest(manifest, records, tmp_path / "train.csv")
    humans = back.filter(pc.equal(back["origin"], "human"))
    assert np.isin(humans["label"].to_pylist(), ["a", "b", "c"]).all()
