"""Input checks shared by the metrics: turn bad input into a clear :class:`InputError`.

Every metric validates its arguments here so that an empty sample, a NaN or a
dimension mismatch is reported by name instead of surfacing later as a silent NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tailguard.errors import InputError


def points(x: Any, name: str, *, min_rows: int = 1) -> np.ndarray:
    """A finite 2-D float array (float32 kept as float32, anything else as float64)."""
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} is not a numeric array: {exc}") from exc
    if arr.dtype.kind not in "fiub":
        raise InputError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise InputError(f"{name} must be a 2-D array (points x dimensions), got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise InputError(f"{name} has zero dimensions")
    if arr.shape[0] < min_rows:
        raise InputError(
            f"{name} has {arr.shape[0]} point(s); at least {min_rows} needed"
            if arr.shape[0]
            else f"{name} is empty"
        )
    if arr.dtype != np.float32:
        arr = arr.astype(np.float64, copy=False)
    _finite(arr, name)
    return arr


def values(x: Any, name: str, *, min_size: int = 1) -> np.ndarray:
    """A finite 1-D float64 array."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} is not numeric: {exc}") from exc
    if arr.ndim != 1:
        raise InputError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size < min_size:
        raise InputError(
            f"{name} has {arr.size} value(s); at least {min_size} needed"
            if arr.size
            else f"{name} is empty"
        )
    _finite(arr, name)
    return arr


def _finite(arr: np.ndarray, name: str) -> None:
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        what = "NaN" if np.isnan(arr[tuple(bad)]) else "an infinite value"
        raise InputError(f"{name} contains {what} at index {tuple(int(b) for b in bad)}")


def same_dim(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise InputError(
            f"{name_a} has {a.shape[1]} dimensions but {name_b} has {b.shape[1]}: "
            "embed both with the same embedder"
        )


def texts(x: Any, name: str, *, allow_empty: bool = False) -> pa.Array:
    """A non-null Arrow string array (list, numpy array, Arrow array or chunked array)."""
    if isinstance(x, pa.ChunkedArray):
        arr = x.combine_chunks() if x.num_chunks != 1 else x.chunk(0)
    elif isinstance(x, pa.Array):
        arr = x
    elif isinstance(x, str | bytes):
        raise InputError(f"{name} must be a sequence of texts, not a single string")
    else:
        try:
            arr = pa.array(list(x) if not isinstance(x, Sequence | np.ndarray) else x)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
            raise InputError(f"{name} must be a sequence of strings: {exc}") from exc
    if len(arr) == 0 and not allow_empty:
        raise InputError(f"{name} is empty")
    if pa.types.is_null(arr.type) and len(arr):
        raise InputError(f"{name} holds only nulls")
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        if len(arr) == 0:
            return pa.array([], pa.string())
        raise InputError(f"{name} must hold strings, got {arr.type}")
    if arr.null_count:
        first = int(np.flatnonzero(pc.is_null(arr).to_numpy(zero_copy_only=False))[0])
        raise InputError(f"{name} has a missing text (null) at row {first}")
    return arr


def labels(x: Any, name: str) -> pa.Array:
    """Non-null labels as an Arrow string array (ints and strings both accepted)."""
    if isinstance(x, pa.ChunkedArray):
        arr = x.combine_chunks() if x.num_chunks != 1 else x.chunk(0)
    elif isinstance(x, pa.Array):
        arr = x
    else:
        try:
            arr = pa.array(np.asarray(x).tolist() if isinstance(x, np.ndarray) else list(x))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
            raise InputError(f"{name} must be a sequence of labels: {exc}") from exc
    if len(arr) == 0:
        raise InputError(f"{name} is empty")
    if arr.null_count:
        first = int(np.flatnonzero(pc.is_null(arr).to_numpy(zero_copy_only=False))[0])
        raise InputError(f"{name} has a missing label (null) at row {first}")
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if not pa.types.is_string(arr.type):
        try:
            arr = pc.cast(arr, pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise InputError(f"{name} cannot be read as class labels: {exc}") from exc
    return arr


def positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def fraction(value: Any, name: str, *, open_low: bool = True) -> float:
    ok = isinstance(value, int | float | np.floating) and (
        (0 < value <= 1) if open_low else (0 <= value <= 1)
    )
    if not ok:
        raise InputError(
            f"{name} must be a number in {'(0' if open_low else '[0'}, 1], got {value!r}"
        )
    return float(value)
