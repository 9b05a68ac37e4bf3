"""Arrow output: the manifest's slot table, built from source rows without per-row Python."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pyarrow as pa

from tailguard.mix.streams import _both
from tailguard.records import MANIFEST_SLOTS, Origin


def _slots_table(
    rows: pa.Table,
    src: np.ndarray,
    batch_size: int,
    id_matrix: Any,
    id_lengths: Any,
    human_slot: np.ndarray,
    codes: np.ndarray | None,
    label_values: pa.Array | None,
    *,
    parallel: bool = False,
) -> pa.Table:
    """The manifest's slot table: ``rows`` taken at ``src``, in training order."""
    n = len(src)

    def other_columns() -> dict[str, pa.Array]:
        generation = np.asarray(rows["generation"].to_numpy(), dtype=np.int32)
        n_batches = -(-n // batch_size)
        return {
            "batch": pa.array(np.repeat(np.arange(n_batches, dtype=np.int32), batch_size)[:n]),
            "origin": _origin_column(human_slot),
            "generation": pa.array(np.take(generation, src)),
            "label": pa.nulls(n, pa.string())
            if codes is None
            else label_values.take(pa.array(np.take(codes, src))),
        }

    ids, columns = _both(
        lambda: _take_ids(rows["id"], src, id_matrix, id_lengths), other_columns, parallel=parallel
    )
    columns["id"] = ids
    return pa.table({name: columns[name] for name in MANIFEST_SLOTS.names}, schema=MANIFEST_SLOTS)


def _origin_column(human_slot: np.ndarray) -> pa.Array:
    """``"human"`` / ``"synthetic"`` per slot, as a string column.

    Eight slots at a time: their flags index 256 precomputed concatenations, whose
    bytes are exactly the column's data; the offsets are a running sum of lengths.
    """
    n = len(human_slot)
    if n == 0:
        return pa.array([], pa.string())
    lengths = human_slot.astype(np.int32)
    lengths *= len(Origin.HUMAN.value) - len(Origin.SYNTHETIC.value)
    lengths += len(Origin.SYNTHETIC.value)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    data = _origin_patterns().take(pa.array(np.packbits(human_slot)))
    start = int(np.frombuffer(data.buffers()[1], np.int32)[data.offset])
    buffer = data.buffers()[2].slice(start, int(offsets[-1]))
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), buffer])


@functools.cache
def _origin_patterns() -> pa.Array:
    """The 256 strings of eight origins, bit 7 (``np.packbits`` order) first; 1 is human."""
    names = (Origin.SYNTHETIC.value, Origin.HUMAN.value)
    return pa.array(["".join(names[(b >> (7 - i)) & 1] for i in range(8)) for b in range(256)])


def _take_ids(column: pa.ChunkedArray, src: np.ndarray, matrix: Any, lengths: Any) -> pa.Array:
    """Take ids; ids of one width (content ids) are gathered as byte rows in numpy."""
    n_lengths = np.asarray(lengths)
    width = int(n_lengths.flat[0]) if matrix is not None and n_lengths.size else 0
    same_width = width > 0 and (n_lengths.ndim == 0 or bool((n_lengths == width).all()))
    if not same_width or len(src) * width >= 2**31:
        return column.combine_chunks().cast(pa.string()).take(pa.array(src, pa.int64()))
    rows = np.ascontiguousarray(matrix[:, :width]) if matrix.shape[1] != width else matrix
    lanes = width // 8 if width % 8 == 0 else 0
    if lanes:  # np.take on whole 8-byte lanes is the fastest row gather numpy has
        data = np.take(rows.view(np.uint64).reshape(len(rows), lanes), src, axis=0)
    else:
        data = np.take(rows.view(np.dtype((np.void, width))).ravel(), src)
    offsets = np.arange(0, (len(src) + 1) * width, width, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), len(src), [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )
