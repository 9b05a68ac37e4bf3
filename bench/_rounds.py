"""Shared by bench/loop.py and bench/round.py: a default project's loop, timed stage by stage.

Not a benchmark itself (``make bench`` skips files starting with ``_``).
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from _timing import load_average as load_average  # shared with the peer benchmarks

from tailguard.gate import Gate
from tailguard.ledger import Ledger
from tailguard.loop import Loop
from tailguard.mix import Dial, policy_from_name
from tailguard.monitor import Monitor

#: What ``tailguard init`` writes into a new project's ``[gate]`` (the default gate).
DEFAULT_GATE = {
    "verifiers": [
        {"kind": "quality", "min_words": 3},
        {"kind": "exact_duplicate"},
        {"kind": "near_duplicate", "threshold": 0.8},
    ]
}


class StageClock:
    """Wall time per (round, stage), split into the user's functions and tailguard's own,
    and the process's CPU time per stage (all threads; it barely moves when other
    processes load the machine, so it is the figure to compare between runs).

    ``user(fn)`` wraps a user callable so its time is booked to the stage it runs in;
    ``on_stage`` (the loop's callback) closes a stage.
    """

    def __init__(self) -> None:
        self.total: dict[tuple[int, str], float] = defaultdict(float)
        self.user_time: dict[tuple[int, str], float] = defaultdict(float)
        self.cpu: dict[tuple[int, str], float] = defaultdict(float)
        #: The process's peak resident set (MB) when each stage ended: where it grows is
        #: the stage that set the peak.
        self.peak: dict[tuple[int, str], float] = {}
        #: The highest resident set (MB) sampled *within* each stage, and what Arrow's
        #: memory pool held at that moment: which stage holds what, not only the maximum.
        self.within: dict[tuple[int, str], tuple[float, float]] = {}
        self.sampler = RssSampler()
        self._user_now = 0.0
        self._t0, self._c0 = time.perf_counter(), time.process_time()

    def start(self) -> None:
        self._t0, self._c0, self._user_now = time.perf_counter(), time.process_time(), 0.0
        self.sampler.take()

    def on_stage(self, r: int, stage: str) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        self.total[r, stage] += now - self._t0
        self.cpu[r, stage] += cpu - self._c0
        self.peak[r, stage] = peak_rss_mb()
        self.within[r, stage] = self.sampler.take()
        self.user_time[r, stage] += self._user_now
        self._t0, self._c0, self._user_now = now, cpu, 0.0

    def user(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._user_now += time.perf_counter() - t

        return timed

    def stages(self, rounds: list[int]) -> list[str]:
        return [s for s in dict.fromkeys(st for (r, st) in self.total if r in rounds)]

    def mean(self, table: dict[tuple[int, str], float], stage: str, rounds: list[int]) -> float:
        return sum(table.get((r, stage), 0.0) for r in rounds) / len(rounds)


def default_loop(
    ledger: Ledger,
    clock: StageClock,
    *,
    train: Callable[..., Any],
    generate: Callable[..., Any],
    sample: Callable[..., Any] | None,
    n_generate: int,
    batch_size: int = 1024,
    real_fraction: float = 0.2,
) -> Loop:
    """The loop ``tailguard init`` + ``tailguard run`` build: default gate, anchored policy,
    the dial watching tail recall and distinct-2, the default monitor preset."""
    gate = Gate.from_config(
        DEFAULT_GATE, reference=ledger.reservoir_records("all"), fingerprints=ledger, progress=False
    )
    return Loop(
        ledger,
        train=clock.user(train),
        generate=clock.user(generate),
        sample=None if sample is None else clock.user(sample),
        policy=policy_from_name("anchored", real_fraction=real_fraction),
        gate=gate,
        dial=Dial(watch=["tail_recall", "distinct_2"]),
        monitor=Monitor(preset="default"),
        n_generate=n_generate,
        batch_size=batch_size,
    )


def peak_rss_mb() -> float:
    """This process's peak resident set so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RssSampler:
    """A thread reading this process's resident set every ``every`` seconds and keeping
    the highest since the last :meth:`take` (with Arrow's pool at that moment), so a
    stage's own peak shows even when an earlier stage set the process's maximum."""

    def __init__(self, every: float = 0.05) -> None:
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._lock = threading.Lock()
        self._high = (0.0, 0.0)
        self._every = every
        threading.Thread(target=self._run, daemon=True).start()

    def _sample(self) -> None:
        import pyarrow as pa

        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * self._page / 2**20
        with self._lock:
            if rss > self._high[0]:
                self._high = (rss, pa.total_allocated_bytes() / 2**20)

    def _run(self) -> None:
        while True:
            self._sample()
            time.sleep(self._every)

    def take(self) -> tuple[float, float]:
        """The highest resident set (MB) and Arrow's pool then (MB) since the last call."""
        self._sample()
        with self._lock:
            out, self._high = self._high, (0.0, 0.0)
        return out
