"""Many lab jobs at once: a process pool (fork) and a rich progress bar that ticks per round."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from tailguard.lab.config import LabConfig
from tailguard.lab.job import JobResult, run_job


def run_jobs(
    config: LabConfig, *, workers: int | None = None, progress: bool = True
) -> list[JobResult]:
    """Every strategy x seed, across ``workers`` processes, with a progress bar."""
    jobs = [(s, seed) for s in config.strategies for seed in range(config.seeds)]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    total = len(jobs) * (config.generations + 1)
    if workers == 1:
        with _bar(progress, total, config) as advance:
            return [run_job(config, s, seed, _Ticker(advance)) for s, seed in jobs]
    import multiprocessing as mp

    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    with ctx.Manager() as manager, _bar(progress, total, config) as advance:
        queue = manager.Queue()
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = [pool.submit(run_job, config, s, seed, queue) for s, seed in jobs]
            pending = set(futures)
            while pending:
                _drain(queue, advance, timeout=0.1)
                pending = {f for f in pending if not f.done()}
            _drain(queue, advance, timeout=0.0)
            return [f.result() for f in futures]


class _Ticker:
    def __init__(self, advance: Callable[[int], None]) -> None:
        self.advance = advance

    def put(self, n: int) -> None:
        self.advance(n)


def _drain(queue: Any, advance: Callable[[int], None], timeout: float) -> None:
    import queue as q

    try:
        advance(queue.get(timeout=timeout) if timeout else queue.get_nowait())
        while True:
            advance(queue.get_nowait())
    except q.Empty:
        return


class _bar:  # noqa: N801 - used as a context manager, reads like a function
    def __init__(self, enabled: bool, total: int, config: LabConfig) -> None:
        self.enabled, self.total, self.config = enabled, total, config

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]lab[/] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("rounds"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        self.progress.__enter__()
        c = self.config
        task = self.progress.add_task(
            f"{c.model} on {c.dataset.name}: {len(c.strategies)} strategies x {c.seeds} seeds",
            total=self.total,
        )
        return lambda n: self.progress.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.progress.__exit__(*exc)
