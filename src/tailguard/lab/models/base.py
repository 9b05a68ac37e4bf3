"""The lab's model protocol and the numeric record codec.

Every lab model follows one protocol, so the loop can train and sample any of
them without special cases: ``fit(records) -> model`` and
``sample(n, seed) -> records``. Numeric models store one example per record
whose ``content`` is a JSON array of numbers (``"[0.12, -1.3]"``; a scalar
model writes ``"[0.12]"``); the codec below turns a column of such texts into a
float matrix and back without a per-row Python loop.
"""

from __future__ import annotations

from typing import Any, Protocol, Self, runtime_checkable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tailguard.errors import InputError
from tailguard.metrics.vectors import decode_vectors  # noqa: F401 - the models read it here
from tailguard.records import Origin, make_records


@runtime_checkable
class GenerativeModel(Protocol):
    """What the loop needs from a model: refit on records, then sample records."""

    name: str

    def fit(self, records: pa.Table) -> Self: ...

    def sample(self, n: int, seed: int, *, generation: int = 1, round: int = 1) -> pa.Table: ...

    def params(self) -> dict[str, Any]: ...


class ModelBase:
    """Shared plumbing: explicit keyword parameters, ``clone`` and ``params``."""

    name = "model"
    _param_names: tuple[str, ...] = ()

    def params(self) -> dict[str, Any]:
        """The constructor's keyword arguments, JSON-able (stored in the ledger)."""
        return {k: _jsonable(getattr(self, k)) for k in self._param_names}

    def clone(self) -> Self:
        """An unfitted copy with the same parameters (one new model per round)."""
        return type(self)(**{k: getattr(self, k) for k in self._param_names})

    def _require_fitted(self, attr: str) -> None:
        if getattr(self, attr, None) is None:
            raise InputError(f"{self.name} model is not fitted: call fit(records) first")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def encode_vectors(x: np.ndarray) -> pa.Array:
    """Rows of a float matrix as JSON array texts (shortest round-trip decimals)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if not np.isfinite(x).all():
        raise InputError("cannot encode non-finite numbers as JSON", field="content")
    n, d = x.shape
    texts = pc.cast(pa.array(x.ravel()), pa.string())
    lists = pa.FixedSizeListArray.from_arrays(texts, d).cast(pa.list_(pa.string()))
    joined = pc.binary_join(lists, ", ")
    return pc.binary_join_element_wise("[", joined, "]", "")


def vector_records(
    x: np.ndarray,
    *,
    generator: str,
    generation: int,
    round: int,  # noqa: A002 - the schema's own name
    label: Any = None,
) -> pa.Table:
    """Synthetic records holding the rows of ``x``."""
    return make_records(
        encode_vectors(x),
        origin=Origin.SYNTHETIC,
        source="lab",
        generator=generator,
        generation=generation,
        round=round,
        label=label,
    )


def human_vector_records(x: np.ndarray, *, source: str, label: Any = None) -> pa.Table:
    """Human records holding the rows of ``x`` (the lab's numeric reservoirs)."""
    return make_records(encode_vectors(x), origin=Origin.HUMAN, source=source, label=label)
