"""This process's scratch DuckDB: SQL over Arrow tables that belong to no ledger.

Opening a DuckDB connection costs tens of milliseconds, a cursor a few microseconds;
content ids and reservoir digests are computed several times per round, so they share
one in-memory database (one per process: a forked worker opens its own). Nothing here
imports the rest of tailguard: :mod:`tailguard.records`, which the ledger is built on,
uses it for large batches of content ids.
"""

from __future__ import annotations

import os
import threading

import duckdb
import pyarrow as pa

_SCRATCH: tuple[int, duckdb.DuckDBPyConnection] | None = None
_SCRATCH_LOCK = threading.Lock()
_INHERITED: list[tuple[int, duckdb.DuckDBPyConnection]] = []


def _forget_scratch_in_child() -> None:
    """A forked child starts with no scratch database and a fresh lock: another thread
    of the parent may have held the lock at the fork, and nothing would release it."""
    global _SCRATCH, _SCRATCH_LOCK
    if _SCRATCH is not None:
        # Never closed or freed here: destroying the parent's database in the child crashes it.
        _INHERITED.append(_SCRATCH)
    _SCRATCH = None
    _SCRATCH_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_scratch_in_child)


def scratch() -> duckdb.DuckDBPyConnection:
    """A cursor on this process's one in-memory DuckDB, for SQL over Arrow tables.

    Opening a DuckDB connection costs tens of milliseconds, a cursor a few
    microseconds; ids and digests are computed several times per round, so they
    share one database (one per process: a forked worker opens its own). Use it
    as a context manager (``with scratch() as con``) so the cursor is closed.
    """
    global _SCRATCH
    with _SCRATCH_LOCK:
        if _SCRATCH is None or _SCRATCH[0] != os.getpid():
            con = duckdb.connect(
                config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
            )
            # Hand freed query memory back to the system instead of caching it.
            con.execute("SET allocator_flush_threshold = '32MB'").fetchall()
            _SCRATCH = (os.getpid(), con)
        return _SCRATCH[1].cursor()


def select(values: pa.Array | pa.ChunkedArray, expression: str, *, column: str) -> pa.ChunkedArray:
    """``expression`` (SQL over ``column``) computed for every value, in order."""
    with scratch() as con:
        con.register("scratch_values", pa.table({column: values}))
        out = con.sql(f"SELECT {expression} AS out FROM scratch_values").to_arrow_table()
        con.unregister("scratch_values")
    return out.column("out")
