"""Where batch work runs: in this process, in a local process pool, or on Ray.

Every engine has one method, ``map_batches(fn, table, batch_size=...)``: cut an
Arrow table into batches, apply ``fn`` (Arrow table -> Arrow table) to each, and
return the results concatenated *in input order*. A stage written as such a
pure function runs unchanged on any engine.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Protocol

import pyarrow as pa

BatchFn = Callable[[pa.Table], pa.Table]
Progress = Callable[[int], None]


class Engine(Protocol):
    """Anything that can map a function over the batches of a table."""

    def map_batches(
        self,
        fn: BatchFn,
        table: pa.Table,
        *,
        batch_size: int = 4096,
        progress: Progress | None = None,
    ) -> pa.Table: ...


def _slices(table: pa.Table, batch_size: int) -> list[pa.Table]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [table.slice(i, batch_size) for i in range(0, table.num_rows, batch_size)] or [table]


def _concat(parts: list[pa.Table]) -> pa.Table:
    return pa.concat_tables(parts) if len(parts) > 1 else parts[0]


class InProcess:
    """Run batches one after another in this process (the default; no overhead)."""

    def map_batches(
        self,
        fn: BatchFn,
        table: pa.Table,
        *,
        batch_size: int = 4096,
        progress: Progress | None = None,
    ) -> pa.Table:
        parts = []
        for part in _slices(table, batch_size):
            parts.append(fn(part))
            if progress:
                progress(part.num_rows)
        return _concat(parts)

    def params(self) -> dict[str, Any]:
        return {"engine": "in_process"}


class ProcessPool:
    """Run batches in parallel local processes (``concurrent.futures``).

    ``fn`` and the batches must pickle. Tables smaller than two batches run
    in-process: starting workers would cost more than it saves.
    """

    def __init__(self, *, max_workers: int | None = None) -> None:
        self.max_workers = max_workers

    def map_batches(
        self,
        fn: BatchFn,
        table: pa.Table,
        *,
        batch_size: int = 4096,
        progress: Progress | None = None,
    ) -> pa.Table:
        parts = _slices(table, batch_size)
        workers = min(self.max_workers or os.cpu_count() or 1, len(parts))
        if workers < 2:
            return InProcess().map_batches(fn, table, batch_size=batch_size, progress=progress)
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(fn, part) for part in parts]
            out = []
            for part, fut in zip(parts, futures, strict=True):
                out.append(fut.result())
                if progress:
                    progress(part.num_rows)
        return _concat(out)

    def params(self) -> dict[str, Any]:
        return {"engine": "process_pool", "max_workers": self.max_workers}


class RayEngine:
    """Run batches on Ray Data (``ray.data.from_arrow(...).map_batches``).

    Starts a local Ray (``ray.init(num_cpus=..., include_dashboard=False)``) on
    first use unless one is already running, or connects to ``address``
    (``"ray://head:10001"`` for a cluster, or ``"auto"``). Order is preserved, so
    the output lines up with the input. :meth:`map_batches` ships an in-memory
    table from the driver; :meth:`map_parquet` and
    :func:`tailguard.gate.distributed.gate_parquet` stay out of core.
    """

    def __init__(self, *, num_cpus: int | None = None, address: str | None = None) -> None:
        self.num_cpus = num_cpus
        self.address = address

    def ray(self) -> Any:
        """The ``ray`` module, initialised (locally, or connected to ``address``)."""
        try:
            import ray
        except ImportError as exc:  # pragma: no cover - depends on the extra
            raise ImportError("RayEngine needs Ray: pip install 'tailguard[ray]'") from exc
        if not ray.is_initialized():
            ray.init(
                address=self.address,
                num_cpus=None if self.address else self.num_cpus,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
        from ray.data.context import ShuffleStrategy

        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False
        # Groupings (the distributed gate's duplicate search) shuffle by sorting: the
        # hash shuffle's aggregator actors hold CPUs, which starves a small cluster
        # (measured on 2 CPUs: 20-25 s per grouping against 0.1-1 s).
        ctx.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
        logging.getLogger("ray.data").setLevel(
            logging.WARNING if not os.environ.get("TG_DEBUG") else logging.INFO
        )
        return ray

    def map_batches(
        self,
        fn: BatchFn,
        table: pa.Table,
        *,
        batch_size: int = 4096,
        progress: Progress | None = None,
    ) -> pa.Table:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        ray = self.ray()
        if table.num_rows == 0:
            out = fn(table)
        else:
            ds = ray.data.from_arrow(table).map_batches(
                fn, batch_format="pyarrow", batch_size=batch_size, zero_copy_batch=True
            )
            refs = ds.to_arrow_refs()
            out = _concat([t for t in ray.get(refs) if t.num_rows] or [fn(table.slice(0, 0))])
        if progress:
            progress(table.num_rows)
        return out

    def map_parquet(
        self,
        fn: BatchFn,
        source: str | os.PathLike[str],
        destination: str | os.PathLike[str],
        *,
        columns: list[str] | None = None,
        batch_size: int = 4096,
    ) -> str:
        """Apply ``fn`` to every batch of Parquet shards and write the results as shards.

        Out of core: the driver never holds the data (``ray.data.read_parquet`` ->
        ``map_batches`` -> ``write_parquet``). Returns ``destination``.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        ray = self.ray()
        ds = ray.data.read_parquet(str(source))
        ds = ds.select_columns(columns) if columns else ds
        ds.map_batches(fn, batch_format="pyarrow", batch_size=batch_size).write_parquet(
            str(destination)
        )
        return str(destination)

    def shutdown(self) -> None:
        """Stop the Ray runtime this engine started (or joined)."""
        import ray

        if ray.is_initialized():
            ray.shutdown()

    def params(self) -> dict[str, Any]:
        return {"engine": "ray", "num_cpus": self.num_cpus, "address": self.address}


def engine_from_name(name: str, **kwargs: Any) -> Engine:
    """``"in_process"``, ``"process_pool"`` or ``"ray"`` -> an engine (for configs and CLIs)."""
    engines: dict[str, Any] = {
        "in_process": InProcess,
        "process_pool": ProcessPool,
        "ray": RayEngine,
    }
    if name not in engines:
        raise ValueError(f"unknown engine {name!r}; choose one of {sorted(engines)}")
    return engines[name](**kwargs)


__all__ = ["Engine", "InProcess", "ProcessPool", "RayEngine", "engine_from_name"]
