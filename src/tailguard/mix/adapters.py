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
