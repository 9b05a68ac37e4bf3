"""What a ledger file is, judged before and while DuckDB opens it: a foreign file, a
file torn short, or a checkpoint killed part-way (which DuckDB opens, replaying its WAL).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import duckdb

from tailguard.errors import TailguardError
from tailguard.ledger.schema import _first_line

#: DuckDB's file layout: a 4 KiB file header and two 4 KiB database headers come first.
#: Past them the size says nothing: a checkpoint in progress (or killed) leaves a file
#: that is not a whole number of blocks and that DuckDB opens, replaying its WAL.
_DUCKDB_HEADER = 3 * 4096


#: Never let a ledger path make DuckDB fetch or load an extension (a SQLite file would).
_DUCKDB_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


def check_ledger_file(path: Path) -> None:
    """Refuse, with what it is, a file that is not a DuckDB database.

    Checked before DuckDB opens it: a foreign file would otherwise open and fail in
    the middle of a query, and a SQLite file would make DuckDB reach for an extension.
    Damage past the headers is DuckDB's to judge (:func:`_unopenable`): a file killed
    mid-checkpoint is not a whole number of blocks yet opens with every record.
    """
    if not path.exists():
        return
    if path.is_dir():
        raise TailguardError(f"{path} is a directory, not a ledger file")
    size = path.stat().st_size
    if size == 0:
        raise TailguardError(f"{path} is an empty file, not a ledger: remove it to start one")
    with path.open("rb") as fh:
        head = fh.read(16)
    if head.startswith(b"SQLite format 3"):
        raise TailguardError(f"{path} is a SQLite database, not a tailguard ledger (DuckDB)")
    if head[8:12] != b"DUCK":
        raise TailguardError(
            f"{path} is not a DuckDB database (it starts with {head[:12]!r}): "
            "not a tailguard ledger"
        )
    if size < _DUCKDB_HEADER:
        raise TailguardError(
            f"{path} is a truncated DuckDB database ({size:,} bytes, shorter than its "
            "headers): restore the ledger from a backup"
        )


def _checkpointed_bytes(path: str) -> int:
    """Bytes of the header and the blocks the newest database header counts.

    A database header is ``checksum, iteration, meta block, free list, block count,
    block size`` (8 bytes each); the two headers take turns, the higher iteration is
    the live one. A file at least this long holds every block DuckDB may read.
    """
    with open(path, "rb") as fh:
        fh.seek(4096)
        raw = fh.read(2 * 4096)
    best = (-1, 0)
    for off in (0, 4096):
        _, iteration, _, _, blocks, block_size = struct.unpack_from("<Qqqqqq", raw, off)
        if iteration > best[0] and 0 <= blocks < 1 << 40 and 0 < block_size <= 1 << 30:
            best = (iteration, blocks * block_size)
    return _DUCKDB_HEADER + best[1]


def _is_short(path: str) -> bool:
    """Shorter than the blocks its header counts (judged before DuckDB replays a WAL)."""
    try:
        return path != ":memory:" and os.path.getsize(path) < _checkpointed_bytes(path)
    except (OSError, struct.error):
        return False  # not there yet (created on open), or too short: checked on open


def _check_torn(con: duckdb.DuckDBPyConnection, path: str, tables: set[str], short: bool) -> None:
    """Read every stored value of a file shorter than its header's blocks.

    Such a file is either a checkpoint killed before it wrote its last (or a free)
    block, which DuckDB reads whole with its WAL, or a file cut short, whose lost
    blocks would fail a query later. Only the second is refused; a whole file skips
    the read, so opening stays quick.
    """
    if not short:
        return
    try:
        for t in sorted(tables):
            con.execute(f'SELECT max(hash(COLUMNS(*))) FROM "{t}"').fetchall()
    except duckdb.Error as exc:
        con.close()
        raise TailguardError(
            f"{path} is a truncated DuckDB database ({os.path.getsize(path):,} bytes, "
            f"blocks lost: {_first_line(exc)}): restore the ledger from a backup"
        ) from None


def _is_lock_conflict(exc: duckdb.Error) -> bool:
    """DuckDB's own words for a file another process holds (not any error naming a block)."""
    text = str(exc).lower()
    return "could not set lock" in text or "conflicting lock" in text


def _unopenable(path: str, exc: duckdb.Error) -> TailguardError:
    """What a file DuckDB itself cannot open is, in words a user can act on."""
    first = _first_line(exc)
    if "not a valid duckdb database" in first.lower():
        return TailguardError(f"{path} is not a DuckDB database: not a tailguard ledger")
    if "could not read enough bytes" in first.lower():
        return TailguardError(
            f"{path} is a truncated DuckDB database (blocks lost: {first}): "
            "restore the ledger from a backup"
        )
    return TailguardError(
        f"{path} is a damaged DuckDB database that DuckDB cannot open ({first}): "
        "restore the ledger from a backup"
    )
