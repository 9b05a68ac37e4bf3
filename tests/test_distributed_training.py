"""Data-parallel training: two gloo ranks share every planned batch exactly, and the
Hugging Face Trainer trains in the manifest's batches whatever its own shuffling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tailguard.mix import Anchored, manifest_indices, plan, rank_quota
from tailguard.records import make_records

torch = pytest.importorskip("torch")


def _records() -> pa.Table:
    human = make_records(
        [f"person wrote {i}" for i in range(50)], origin="human", source="p", label=["a"] * 50
    )
    synthetic = make_records(
        [f"model wrote {i}" for i in range(150)],
        origin="synthetic",
        source="m",
        generator="g",
        generation=1,
        round=1,
        status="accepted",
    )
    return pa.concat_tables([human, synthetic])


def _manifest():
    # batches of 13: odd sizes, so the ranks' shares differ by one
    return plan(_records(), Anchored(real_fraction=0.3), round=1, batch_size=13, seed=7)


@given(st.integers(0, 64), st.lists(st.integers(0, 40), min_size=1, max_size=8))
def test_rank_quota_is_the_largest_remainder_share(humans, sizes):
    sizes = np.array(sizes)
    humans = min(humans, int(sizes.sum()))
    q = rank_quota(humans, sizes)
    assert q.sum() == humans
    assert (q <= sizes).all()
    exact = humans * sizes / max(sizes.sum(), 1)
    assert (np.abs(q - exact) < 1).all()  # never off by a whole record


def _rank_main(rank: int, world: int, init: str, out: str) -> None:
    import torch.distributed as dist

    from tailguard.mix import distributed_batch_sampler

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    records = _records()
    manifest = _manifest()
    runs = {}
    for name, kw, epoch in (
        ("e0", {"seed": 3}, 0),
        ("e0_again", {"seed": 3}, 0),
        ("e1", {"seed": 3}, 1),
        ("resumed", {"seed": 3, "start_step": 6}, 0),
    ):
        sampler = distributed_batch_sampler(manifest, records["id"], **kw)  # rank from dist
        sampler.set_epoch(epoch)
        mine = list(sampler)
        gathered: list = [None] * world
        dist.all_gather_object(gathered, mine)
        runs[name] = {"len": len(sampler), "batches": gathered}
    if rank == 0:
        Path(out).write_text(json.dumps(runs))
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_share_every_global_batch_exactly(tmp_path):
    import torch.multiprocessing as mp

    out = tmp_path / "batches.json"
    init = f"file://{tmp_path / 'rendezvous'}"
    mp.spawn(_rank_main, args=(2, init, str(out)), nprocs=2, join=True)
    runs = json.loads(out.read_text())
    records = _records()
    manifest = _manifest()
    index = manifest_indices(manifest, records["id"])
    origin = np.asarray(records["origin"].to_pylist())
    bounds = np.flatnonzero(np.diff(manifest.slots["batch"].to_numpy())) + 1
    planned = np.split(index, bounds)
    e0 = runs["e0"]["batches"]
    assert runs["e0"]["len"] == len(planned) > 10
    for step, want in enumerate(planned):
        r0, r1 = e0[0][step], e0[1][step]
        assert not set(r0) & set(r1)  # disjoint
        assert sorted(r0 + r1) == sorted(want.tolist())  # together exactly the global batch
        assert abs(len(r0) - len(r1)) <= 1
        humans = int((origin[want] == "human").sum())
        quota = rank_quota(humans, np.array([len(r0), len(r1)]))
        assert [(origin[r] == "human").sum() for r in (r0, r1)] == quota.tolist()
    assert runs["e0_again"]["batches"] == e0  # deterministic for a seed
    assert runs["e1"]["batches"] != e0  # a new epoch deals again
    assert [sorted(a + b) for a, b in zip(*runs["e1"]["batches"], strict=True)] == [
        sorted(a + b) for a, b in zip(*e0, strict=True)
    ]
    assert runs["resumed"]["len"] == len(planned) - 6
    assert runs["resumed"]["batches"] == [b[6:] for b in e0]  # mid-epoch resume


def test_trainer_trains_in_the_planned_batches_despite_its_own_shuffle(tmp_path):
    pytest.importorskip("transformers")
    from transformers import TrainingArguments

    from tailguard.mix import manifest_dataset, manifest_trainer

    records = _records()
    manifest = _manifest()
    seen: list[list[str]] = []
    lookup = {i: k for k, i in enumerate(records["id"].to_pylist())}

    class Probe(torch.nn.Module):
        """A model that records which examples each training step saw."""

        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, row: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
            seen.append(row.tolist())
            return {"loss": ((self.w - row.float().mean()) ** 2).sum()}

    ds = manifest_dataset(manifest, records)
    ds = ds.add_column("row", [lookup[i] for i in ds["id"]])

    def collate(rows: list[dict]) -> dict:
        return {"row": torch.tensor([r["row"] for r in rows])}

    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,  # ignored: the manifest's batches are the batches
        num_train_epochs=1,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_strategy="no",
        seed=123,  # the Trainer would shuffle with this seed; the manifest decides
        remove_unused_columns=True,
    )
    trainer = manifest_trainer()(
        model=Probe(), args=args, train_dataset=ds, data_collator=collate, manifest=manifest
    )
    trainer.train()
    index = manifest_indices(manifest, records["id"])
    bounds = np.flatnonzero(np.diff(manifest.slots["batch"].to_numpy())) + 1
    planned = [sorted(b.tolist()) for b in np.split(index, bounds)]
    assert [sorted(s) for s in seen] == planned


def test_training_pool_and_manifest_records_carry_the_text(frozen):
    pool = frozen.training_pool(0)
    by_id = dict(
        zip(
            *frozen.records(origin="human").select(["id", "content"]).to_pydict().values(),
            strict=True,
        )
    )
    assert pool.num_rows > 0
    # the planner's view leaves the text out and is otherwise the same table
    assert frozen.training_pool(0, text=False).equals(pool.drop_columns(["content"]))
    assert all(
        by_id[i] == c
        for i, c in zip(pool["id"].to_pylist(), pool["content"].to_pylist(), strict=True)
    )
    manifest = plan(pool, Anchored(real_fraction=1.0), round=0, batch_size=8, seed=0)
    frozen.write_manifest(manifest)
    rows = frozen.manifest_records(0)
    assert rows["content"].to_pylist() == [by_id[i] for i in manifest.slots["id"].to_pylist()]
