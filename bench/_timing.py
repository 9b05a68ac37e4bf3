"""Shared by the peer benchmarks: one way to warm up, alternate and summarise timed runs.

Every side is warmed up once before any timed run, then the sides run in turn
(A, B, A, B, ...) so a change in the machine's load falls on all of them alike;
each side reports its best and its median. Not a benchmark itself (``make bench``
skips files starting with ``_``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: A timed run: returns its own wall seconds and what it computed (so a run that
#: times itself, e.g. in a subprocess, can leave its set-up out of the figure).
Run = Callable[[], tuple[float, Any]]


@dataclass
class Runs:
    """One side's timed runs, in the order they ran."""

    name: str
    seconds: list[float] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def best_value(self) -> Any:
        """What the fastest run computed."""
        return self.values[self.seconds.index(self.best)]

    def span(self) -> str:
        """``best / median`` in seconds, as the benchmarks print it."""
        return f"{self.best:.3f} / {self.median:.3f}"


def timed(fn: Callable[[], Any]) -> Run:
    """Wrap a plain callable so its wall time is measured around the whole call."""

    def run() -> tuple[float, Any]:
        start = time.perf_counter()
        value = fn()
        return time.perf_counter() - start, value

    return run


def schedule(names: list[str], repeat: int) -> list[str]:
    """The order the runs are taken in: every side once per pass, ``repeat`` passes."""
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat}")
    return [name for _ in range(repeat) for name in names]


def alternate(
    sides: Mapping[str, Run],
    repeat: int,
    warm_up: Mapping[str, Callable[[], Any]] | None = None,
    on_run: Callable[[str], None] | None = None,
) -> dict[str, Runs]:
    """Warm every side up (each warm-up runs before any timed run), then take
    ``repeat`` timed runs of each side, alternating; ``on_run`` is told after each."""
    for name in sides:
        if warm_up and name in warm_up:
            warm_up[name]()
    out = {name: Runs(name) for name in sides}
    for name in schedule(list(sides), repeat):
        seconds, value = sides[name]()
        out[name].seconds.append(seconds)
        out[name].values.append(value)
        if on_run:
            on_run(name)
    return out


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages, printed next to every figure."""
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])
