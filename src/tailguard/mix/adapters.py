"""Feeding a manifest to training code: PyTorch samplers, a datasets view, file export.

A manifest names ids; training code holds a dataset indexed by position. The
adapters translate ids to positions once (vectorised) and then replay the
manifest's order exactly. torch and datasets are imported lazily (optional
extras ``tailguard[torch]`` and ``tailguard[hf]``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tailguard.errors import InputError
from tailguard.records import Manifest


def manifest_indices(
    manifest: Manifest, ids: Sequence[str] | pa.Array | pa.ChunkedArray | Mapping[str, int]
) -> np.ndarray:
    """The dataset position of every slot, in training order.

    ``ids`` is either the dataset's id column (position = row number) or an
    explicit ``{id: index}`` map. Raises :class:`InputError` naming a planned id
    the dataset lacks.
    """
    if isinstance(ids, Mapping):
        keys = pa.array(list(ids.keys()), pa.string())
        values = np.fromiter(ids.values(), dtype=np.int64, count=len(ids))
    else:
        keys = ids if isinstance(ids, pa.Array | pa.ChunkedArray) else pa.array(ids, pa.string())
        if isinstance(keys, pa.ChunkedArray):
            keys = keys.combine_chunks()
        values = np.arange(len(keys), dtype=np.int64)
    where = pc.index_in(manifest.slots["id"], value_set=keys.cast(pa.string()))
    if where.null_count:
        missing = manifest.slots["id"].filter(pc.is_null(where))[0].as_py()
        raise InputError(
            f"{where.null_count} planned slot(s) name ids the dataset lacks (e.g. {missing})",
            field="id",
        )
    return values[where.to_numpy(zero_copy_only=False)]


def _batch_bounds(manifest: Manifest) -> np.ndarray:
    batch = manifest.slots["batch"].to_numpy()
    cuts = np.flatnonzero(np.diff(batch)) + 1
    return np.concatenate([[0], cuts, [len(batch)]]).astype(np.int64)


def manifest_sampler(manifest: Manifest, ids: Any) -> Any:
    """A ``torch.utils.data.Sampler`` yielding dataset indices in the manifest's order."""
    from torch.utils.data import Sampler

    indices = manifest_indices(manifest, ids)

    class ManifestSampler(Sampler[int]):
        def __len__(self) -> int:
            return len(indices)

        def __iter__(self) -> Iterator[int]:
            return iter(indices.tolist())

    return ManifestSampler()


def manifest_batch_sampler(manifest: Manifest, ids: Any) -> Any:
    """A ``torch.utils.data.Sampler[list[int]]`` yielding one index list per planned batch.

    Pass it as ``DataLoader(dataset, batch_sampler=...)``: every batch then holds
    exactly the planned human share.
    """
    from torch.utils.data import Sampler

    indices = manifest_indices(manifest, ids)
    bounds = _batch_bounds(manifest)

    class ManifestBatchSampler(Sampler[list[int]]):
        def __len__(self) -> int:
            return len(bounds) - 1

        def __iter__(self) -> Iterator[list[int]]:
            for start, end in zip(bounds[:-1], bounds[1:], strict=True):
                yield indices[start:end].tolist()

    return ManifestBatchSampler()


def rank_quota(humans: int, sizes: np.ndarray) -> np.ndarray:
    """Humans per rank for one global batch: ``humans * size / total`` per rank,
    rounded by largest remainder (ties to the lower rank), so the counts sum to
    ``humans`` and no rank's share is off by a whole record."""
    sizes = np.asarray(sizes, np.int64)
    total = int(sizes.sum())
    exact = humans * sizes / max(total, 1)
    base = np.floor(exact).astype(np.int64)
    left = humans - int(base.sum())
    order = np.lexsort((np.arange(len(sizes)), -(exact - base)))
    base[order[:left]] += 1
    return base


def rank_sizes(batch: int, world_size: int) -> np.ndarray:
    """Records per rank in a global batch of ``batch``: as equal as possible."""
    sizes = np.full(world_size, batch // world_size, np.int64)
    sizes[: batch % world_size] += 1
    return sizes


def rank_batches(
    manifest: Manifest,
    indices: np.ndarray,
    *,
    rank: int,
    world_size: int,
    seed: int = 0,
    epoch: int = 0,
    shuffle: bool = True,
    start_step: int = 0,
) -> Iterator[list[int]]:
    """Rank ``rank``'s micro-batch of every planned batch from ``start_step`` on.

    Each planned (global) batch is dealt to ``world_size`` ranks: disjoint shares
    that together are exactly the batch, each with its :func:`rank_quota` of
    humans. With ``shuffle`` the humans and the synthetic records of a batch are
    permuted before dealing, by a generator seeded with ``(seed, epoch, batch)``,
    so every rank computes the same deal without talking to the others.
    """
    if not 0 <= rank < world_size:
        raise InputError(f"rank {rank} is not in [0, {world_size})", field="rank")
    bounds = _batch_bounds(manifest)
    human = pc.equal(manifest.slots["origin"], "human").to_numpy(zero_copy_only=False)
    for b in range(start_step, len(bounds) - 1):
        lo, hi = int(bounds[b]), int(bounds[b + 1])
        slots = np.arange(lo, hi)
        h, s = slots[human[lo:hi]], slots[~human[lo:hi]]
        if shuffle:
            rng = np.random.default_rng([seed, epoch, b])
            h, s = rng.permutation(h), rng.permutation(s)
        sizes = rank_sizes(hi - lo, world_size)
        quota = rank_quota(len(h), sizes)
        h_cut = np.concatenate([[0], np.cumsum(quota)])
        s_cut = np.concatenate([[0], np.cumsum(sizes - quota)])
        mine = np.concatenate([h[h_cut[rank] : h_cut[rank + 1]], s[s_cut[rank] : s_cut[rank + 1]]])
        yield indices[np.sort(mine)].tolist()


def distributed_batch_sampler(
    manifest: Manifest,
    ids: Any,
    *,
    rank: int | None = None,
    world_size: int | None = None,
    seed: int = 0,
    shuffle: bool = True,
    start_step: int = 0,
) -> Any:
    """A rank-aware ``Sampler[list[int]]``: this rank's share of every planned batch.

    For data-parallel training (DDP, FSDP): the ranks' micro-batches of a step are
    disjoint and together exactly the planned batch, each with its human quota
    (:func:`rank_batches`). ``rank`` and ``world_size`` default to the
    ``torch.distributed`` process group (or a single process). Deterministic for
    ``seed`` and the epoch (``set_epoch``); ``start_step`` (or
    ``load_state_dict({"step": k})``) resumes mid-epoch after ``k`` steps.
    """
    import torch.distributed as dist
    from torch.utils.data import Sampler

    if world_size is None:
        world_size = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if rank is None:
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    indices = manifest_indices(manifest, ids)
    n_batches = manifest.n_batches
    if not 0 <= start_step <= n_batches:
        raise InputError(f"start_step {start_step} is not in [0, {n_batches}]", field="step")

    class DistributedManifestBatchSampler(Sampler[list[int]]):
        def __init__(self) -> None:
            self.rank, self.world_size, self.seed, self.shuffle = rank, world_size, seed, shuffle
            self.epoch, self.start_step = 0, start_step

        def set_epoch(self, epoch: int) -> None:
            """Start a new epoch: a new deal, from its first step."""
            if epoch != self.epoch:
                self.start_step = 0
            self.epoch = epoch

        def state_dict(self) -> dict[str, int]:
            return {"epoch": self.epoch, "step": self.start_step}

        def load_state_dict(self, state: Mapping[str, int]) -> None:
            self.epoch, self.start_step = int(state["epoch"]), int(state["step"])

        def __len__(self) -> int:
            return n_batches - self.start_step

        def __iter__(self) -> Iterator[list[int]]:
            return rank_batches(
                manifest,
                indices,
                rank=self.rank,
                world_size=self.world_size,
                seed=self.seed,
                epoch=self.epoch,
                shuffle=self.shuffle,
                start_step=self.start_step,
            )

    return DistributedManifestBatchSampler()


def manifest_trainer(trainer_cls: Any | None = None) -> Any:
    """A Hugging Face ``Trainer`` subclass that trains in the manifest's batches.

    ``ManifestTrainer(manifest=..., train_dataset=manifest_dataset(...), ...)``:
    the training DataLoader is built from :func:`distributed_batch_sampler` (this
    process's rank and the world size come from ``TrainingArguments``), so the
    Trainer's own shuffling and accelerate's re-sharding never see single
    records, and every step holds the planned human share on every rank.
    ``per_device_train_batch_size`` is ignored for training: the manifest's
    batches are the global batches. Resuming from a checkpoint skips the trained
    steps of the epoch. ``trainer_cls`` defaults to ``transformers.Trainer``.
    """
    import torch
    from torch.utils.data import DataLoader

    if trainer_cls is None:
        from transformers import Trainer as trainer_cls

    class _EpochLoader(DataLoader):
        def set_epoch(self, epoch: int) -> None:
            self.batch_sampler.set_epoch(epoch)

    class ManifestTrainer(trainer_cls):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, manifest: Manifest, seed: int = 0, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.manifest, self.manifest_seed = manifest, seed

        def get_train_dataloader(self) -> DataLoader:
            import datasets

            dataset = self.train_dataset
            if dataset is None:
                raise ValueError("ManifestTrainer needs a train_dataset (manifest_dataset(...))")
            if "id" not in dataset.column_names:
                raise InputError("the train_dataset needs the manifest's 'id' column", field="id")
            ids = dataset.data.column("id") if isinstance(dataset, datasets.Dataset) else None
            sampler = distributed_batch_sampler(
                self.manifest,
                ids,
                rank=self.args.process_index,
                world_size=self.args.world_size,
                seed=self.manifest_seed,
            )
            collator = self.data_collator
            if isinstance(dataset, datasets.Dataset):
                dataset = self._remove_unused_columns(dataset, description="training")
            return _EpochLoader(
                dataset,
                batch_sampler=sampler,
                collate_fn=collator,
                num_workers=self.args.dataloader_num_workers,
                pin_memory=self.args.dataloader_pin_memory and torch.cuda.is_available(),
            )

    return ManifestTrainer


def join_records(manifest: Manifest, records: pa.Table) -> pa.Table:
    """The manifest's slots in training order with each id's record columns attached.

    When ``records`` holds one id under several provenances (the same text from
    a person and a model), the row matching the slot's origin and generation wins.
    """
    if "id" not in records.column_names:
        raise InputError("records have no 'id' column", field="id")
    slots = manifest.slots.append_column("slot", pa.array(np.arange(manifest.slots.num_rows)))
    keys = [k for k in ("id", "origin", "generation") if k in records.column_names]
    extra = [c for c in records.column_names if c not in slots.column_names or c in keys]
    right = records.select(extra)
    if "generation" in keys:
        right = right.set_column(
            right.column_names.index("generation"),
            "generation",
            pc.cast(right["generation"], pa.int32()),
        )
    right = right.group_by(keys, use_threads=False).aggregate(
        [(c, "first") for c in extra if c not in keys]
    )
    right = right.rename_columns([c.removesuffix("_first") for c in right.column_names])
    joined = slots.join(right, keys=keys, join_type="left outer", use_threads=False)
    joined = joined.sort_by("slot").drop_columns(["slot"])
    if "content" in joined.column_names and joined["content"].null_count:
        missing = joined.filter(pc.is_null(joined["content"]))["id"][0].as_py()
        raise InputError(f"planned id {missing} has no record", field="id")
    return joined


def manifest_dataset(manifest: Manifest, records: pa.Table) -> Any:
    """A Hugging Face ``datasets.Dataset`` of the manifest's slots joined with records,
    in training order (iterate it without shuffling)."""
    import datasets

    return datasets.Dataset(join_records(manifest, records))


def export_manifest(manifest: Manifest, records: pa.Table, path: str | Path) -> Path:
    """Write the joined training set to ``.parquet`` or ``.jsonl``, in training order."""
    path = Path(path)
    table = join_records(manifest, records)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    elif suffix in (".jsonl", ".json"):
        import json

        with path.open("w", encoding="utf-8") as fh:
            for batch in table.to_batches(max_chunksize=65_536):  # streamed in chunks
                fh.writelines(json.dumps(row, default=str) + "\n" for row in batch.to_pylist())
    else:
        raise InputError(
            f"unknown export format {path.suffix!r}: use .parquet or .jsonl", file=str(path)
        )
    return path
