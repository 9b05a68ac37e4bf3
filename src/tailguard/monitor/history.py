"""What a metric history is: its columns, the names of its samples (the noise floor,
a sample's extra draws) and the label column the label metrics read.

History is an Arrow table with the ledger's metric columns; every module of the
monitor reads it through these names.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tailguard.errors import InputError
from tailguard.records import METRIC_ROWS

#: The ledger's metric columns, in order.
HISTORY_SCHEMA = METRIC_ROWS
#: Sample name of the noise floor: human samples of the rounds' size against the holdout.
NOISE_FLOOR_SAMPLE = "noise_floor"
#: The class a missing label counts as in the label metrics (see :func:`_labels_or_none`).
UNLABELLED = "(unlabelled)"
#: Separates a sample's name from the number of one of its extra draws (``model#2``: the
#: clean model's second extra sample at round 0; ``noise_floor#1``: one human draw).
DRAW_MARK = "#"


def draw_name(sample: str, i: int) -> str:
    """The stored sample name of extra draw ``i`` of ``sample`` (its band's spread)."""
    return f"{sample}{DRAW_MARK}{i}"


def is_draw(sample: str) -> bool:
    return DRAW_MARK in sample


def empty_history() -> pa.Table:
    return HISTORY_SCHEMA.empty_table()


def preset_for(history: pa.Table) -> str:
    """The preset that measured a stored history: ``rich`` when it holds metrics the
    default preset lacks, else ``default``."""
    from tailguard.metrics import PRESETS

    names = set(history["metric"].to_pylist())
    return "rich" if names - set(PRESETS["default"].metrics) else "default"


def _column(values: Any) -> pa.ChunkedArray | pa.Array:
    """An Arrow array of ``values`` (an Arrow column already is one)."""
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values
    return pa.array(list(values))


def _labels_or_none(labels: Any) -> Any:
    """Labels as the label metrics read them.

    A column that is entirely null means unlabelled data: no label metrics. A column
    with some nulls (texts ingested without a label, a model trained on them) counts
    each missing label as the class :data:`UNLABELLED`, so the label metrics say how
    much of the sample carries no label instead of refusing the round.
    """
    if labels is None:
        return None
    arr = _column(labels)
    if arr.null_count == len(arr):
        return None
    if arr.null_count == 0:
        return arr
    if not pa.types.is_string(arr.type):
        arr = pc.cast(arr, pa.string())
    return pc.fill_null(arr, UNLABELLED)


def _as_direction(value: Any) -> bool | None:
    """A stored direction: True, False, or None (two-sided; null in the history)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return None if type(value).__name__ == "NAType" else bool(value)


def _conform(table: pa.Table) -> pa.Table:
    missing = [n for n in HISTORY_SCHEMA.names if n not in table.column_names]
    if missing:
        raise InputError(f"metric history lacks columns {missing}")
    try:
        return table.select(HISTORY_SCHEMA.names).cast(HISTORY_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InputError(f"metric history does not match the metric columns: {exc}") from exc


class Rows:
    """A run's metric history as numpy columns: what the monitor reads, without pandas
    (a history is a few hundred rows; a data frame cost more to build than to read)."""

    def __init__(self, table: pa.Table | None = None, **columns: np.ndarray) -> None:
        if table is not None:
            columns = {
                "round": table["round"].to_numpy().astype(np.int64),
                "sample": np.array(table["sample"].to_pylist(), dtype=object),
                "metric": np.array(table["metric"].to_pylist(), dtype=object),
                "value": table["value"].to_numpy().astype(np.float64),
                "hib": np.array(table["higher_is_better"].to_pylist(), dtype=object),
            }
        self.round: np.ndarray = columns["round"]
        self.sample: np.ndarray = columns["sample"]
        self.metric: np.ndarray = columns["metric"]
        self.value: np.ndarray = columns["value"]
        self.hib: np.ndarray = columns["hib"]

    def __len__(self) -> int:
        return int(self.round.size)

    def where(self, keep: np.ndarray) -> Rows:
        """The rows where ``keep`` is true, in their order."""
        names = ("round", "sample", "metric", "value", "hib")
        return Rows(**{n: getattr(self, n)[keep] for n in names})

    def by_round(self) -> Rows:
        """The rows by round (stable: rows of one round keep their order)."""
        return self.where(np.argsort(self.round, kind="stable"))

    def starts(self, prefix: str) -> np.ndarray:
        """Where the sample's name starts with ``prefix``."""
        return np.array([s.startswith(prefix) for s in self.sample.tolist()], dtype=bool)

    def grouped(self) -> dict[str, list[float]]:
        """Each metric's values, in row order."""
        out: dict[str, list[float]] = {}
        for m, v in zip(self.metric.tolist(), self.value.tolist(), strict=True):
            out.setdefault(m, []).append(v)
        return out
