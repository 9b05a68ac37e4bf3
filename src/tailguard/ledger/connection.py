"""Opening a ledger file: the file checks, the lock wait, letting go of the file between
writes (and handing it over to a waiting reader), and transactions.

Every store of :mod:`tailguard.ledger` shares the one connection held here."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import duckdb

from tailguard.errors import TailguardError
from tailguard.ledger import rollback as _rollback
from tailguard.ledger.files import (
    _DUCKDB_CONFIG,
    _check_torn,
    _is_lock_conflict,
    _is_short,
    _unopenable,
    check_ledger_file,
)
from tailguard.ledger.runlock import (  # noqa: F401 - the run lock's names, re-exported
    RUN_LOCK_SUFFIX,
    RunInProgress,
    holder,
    refuse_during_run,
    run_holder,
    run_lock,
)
from tailguard.ledger.schema import (
    _DDL,
    _do,
    _first_line,
    _migrate,
    _who,
)


class ProjectChanged(TailguardError):
    """Another process wrote to the tables a run owns while the run had let go of the file."""


#: The tables a run reads its state from (records, reservoir, verdicts, quarantine,
#: rollbacks, pins, and its own manifests, metrics, decisions and stages): a write to
#: any of them by another process between two of its stages makes that state stale.
#: Caches (fingerprints, judge answers), audits of verifiers and the change history are
#: not the run's state.
#: The columns a run's state hashes: all but the texts (see ``_table_state``).
_NOT_TEXT = "lambda c: c NOT IN ('content', 'detail')"

RUN_TABLES = (
    "records",
    "reservoirs",
    "reservoir_members",
    "run_reservoirs",
    "verdicts",
    "quarantine_log",
    "rollbacks",
    "rollback_records",
    "manifests",
    "manifest_slots",
    "metrics",
    "decisions",
    "stages",
)


class LedgerBase:
    """One DuckDB connection to a ledger, reopened after :meth:`release`; the stores build on it."""

    #: How long opening a ledger waits for another process's lock before giving up (s).
    LOCK_WAIT: float = 10.0

    #: DuckDB's memory for this ledger: past it, sorts, joins and aggregates spill to a
    #: temporary folder beside the file. DuckDB's own default (80% of RAM) let its cache
    #: of freed pages lift a million-record round's peak from 4.3 to 6.5 GB; at 2 GB its
    #: cache of the ledger's pages (the reservoir's texts and fingerprints) still sat
    #: beside the gate's reference index, a million-record round resident at 3.8 GB
    #: after fingerprinting against 2.7 GB at 768 MB.
    MEMORY_LIMIT: str = "768MB"
    #: DuckDB's memory while a round's candidates stream out sorted, slice by slice
    #: (:meth:`record_slices`): the sort spills past it instead of holding the sorted
    #: texts beside the gate's work. A million 300-byte texts: 1.75 CPU s and +708 MB
    #: resident at 768 MB, 2.1 CPU s and +372 MB at 256 MB. (A training set's read, a
    #: join and a window, fails at 128 MB: it keeps :attr:`MEMORY_LIMIT`.)
    LEAN_MEMORY_LIMIT: str = "256MB"

    def __init__(
        self, con: duckdb.DuckDBPyConnection | None, path: str, *, read_only: bool = False
    ) -> None:
        self._con = con
        self.path = path
        self.read_only = read_only
        self._verified: dict[str, tuple[Any, ...]] = {}
        self._digested: dict[str, tuple[Any, ...]] = {}  # fingerprints at freeze
        #: Reservoirs read and checked on the current connection (see :meth:`reservoir`).
        self._checked: dict[str | None, Any] = {}
        self._digest_version: bool | None = None
        self._held_since = time.monotonic()
        self._released_as: tuple[Any, ...] | None = None
        #: Facts read on the current connection that only this ledger's own writes change
        #: (tables present, rolled-back rounds, a run's metrics and decisions): a loop of
        #: quick rounds reads them every stage. Emptied with :attr:`_checked`.
        self._facts: dict[tuple[Any, ...], Any] = {}
        #: Open :meth:`atomic` blocks; ``_doomed``: a write inside one failed.
        self._depth = 0
        self._doomed = False
        #: What the last :meth:`release` and reopen cost (s): a loop holds the file
        #: long enough that letting readers in stays a small share of its time.
        self.reopen_seconds = 0.0
        self._closing_seconds = 0.0
        #: Where a watching run is (see :meth:`watch`), and the state of its tables
        #: taken when it last let go of the file, with where it was then.
        self._where: str | None = None
        self._run_state: tuple[dict[str, tuple[int, int]], str] | None = None

    @classmethod
    def open(
        cls,
        path: str | Path = ":memory:",
        *,
        read_only: bool = False,
        wait: float | None = None,
    ) -> Self:
        """Open (or create) a ledger; ``":memory:"`` keeps it in this process only.

        A file that is not a DuckDB database (a SQLite file, a text file, a ledger cut
        short) is refused with what it is. While another process holds the file (a
        ``tailguard run`` writing a stage), opening retries for ``wait`` seconds
        (default :attr:`LOCK_WAIT`) before saying the ledger is busy.
        """
        target = str(path)
        if target != ":memory:":
            p = Path(target)
            if read_only and not p.exists():
                raise TailguardError(f"no ledger at {p}")
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise TailguardError(
                    f"cannot create a ledger at {p}: {exc.strerror} ({p.parent})"
                ) from None
            check_ledger_file(p)
        led = cls(None, target, read_only=read_only)
        led._connect(cls.LOCK_WAIT if wait is None else wait, create=not read_only)
        return led

    def _connect(self, wait: float, *, create: bool = False) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + wait
        delay = 0.02
        short = _is_short(self.path)
        waiting = False
        while True:
            started = time.monotonic()  # (the attempt that opens it: waiting is not its cost)
            try:
                con = duckdb.connect(self.path, read_only=self.read_only, config=_DUCKDB_CONFIG)
                break
            except duckdb.Error as exc:
                busy = _is_lock_conflict(exc)
                if busy and time.monotonic() < deadline:
                    waiting = self._announce_waiting() or waiting
                    time.sleep(delay)
                    delay = min(delay * 2, 0.1)
                    continue
                if waiting:
                    self._done_waiting()
                if busy:
                    raise TailguardError(
                        f"ledger {self.path} is busy: another process holds it (a running "
                        f"`tailguard run`?) and did not let go within {wait:g}s; try again"
                    ) from None
                raise _unopenable(self.path, exc) from None
        if waiting:
            self._done_waiting()
        try:
            tables = {
                t for (t,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
            }
            _check_torn(con, self.path, tables, short)
            if tables and "records" not in tables:  # someone else's DuckDB file: leave it be
                con.close()
                raise TailguardError(
                    f"{self.path} is a DuckDB database but not a tailguard ledger (it has no "
                    "records table); nothing was written to it"
                )
            if create:
                _do(con, _DDL)
                _do(con, _rollback.DDL)
                _migrate(con)
            # Row order is kept by explicit ORDER BY everywhere, so let inserts run in parallel.
            _do(con, "SET preserve_insertion_order = false")
            _do(con, f"SET memory_limit = '{self.MEMORY_LIMIT}'")
            _do(con, "SET allocator_flush_threshold = '64MB'")  # hand freed memory back
        except duckdb.Error as exc:
            con.close()
            raise TailguardError(
                f"ledger {self.path} is damaged or not a tailguard ledger: {_first_line(exc)}"
            ) from None
        self._con = con
        self._held_since = time.monotonic()
        self.reopen_seconds = self._closing_seconds + self._held_since - started
        if self._released_as is None or self._released_as != self._file_state():
            self._checked.clear()  # another process may have written while it was let go
            self._facts.clear()
            self._check_run_state()
        return con

    @contextlib.contextmanager
    def _lean(self) -> Iterator[None]:
        """DuckDB held to :attr:`LEAN_MEMORY_LIMIT` for a block (a large sorted read),
        then given :attr:`MEMORY_LIMIT` back."""
        self.con.execute(f"SET memory_limit = '{self.LEAN_MEMORY_LIMIT}'")
        try:
            yield
        finally:
            if self._con is not None:
                self._con.execute(f"SET memory_limit = '{self.MEMORY_LIMIT}'")

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection, reopened (waiting for a reader's lock) after :meth:`release`."""
        if self._con is None:
            return self._connect(self.LOCK_WAIT * 6)
        return self._con

    def release(self, *, held: float = 0.0) -> None:
        """Let go of a ledger file between writes, so other processes can read it.

        The next use reopens it (tens of milliseconds). With ``held``, only if the
        file has been held that many seconds: a loop of quick rounds releases now and
        then instead of after every stage. A ``:memory:`` ledger is kept: it lives in
        this connection only.
        """
        if self._depth:
            return  # never in the middle of an atomic block: its writes are not in yet
        someone_waits = self._reader_waiting()
        if not someone_waits and held > 0 and time.monotonic() - self._held_since < held:
            return
        if self._con is not None and self.path != ":memory:":
            started = time.monotonic()
            if self._where is not None:  # (its cost counts as letting go's: see HOLD)
                self._run_state = (self._table_state(), self._where)
            self._con.close()
            self._closing_seconds = time.monotonic() - started
            self._con = None
            self._released_as = self._file_state()
            if someone_waits:  # hand the file over: reopening at once would win the lock again
                deadline = time.monotonic() + self.HANDOVER
                while self._reader_waiting() and time.monotonic() < deadline:
                    time.sleep(0.005)

    def watch(self, where: str | None) -> None:
        """Say where a run is (``"round 2, plan"``), or stop watching (``None``).

        While a run watches, letting go of the file (:meth:`release`) takes the state
        of :data:`RUN_TABLES` (rows and a sum of row hashes per table), and reopening a
        file another process wrote to compares it: the run's state changed under it
        (an ingest, a screen, a manual gate, mix or eval, an edit outside tailguard) is
        :class:`ProjectChanged`, raised before the run reads or writes anything more.
        Reopening an untouched file (readers only) costs no comparison.
        """
        self._where = where
        if where is None:
            self._run_state = None

    def _table_state(self) -> dict[str, tuple[int, int]]:
        """Rows and the sum of the rows' hashes of every run table present (one statement).

        The texts (a record's ``content``, a verdict's ``detail``) are left out of the
        hash: most of the bytes, and never changed alone (a record's id is its text's
        hash; a verdict is rewritten whole): a round's six states at 100,000 records
        took 0.36 s with the texts, 0.12 s without."""
        con = self.con
        present = {
            t
            for (t,) in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE list_contains(?, table_name)",
                [list(RUN_TABLES)],
            ).fetchall()
        }
        parts = [
            f"SELECT '{t}', count(*), coalesce(sum(hash(*COLUMNS({_NOT_TEXT}))), 0) FROM \"{t}\" t"
            for t in RUN_TABLES
            if t in present
        ]
        if not parts:
            return {}
        rows = con.execute(" UNION ALL ".join(parts)).fetchall()
        return {name: (int(n), int(h)) for name, n, h in rows}

    def _check_run_state(self) -> None:
        """Refuse to go on if another process changed the run's tables while it let go."""
        if self._run_state is None or self._where is None:
            return
        before, since = self._run_state
        now = self._table_state()
        if now == before:
            return
        self._run_state = None  # said once; the run stops here
        changed = []
        for t in RUN_TABLES:
            (n0, h0), (n1, h1) = before.get(t, (0, 0)), now.get(t, (0, 0))
            if (n0, h0) != (n1, h1):
                changed.append(
                    f"{t} {n0:,} -> {n1:,} rows" if n0 != n1 else f"{t} rows rewritten ({n1:,})"
                )
        raise ProjectChanged(
            f"{self._where}: the project changed under the run while it had let go of "
            f"{self.path} (since {since}): {'; '.join(changed)}. Another process wrote to "
            "the ledger without the run lock (an ingest, a screen, a gate, mix or eval by "
            "hand, or an edit outside tailguard); the run stopped before writing anything "
            "more. See what changed (`tailguard audit`), then continue with "
            "`tailguard run --resume`"
        )

    #: Seconds a writer (a loop) may hold the file before letting readers in (between
    #: stages, and around a user's call that ran at least this long last time).
    HOLD: float = 0.5
    #: At most this share of a writer's time goes to letting readers in: after a release
    #: and reopen that cost ``c`` seconds, the file is held ``c / REOPEN_SHARE`` at least,
    #: and never longer than ``HOLD_MAX`` (a reader waits that long, plus a stage, at most).
    REOPEN_SHARE: float = 0.05
    HOLD_MAX: float = 2.0

    def between_stages(self) -> None:
        """Let readers (monitor, audit, report) in between a writer's stages now and
        then: reopening costs tens of milliseconds, too much for every quick stage."""
        hold = min(self.HOLD_MAX, self.reopen_seconds / self.REOPEN_SHARE)
        self.release(held=max(self.HOLD, hold))

    def before_call(self, last_seconds: float | None) -> None:
        """Let go of the file around a user's function, unless its last call (``None``:
        never called) was quicker than :attr:`HOLD` (a cheap model)."""
        if last_seconds is None or last_seconds >= self.HOLD:
            self.release()

    #: How long :meth:`release` waits for a process that announced it is waiting to open
    #: the file (s). Without the hand-over a quick loop reopens the file before a waiting
    #: reader's next try, and the reader starves.
    HANDOVER: float = 1.0

    @property
    def _waiting_marker(self) -> str:
        return self.path + ".waiting"

    def _announce_waiting(self) -> bool:
        """Say (with a marker file beside the ledger) that this process waits for the file."""
        try:
            Path(self._waiting_marker).touch()
            return True
        except OSError:  # a read-only folder: wait without announcing
            return False

    def _done_waiting(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self._waiting_marker)

    def _reader_waiting(self) -> bool:
        """A fresh marker: a waiting process touches it on every try (0.1 s apart at most),
        so one left by a killed process goes stale within a second."""
        if self.path == ":memory:":
            return False
        try:
            return time.time() - os.stat(self._waiting_marker).st_mtime < 1.0
        except OSError:
            return False

    def _file_state(self) -> tuple[Any, ...]:
        """Size, modification time and inode of the file and its write-ahead log: any
        writer changes them, so a reopened file that kept them holds what it held."""
        out: list[Any] = []
        for p in (self.path, self.path + ".wal"):
            try:
                st = os.stat(p)
                out.append((st.st_size, st.st_mtime_ns, st.st_ino))
            except OSError:
                out.append(None)
        return tuple(out)

    def close(self) -> None:
        self._released_as = None
        self._facts.clear()
        if self._con is not None:
            self._con.close()
            self._con = None

    def snapshot(self, path: str | Path) -> None:
        """Copy this whole ledger (schema and rows) into a new DuckDB file at ``path``.

        The lab keeps its ledgers in memory (a file ledger reconnects around every
        stage) and branches several routes from one state: it snapshots that state
        once and :meth:`restore` s it for each route.
        """
        con = self.con
        (name,) = con.execute("SELECT current_database()").fetchone() or ("memory",)
        _do(con, f"ATTACH {_quoted(path)} AS branch")
        try:
            _do(con, f'COPY FROM DATABASE "{name}" TO branch')
        finally:
            _do(con, "DETACH branch")

    @classmethod
    def restore(cls, path: str | Path) -> Self:
        """A new in-memory ledger holding what the :meth:`snapshot` file at ``path`` holds."""
        con = duckdb.connect(":memory:", config=_DUCKDB_CONFIG)
        _do(con, f"ATTACH {_quoted(path)} AS branch (READ_ONLY)")
        try:
            _do(con, "COPY FROM DATABASE branch TO memory")
        finally:
            _do(con, "DETACH branch")
        return cls(con, ":memory:")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _transaction(self) -> _Transaction:
        return _Transaction(self)

    def atomic(self) -> _Transaction:
        """``with ledger.atomic():`` every write inside lands together, or none does.

        Writes that are one transaction each (:meth:`add_records`, :meth:`record_gate`,
        :meth:`mark_stage`...) join the block's transaction instead, so a loop stage
        and its mark in ``stages`` commit at once (one disk sync, not two). If any
        write inside fails, nothing of the block is kept, even when the caller caught
        the error. The file is not let go (:meth:`release`) inside a block.
        """
        return _Transaction(self)

    def _refuse_during_run(self, doing: str) -> None:
        """Changes a run must not see mid-round wait until no other run holds the project."""
        refuse_during_run(self.path, doing)

    def _fact(self, key: tuple[Any, ...], read: Any) -> Any:
        """``read()``, once per connection until one of this ledger's writes forgets it."""
        if key not in self._facts:
            self._facts[key] = read()
        return self._facts[key]

    def _forget(self, kind: str) -> None:
        for key in [k for k in self._facts if k[0] == kind]:
            del self._facts[key]

    def _has_table(self, name: str) -> bool:
        if ("table", name) in self._facts:  # tailguard never drops a table
            return True
        there = bool(
            self.con.execute(
                "SELECT 1 FROM duckdb_tables() WHERE table_name = ?", [name]
            ).fetchall()
        )
        if there:
            self._facts["table", name] = True
        return there

    @staticmethod
    def _filters(**filters: Any) -> tuple[list[str], list[Any]]:
        where, params = [], []
        for key, value in filters.items():
            if value is not None:
                where.append(f'"{key}" = ?')
                params.append(str(value) if key in {"origin", "status"} else value)
        return where, params

    @staticmethod
    def _log(
        con: duckdb.DuckDBPyConnection,
        kind: str,
        *,
        run: str | None = None,
        round: int | None = None,  # noqa: A002
        key: str | None = None,
        old: str | None = None,
        new: str | None = None,
        reason: str = "",
    ) -> None:
        """Append one change to ``history`` (what, old and new value, when, by whom)."""
        _do(
            con,
            "INSERT INTO history VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [kind, run, round, key, old, new, reason, dt.datetime.now(dt.UTC), _who()],
        )


def _quoted(path: str | Path) -> str:
    """A file path as a SQL string literal."""
    return "'" + str(path).replace("'", "''") + "'"


class _Transaction:
    """``with`` block around one DuckDB transaction: commit on success, else roll back.

    Nested in another block of the same ledger (:meth:`Ledger.atomic`), it joins the
    outer transaction; a failure inside dooms the outer one, which then rolls back.
    """

    def __init__(self, ledger: LedgerBase) -> None:
        self.ledger = ledger

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        led = self.ledger
        self.con = led.con
        if led._depth == 0:
            self.con.begin()
            led._doomed = False
        led._depth += 1
        return self.con

    def __exit__(self, exc_type: object, *rest: object) -> None:
        led = self.ledger
        led._depth -= 1
        if exc_type is not None:
            led._doomed = True
        if led._depth:
            return
        if not led._doomed:
            self.con.commit()
            return
        self.con.rollback()
        led._facts.clear()  # what was read inside may have been rolled back with it
        led._checked.clear()
        led._doomed = False
        if exc_type is None:
            raise TailguardError(
                "a write inside an atomic block failed (and the error was caught): "
                "nothing of the block was kept"
            )
