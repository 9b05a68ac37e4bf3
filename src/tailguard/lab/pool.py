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
    jobs = [(config, s, seed) for s in config.strategies for seed in range(config.seeds)]
    c = config
    title = f"{c.model} on {c.dataset.name}: {len(c.strategies)} strategies x {c.seeds} seeds"
    total = len(jobs) * (config.generations + 1)
    return map_jobs(run_job, jobs, total=total, title=title, workers=workers, progress=progress)


def map_jobs(
    fn: Callable[..., Any],
    jobs: list[tuple[Any, ...]],
    *,
    total: int,
    title: str,
    workers: int | None = None,
    progress: bool = True,
) -> list[Any]:
    """``fn(*args, queue)`` for every ``args`` in ``jobs``, across ``workers`` processes.

    ``fn`` puts the rounds it finished on ``queue`` (``queue.put(n)``): the progress bar
    of ``total`` rounds ticks with them. Results come back in the order of ``jobs``.
    """
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    if workers == 1:
        with _bar(progress, total, title) as advance:
            return [fn(*args, _Ticker(advance)) for args in jobs]
    import multiprocessing as mp

    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    with ctx.Manager() as manager, _bar(progress, total, title) as advance:
        queue = manager.Queue()
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = [pool.submit(fn, *args, queue) for args in jobs]
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
    def __init__(self, enabled: bool, total: int, title: str) -> None:
        self.enabled, self.total, self.title = enabled, total, title

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
        task = self.progress.add_task(self.title, total=self.total)
        return lambda n: self.progress.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.progress.__exit__(*exc)
