"""The provenance ledger: every example, where it came from, and what was done with it.

A DuckDB file (``:memory:`` for tests and the lab) holds the records, the frozen
human reservoir, the gate's verdicts, each round's training manifest, the metric
history and the dial's decisions. Writes go in as Arrow tables inside one
transaction: a write lands whole or not at all.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tailguard import rollback as _rollback
from tailguard.errors import InputError, ReservoirError, TailguardError, check_fraction
from tailguard.limits import INT32_MAX
from tailguard.readers import read_table
from tailguard.records import (
    AUDIT_ROWS,
    MANIFEST_SLOTS,
    METRIC_ROWS,
    SCHEMA,
    VERDICT_ROWS,
    Manifest,
    Origin,
    Status,
    content_id_sql,
    record_rows,
    resolve_provenance,
    scratch,
)

_DDL = """
CREATE TABLE IF NOT EXISTS records (
    id VARCHAR NOT NULL USING COMPRESSION uncompressed, content VARCHAR NOT NULL,
    origin VARCHAR NOT NULL,
    source VARCHAR NOT NULL, generator VARCHAR, generation INTEGER NOT NULL,
    parent_id VARCHAR, label VARCHAR, round INTEGER NOT NULL, status VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL, meta VARCHAR
);
CREATE TABLE IF NOT EXISTS reservoirs (
    name VARCHAR PRIMARY KEY, digest VARCHAR NOT NULL, seed BIGINT NOT NULL,
    holdout_fraction DOUBLE NOT NULL, n_train BIGINT NOT NULL, n_holdout BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS reservoir_members (
    name VARCHAR NOT NULL, id VARCHAR NOT NULL, split VARCHAR NOT NULL, label VARCHAR
);
CREATE TABLE IF NOT EXISTS verdicts (
    id VARCHAR NOT NULL, round INTEGER NOT NULL, verifier VARCHAR NOT NULL,
    params VARCHAR, version VARCHAR, passed BOOLEAN NOT NULL, code VARCHAR, detail VARCHAR,
    score DOUBLE, matched_id VARCHAR
);
CREATE TABLE IF NOT EXISTS manifests (
    run VARCHAR NOT NULL, round INTEGER NOT NULL, policy VARCHAR NOT NULL,
    params VARCHAR NOT NULL, seed BIGINT NOT NULL, digest VARCHAR NOT NULL,
    n_batches BIGINT NOT NULL, n_slots BIGINT NOT NULL, created_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS manifest_slots (
    run VARCHAR NOT NULL, round INTEGER NOT NULL, pos BIGINT NOT NULL, batch INTEGER NOT NULL,
    id VARCHAR NOT NULL, origin VARCHAR NOT NULL, generation INTEGER NOT NULL, label VARCHAR
);
CREATE TABLE IF NOT EXISTS metrics (
    run VARCHAR NOT NULL, round INTEGER NOT NULL, sample VARCHAR NOT NULL,
    metric VARCHAR NOT NULL, value DOUBLE, higher_is_better BOOLEAN
);
CREATE TABLE IF NOT EXISTS decisions (
    run VARCHAR NOT NULL, round INTEGER NOT NULL, real_fraction DOUBLE NOT NULL,
    reason VARCHAR NOT NULL, evidence VARCHAR
);
CREATE TABLE IF NOT EXISTS quarantine_log (
    id VARCHAR NOT NULL, action VARCHAR NOT NULL, code VARCHAR, detail VARCHAR,
    score DOUBLE, matched_id VARCHAR, logged_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS stages (
    run VARCHAR NOT NULL, round INTEGER NOT NULL, stage VARCHAR NOT NULL,
    finished_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS run_reservoirs (
    run VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, digest VARCHAR NOT NULL,
    pinned_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS fingerprint_words (
    kind VARCHAR NOT NULL, id VARCHAR NOT NULL, value UBIGINT[] NOT NULL
);
CREATE TABLE IF NOT EXISTS verifier_audits (
    verifier VARCHAR NOT NULL, kind VARCHAR NOT NULL, version VARCHAR NOT NULL,
    params VARCHAR NOT NULL, sample VARCHAR NOT NULL, sample_digest VARCHAR NOT NULL,
    n_good BIGINT NOT NULL, n_bad BIGINT NOT NULL,
    accepted_good BIGINT NOT NULL, accepted_bad BIGINT NOT NULL,
    precision DOUBLE, precision_low DOUBLE, precision_high DOUBLE,
    recall DOUBLE, recall_low DOUBLE, recall_high DOUBLE,
    specificity DOUBLE, specificity_low DOUBLE, specificity_high DOUBLE,
    confidence DOUBLE NOT NULL, audited_at TIMESTAMPTZ NOT NULL, audited_by VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    kind VARCHAR NOT NULL, run VARCHAR, round INTEGER, key VARCHAR,
    old VARCHAR, new VARCHAR, reason VARCHAR, changed_at TIMESTAMPTZ NOT NULL,
    changed_by VARCHAR NOT NULL
);
"""

#: DuckDB's file layout: a 4 KiB file header, two 4 KiB database headers, then 256 KiB
#: blocks. A file of another size was cut short (or is not a DuckDB file at all).
_DUCKDB_HEADER, _DUCKDB_BLOCK = 3 * 4096, 256 * 1024

#: Never let a ledger path make DuckDB fetch or load an extension (a SQLite file would).
#: Where reference fingerprints are kept (a 0.3 ledger's ``fingerprints`` table of blobs is
#: no longer read: its values are computed once more and kept here).
FINGERPRINT_TABLE = "fingerprint_words"

_DUCKDB_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}

#: How content ids are recomputed inside DuckDB (content is stored normalised), as
#: :func:`~tailguard.records.content_ids` does: the regex runs only on texts holding a
#: whitespace run to collapse (RE2's ``\s`` is ``[\t\n\f\r ]``); a byte search is far
#: cheaper than the regex on the rest.
_SQL_CONTENT_ID = (
    "md5(CASE WHEN contains(content, '  ') OR contains(content, chr(9)) "
    "OR contains(content, chr(10)) OR contains(content, chr(12)) OR contains(content, chr(13)) "
    "THEN regexp_replace(content, '\\s+', ' ', 'g') ELSE content END)"
)

VERDICT_SCHEMA = VERDICT_ROWS

#: What :meth:`Ledger.rollback` returns (defined in :mod:`tailguard.rollback`).
Rollback = _rollback.Rollback

#: A verdict row of a ledger written before reason codes: its ``reason`` is the detail,
#: and its code is ``ok`` or ``unclassified`` (the old text carried no stable cause).
_LEGACY_CODE = "CASE WHEN passed THEN 'ok' ELSE 'unclassified' END"


def _verdict_columns(con: duckdb.DuckDBPyConnection) -> set[str]:
    sql = "SELECT column_name FROM duckdb_columns() WHERE table_name = 'verdicts'"
    return {r[0] for r in con.execute(sql).fetchall()}


def _migrate(con: duckdb.DuckDBPyConnection) -> None:
    """Bring a ledger of an earlier version to the current columns (adds, never drops)."""
    cols = _verdict_columns(con)
    if "reason" in cols and "code" not in cols:
        _do(con, "ALTER TABLE verdicts RENAME COLUMN reason TO detail")
        _do(con, "ALTER TABLE verdicts ADD COLUMN code VARCHAR")
    # Reservoirs frozen before digest version 2 keep their ``split:id`` digest (NULL = 1).
    _do(con, "ALTER TABLE reservoirs ADD COLUMN IF NOT EXISTS digest_version INTEGER")


def _verdict_rows(con: duckdb.DuckDBPyConnection) -> str:
    """The verdicts as SQL in the current columns, whatever version wrote the ledger."""
    cols = _verdict_columns(con)
    detail = "reason" if "code" not in cols and "reason" in cols else "detail"
    code = f"coalesce(code, {_LEGACY_CODE})" if "code" in cols else _LEGACY_CODE
    names = ", ".join(
        f"{code} AS code" if n == "code" else f"{detail} AS detail" if n == "detail" else n
        for n in VERDICT_SCHEMA.names
    )
    return f"(SELECT {names} FROM verdicts)"


METRIC_SCHEMA = METRIC_ROWS

#: What :meth:`Ledger.record_audits` takes (defined in :mod:`tailguard.records`).
AUDIT_SCHEMA = AUDIT_ROWS


def _audit_rows() -> pa.Schema:
    """The stored audit rows: :data:`AUDIT_SCHEMA` plus when and by whom."""
    return AUDIT_SCHEMA.append(pa.field("audited_at", pa.timestamp("us", tz="UTC"))).append(
        pa.field("audited_by", pa.string())
    )


@dataclass(frozen=True)
class IngestResult:
    """What one ingest did: rows read, rows new to the ledger, rows already there."""

    read: int
    added: int
    existing: int
    #: Of ``existing``: rows repeating an earlier row of the same file.
    within_file: int = 0

    @property
    def total(self) -> int:
        return self.read


@dataclass(frozen=True)
class Reservoir:
    """A frozen set of human records: the training anchor and the held-out reference."""

    name: str
    digest: str
    seed: int
    holdout_fraction: float
    train_ids: pa.Array
    holdout_ids: pa.Array

    @property
    def size(self) -> int:
        return len(self.train_ids) + len(self.holdout_ids)


class Ledger:
    """The provenance store. Open with :meth:`Ledger.open`; use as a context manager."""

    #: The audit's floor: a round whose human share is below it is flagged.
    AUDIT_FLOOR: float = 0.15
    #: The share of each label :meth:`freeze_reservoir` holds out for evaluation.
    HOLDOUT: float = 0.1

    #: How long opening a ledger waits for another process's lock before giving up (s).
    LOCK_WAIT: float = 10.0
    #: DuckDB's memory for this ledger: past it, sorts, joins and aggregates spill to a
    #: temporary folder beside the file. DuckDB's own default (80% of RAM) let its cache
    #: of freed pages lift a million-record round's peak from 4.3 to 6.5 GB.
    MEMORY_LIMIT: str = "2GB"

    def __init__(
        self, con: duckdb.DuckDBPyConnection | None, path: str, *, read_only: bool = False
    ) -> None:
        self._con = con
        self.path = path
        self.read_only = read_only
        self._verified: dict[str, tuple[Any, ...]] = {}
        self._digested: dict[str, tuple[Any, ...]] = {}  # fingerprints at freeze
        #: Reservoirs read and checked on the current connection (see :meth:`reservoir`).
        self._checked: dict[str | None, Reservoir] = {}
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

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def open(
        cls,
        path: str | Path = ":memory:",
        *,
        read_only: bool = False,
        wait: float | None = None,
    ) -> Ledger:
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
        waiting = False
        while True:
            started = time.monotonic()  # (the attempt that opens it: waiting is not its cost)
            try:
                con = duckdb.connect(self.path, read_only=self.read_only, config=_DUCKDB_CONFIG)
                break
            except duckdb.Error as exc:
                busy = "lock" in str(exc).lower()
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
                raise TailguardError(f"cannot open ledger {self.path}: {exc}") from None
        if waiting:
            self._done_waiting()
        try:
            tables = {
                t for (t,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
            }
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
        return con

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
            self._con.close()
            self._closing_seconds = time.monotonic() - started
            self._con = None
            self._released_as = self._file_state()
            if someone_waits:  # hand the file over: reopening at once would win the lock again
                deadline = time.monotonic() + self.HANDOVER
                while self._reader_waiting() and time.monotonic() < deadline:
                    time.sleep(0.005)

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

    def __enter__(self) -> Ledger:
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

    def _fact(self, key: tuple[Any, ...], read: Any) -> Any:
        """``read()``, once per connection until one of this ledger's writes forgets it."""
        if key not in self._facts:
            self._facts[key] = read()
        return self._facts[key]

    def _forget(self, kind: str) -> None:
        for key in [k for k in self._facts if k[0] == kind]:
            del self._facts[key]

    # ------------------------------------------------------------------ records
    #: Provenance columns an exported file carries; re-ingesting it keeps them.
    PROVENANCE = ("origin", "generator", "generation")

    def ingest(
        self,
        data: str | Path | pa.Table | Any,
        *,
        origin: Origin | str | None = None,
        source_name: str | None = None,
        generator: str | None = None,
        generation: int | None = None,
        round: int = 0,  # noqa: A002 - the schema's name
        text_field: str = "text",
        label_field: str | None = None,
        parent_field: str | None = None,
        status: Status | str | None = None,
    ) -> IngestResult:
        """Ingest a file (JSONL, Parquet, CSV) or a table (Arrow, pandas, HF ``datasets``).

        Content-addressed: rows whose content and provenance are already in the
        ledger are counted as ``existing`` and not added again. All or nothing.
        ``origin=None`` reads the provenance (``origin``, ``generator``, ``generation``)
        from the data's own columns when it has them (an export), else ``human``; an
        explicit ``origin`` overrides them. The same text with two labels, in the data
        or against the ledger, is refused as a label conflict (see :meth:`relabel`).
        """
        round = check_round(round)  # noqa: A001
        self._checked.clear()
        table, name = read_table(
            data, text_field=text_field, label_field=label_field, parent_field=parent_field
        )
        rows = record_rows(
            table.column(text_field),
            label=table.column(label_field) if label_field else None,
            parent_id=table.column(parent_field) if parent_field else None,
        )
        groups = self._provenance_groups(table, origin, generator, generation, status)
        n = rows.num_rows
        now = dt.datetime.now(dt.UTC)
        added = 0
        with self._transaction() as con:
            rows = rows.append_column("row", pa.array(np.arange(1, n + 1), pa.int64()))
            for where, (org, gen_name, gen, st) in groups:
                part = rows if where is None else rows.filter(where)
                provenance = {
                    "origin": org.value,
                    "source": source_name or name,
                    "generator": gen_name,
                    "generation": gen,
                    "round": round,
                    "status": st.value,
                    "created_at": now,
                }
                added += self._ingest_rows(con, part, provenance, label_field is not None)
        repeats = n - pc.count_distinct(rows["key"]).as_py()
        return IngestResult(read=n, added=added, existing=n - added, within_file=repeats)

    def _provenance_groups(
        self,
        table: pa.Table,
        origin: Origin | str | None,
        generator: str | None,
        generation: int | None,
        status: Status | str | None,
    ) -> list[tuple[Any, tuple[Origin, str | None, int, Status]]]:
        """One provenance for the whole batch, or one per group of an export's own columns."""
        if origin is not None or "origin" not in table.column_names:
            resolved = resolve_provenance(
                origin=origin or Origin.HUMAN,
                generator=generator,
                generation=check_round(generation or 0, "generation"),
                status=status,
            )
            return [(None, (resolved[0], generator, generation or 0, resolved[1]))]
        try:
            cols = {
                "origin": table.column("origin").cast(pa.string()),
                "generator": (
                    table.column("generator").cast(pa.string())
                    if "generator" in table.column_names
                    else pa.chunked_array([pa.nulls(table.num_rows, pa.string())])
                ),
                "generation": (
                    table.column("generation").cast(pa.int64())
                    if "generation" in table.column_names
                    else pa.chunked_array([pa.array(np.zeros(table.num_rows, np.int64))])
                ),
            }
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise InputError(f"provenance columns unreadable: {exc}", field="origin") from None
        keys = pa.table(cols)
        groups = []
        for org, gen_name, gen in sorted(
            {tuple(r.values()) for r in keys.group_by(list(cols)).aggregate([]).to_pylist()},
            key=str,
        ):
            if org is None or gen is None:
                raise InputError("missing provenance (null origin or generation)", field="origin")
            if generator is not None or generation is not None:
                gen_name = generator if generator is not None else gen_name
                gen = generation if generation is not None else gen
            resolved = resolve_provenance(
                origin=org,
                generator=gen_name,
                generation=check_round(int(gen), "generation"),
                status=status,
            )
            mask = pc.and_(
                pc.equal(keys["origin"], org),
                pc.and_(
                    pc.fill_null(pc.equal(keys["generator"], gen_name), gen_name is None)
                    if gen_name is not None
                    else pc.is_null(keys["generator"]),
                    pc.equal(keys["generation"], int(gen)),
                ),
            )
            groups.append((mask, (resolved[0], gen_name, int(gen), resolved[1])))
        return groups

    def _ingest_rows(
        self,
        con: duckdb.DuckDBPyConnection,
        rows: pa.Table,
        provenance: dict[str, Any],
        labelled: bool,
    ) -> int:
        """Insert one provenance group of :func:`record_rows` (with a ``row`` number)."""
        n = rows.num_rows
        if n == 0:
            return 0
        # Ids are hashed inside the INSERT (in parallel, no id column in Python) and the
        # batch-wide provenance goes in as constants, which DuckDB stores almost for free.
        con.register("incoming", rows)
        try:
            # One provenance for the whole batch: a repeated key is a repeated record.
            # Distinct hashes prove distinct keys; a collision only costs an exact dedupe.
            repeats = self._count_distinct(con, "hash(key)") < n
            if labelled:
                self._check_label_conflicts(con, provenance["origin"], within=repeats)
            unique = (
                "(SELECT DISTINCT ON (key) * FROM incoming ORDER BY key, row)"
                if repeats
                else "incoming"
            )
            return self._insert_absent(
                con,
                f"""
                SELECT {content_id_sql("key")} AS id, content, $origin AS origin,
                    $source AS source, $generator::VARCHAR AS generator,
                    $generation::INTEGER AS generation, parent_id, label,
                    $round::INTEGER AS round, $status AS status,
                    $created_at::TIMESTAMPTZ AS created_at, NULL::VARCHAR AS meta
                FROM {unique}
                """,
                provenance,
            )
        finally:
            con.unregister("incoming")

    @staticmethod
    def _check_label_conflicts(
        con: duckdb.DuckDBPyConnection, origin: str, *, within: bool = True
    ) -> None:
        """Refuse a text labelled two ways, within the batch or against the ledger.

        ``within=False`` says the batch has no repeated text (so no conflict inside
        it); a ledger with no records of ``origin`` has none to conflict with.
        """
        inner = (
            within
            and con.execute(
                """
            SELECT min(row), max(row), min(label), max(label) FROM incoming
            WHERE label IS NOT NULL GROUP BY key HAVING count(DISTINCT label) > 1
            ORDER BY 1 LIMIT 1
            """
            ).fetchall()
        )
        if inner:
            first, second, a, b = inner[0]
            raise InputError(
                f"label conflict: the same text is labelled {a!r} and {b!r} "
                f"(rows {first} and {second}); fix the file",
                line=second,
                field="label",
            )
        known = con.execute("SELECT 1 FROM records WHERE origin = ? LIMIT 1", [origin]).fetchall()
        outer = (
            known
            and con.execute(
                f"""
            WITH n AS (SELECT {content_id_sql("key")} AS id, label, row FROM incoming
                       WHERE label IS NOT NULL)
            SELECT n.row, n.id, r.label, n.label FROM n JOIN records r
              ON r.id = n.id AND r.origin = ? AND r.label IS DISTINCT FROM n.label
            ORDER BY n.row LIMIT 1
            """,
                [origin],
            ).fetchall()
        )
        if outer:
            row, rid, old, new = outer[0]
            raise InputError(
                f"label conflict: record {rid} is labelled {old!r} in the ledger and {new!r} "
                f"here (row {row}); correct it with `tailguard relabel {rid} LABEL`",
                line=row,
                field="label",
            )

    def add_records(self, records: pa.Table) -> IngestResult:
        """Add records already in :data:`~tailguard.records.SCHEMA` (one transaction)."""
        if records.schema != SCHEMA:
            records = _conform(records, SCHEMA, "records")
        n = records.num_rows
        if pc.any(pc.not_equal(records["origin"], Origin.SYNTHETIC.value)).as_py():
            self._checked.clear()
        with self._transaction() as con:
            con.register("incoming", records)
            # An id is its content's hash: a row claiming an id with other content (a
            # "shadow" of a reservoir record) would be read in its place, so it is refused.
            # One pass: the first refused row (if any) and the distinct ids.
            bad, distinct = con.execute(
                f"""
                SELECT (SELECT (id, round, generation) FROM incoming
                        WHERE {_SQL_CONTENT_ID} <> id OR round < 0 OR generation < 0 LIMIT 1),
                       (SELECT count(DISTINCT hash(id)) FROM incoming)
                """
            ).fetchall()[0]
            if bad:
                con.unregister("incoming")
                rid, rnd, gen = bad
                raise InputError(
                    f"record {rid} refused: "
                    + (
                        f"round {rnd} / generation {gen} must be >= 0"
                        if min(rnd, gen) < 0
                        else "its content does not hash to its id"
                    ),
                    field="id",
                )
            # Distinct ids rule out repeated keys without hashing all five key columns.
            repeats = (
                distinct < n
                and self._count_distinct(con, "(id, origin, source, generator, generation)") < n
            )
            unique = (
                "(SELECT * FROM incoming QUALIFY row_number() OVER "
                "(PARTITION BY id, origin, source, generator, generation) = 1)"
                if repeats
                else "incoming"
            )
            added = self._insert_absent(con, f"SELECT * FROM {unique}")
            con.unregister("incoming")
        return IngestResult(read=n, added=added, existing=n - added)

    @staticmethod
    def _count_distinct(con: duckdb.DuckDBPyConnection, expr: str) -> int:
        """Distinct values of ``expr`` in the registered ``incoming`` batch (DuckDB hashes
        in parallel, several times faster than ``pyarrow.compute.count_distinct``)."""
        return con.execute(f"SELECT count(DISTINCT {expr}) FROM incoming").fetchall()[0][0]

    @staticmethod
    def _insert_absent(
        con: duckdb.DuckDBPyConnection, rows: str, params: dict[str, Any] | None = None
    ) -> int:
        """Insert the records a query gives, except those whose content and provenance are
        already in the ledger; return how many went in."""
        inserted = con.execute(
            f"""
            INSERT INTO records BY NAME SELECT n.* FROM ({rows}) n ANTI JOIN records r
            ON r.id = n.id AND r.origin = n.origin AND r.source = n.source
               AND r.generator IS NOT DISTINCT FROM n.generator
               AND r.generation = n.generation
            """,
            params or {},
        ).fetchall()
        return int(inserted[0][0])

    def records(
        self,
        *,
        origin: str | None = None,
        round: int | None = None,  # noqa: A002
        status: str | None = None,
        generation: int | None = None,
        ids: pa.Array | list[str] | None = None,
        columns: list[str] | None = None,
    ) -> pa.Table:
        """Records matching every given filter, in :data:`SCHEMA` order of columns."""
        where, params = self._filters(
            origin=origin, round=round, status=status, generation=generation
        )
        cols = ", ".join(columns or SCHEMA.names)
        if ids is not None:
            self.con.register("wanted", pa.table({"id": pa.array(ids, pa.string())}))
            where.append("id IN (SELECT id FROM wanted)")
        sql = f"SELECT {cols} FROM records"
        if where:
            sql += " WHERE " + " AND ".join(where)
        order = " ORDER BY round, origin, id, generation"
        table = self.con.sql(sql + order, params=params).to_arrow_table()
        if ids is not None:
            self.con.unregister("wanted")
        return table if columns else table.cast(SCHEMA)

    def record_slices(
        self,
        rows: int,
        *,
        origin: str | None = None,
        round: int | None = None,  # noqa: A002
        status: str | None = None,
    ) -> Iterator[pa.Table]:
        """The records :meth:`records` selects, in its order, about ``rows`` at a time
        (Arrow batches from DuckDB): a round larger than memory is gated one slice at a
        time, never all its texts at once."""
        where, params = self._filters(origin=origin, round=round, status=status)
        sql = f"SELECT {', '.join(SCHEMA.names)} FROM records"
        if where:
            sql += " WHERE " + " AND ".join(where)
        con = self.con.cursor()
        try:
            reader = con.sql(sql + " ORDER BY round, origin, id, generation", params=params)
            for batch in reader.to_arrow_reader(max(int(rows), 1)):
                yield pa.Table.from_batches([batch]).cast(SCHEMA)
        finally:
            con.close()

    def resolve_record_id(self, prefix: str, *, shortest: int = 8) -> str:
        """The full id of the one record (or verdict) whose id starts with ``prefix``.

        Why: tables print ids shortened, and a printed id must work wherever an id is
        taken. Refused, naming the candidates, when the prefix is ambiguous; refused
        when it is shorter than ``shortest`` characters or names no record.
        """
        prefix = prefix.strip()
        if len(prefix) < shortest:
            raise InputError(
                f"id {prefix!r} is too short: give at least {shortest} characters",
                field="id",
            )
        found = [
            r[0]
            for r in self.con.execute(
                "SELECT id FROM records WHERE starts_with(id, $p) UNION "
                "SELECT id FROM verdicts WHERE starts_with(id, $p) ORDER BY 1 LIMIT 6",
                {"p": prefix},
            ).fetchall()
        ]
        if not found:
            raise InputError(f"no record with id {prefix!r}", field="id")
        if len(found) > 1:
            shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
            raise InputError(f"id {prefix!r} is ambiguous: it starts {shown}", field="id")
        return found[0]

    def count(self, **filters: Any) -> int:
        where, params = self._filters(**filters)
        sql = "SELECT count(*) FROM records" + (" WHERE " + " AND ".join(where) if where else "")
        return self.con.execute(sql, params).fetchall()[0][0]

    @staticmethod
    def _filters(**filters: Any) -> tuple[list[str], list[Any]]:
        where, params = [], []
        for key, value in filters.items():
            if value is not None:
                where.append(f'"{key}" = ?')
                params.append(str(value) if key in {"origin", "status"} else value)
        return where, params

    def set_status(self, ids: pa.Array | list[str], status: Status | str, *, round: int) -> int:  # noqa: A002
        """Move synthetic candidates of ``round`` to ``status``; human records never change."""
        status = Status(status)
        with self._transaction() as con:
            con.register("moving", pa.table({"id": pa.array(ids, pa.string())}))
            n = con.execute(
                "UPDATE records SET status = ? WHERE origin = 'synthetic' AND round = ? "
                "AND status = 'candidate' AND id IN (SELECT id FROM moving)",
                [status.value, round],
            ).fetchall()[0][0]
            con.unregister("moving")
        return n

    def rounds(self) -> list[int]:
        rows = self.con.execute(
            "SELECT DISTINCT round FROM records UNION SELECT DISTINCT round FROM manifests "
            "ORDER BY 1"
        ).fetchall()
        return [r[0] for r in rows]

    # ------------------------------------------------------------------ reservoir
    def freeze_reservoir(
        self, name: str = "main", *, holdout: float = HOLDOUT, seed: int = 0
    ) -> Reservoir:
        """Freeze every human record into reservoir ``name``; split a stratified holdout.

        Per label, ``round(holdout * n)`` records (at least one when a label has two
        or more) go to the held-out evaluation reference, chosen by a seeded hash
        so the split is the same on any machine. Refused if ``name`` exists.
        """
        if not 0 <= holdout < 1:
            raise InputError(f"holdout must be in [0, 1), got {holdout}", field="holdout")
        self._checked.clear()
        with self._transaction() as con:
            if con.execute("SELECT 1 FROM reservoirs WHERE name = ?", [name]).fetchall():
                raise ReservoirError(
                    f"reservoir {name!r} is already frozen and cannot be changed; "
                    "freeze a new one under another name"
                )
            runs = con.execute("SELECT DISTINCT run FROM stages ORDER BY 1").fetchall()
            if runs:
                raise ReservoirError(
                    f"cannot freeze reservoir {name!r}: run(s) "
                    f"{', '.join(repr(r[0]) for r in runs)} already have stages and are pinned "
                    "to their reservoir; a new reservoir needs a new ledger"
                )
            members = con.sql(
                """
                WITH human AS (
                    SELECT DISTINCT ON (id) id, label FROM records
                    WHERE origin = 'human' AND status <> 'quarantined' ORDER BY id, round, source),
                ranked AS (
                    SELECT id, label,
                        row_number() OVER (PARTITION BY label ORDER BY md5(id || ?)) AS rk,
                        count(*) OVER (PARTITION BY label) AS n
                    FROM human)
                SELECT id, label,
                    CASE WHEN rk <= CASE WHEN n >= 2 AND ? > 0
                                         THEN greatest(1, round(? * n)) ELSE 0 END
                         THEN 'holdout' ELSE 'train' END AS split
                FROM ranked ORDER BY id
                """,
                params=[str(seed), holdout, holdout],
            ).to_arrow_table()
            if members.num_rows == 0:
                raise ReservoirError("there are no human records to freeze: ingest some first")
            con.register("members", members)
            _do(
                con, "INSERT INTO reservoir_members SELECT ?, id, split, label FROM members", [name]
            )
            con.unregister("members")
            digest = _content_digest(con, name)
            n_hold = int(
                np.sum(members.column("split").to_numpy(zero_copy_only=False) == "holdout")
            )
            _do(
                con,
                "INSERT INTO reservoirs VALUES (?, ?, ?, ?, ?, ?, ?, 2)",
                [
                    name,
                    digest,
                    seed,
                    holdout,
                    members.num_rows - n_hold,
                    n_hold,
                    dt.datetime.now(dt.UTC),
                ],
            )
        # The digest was just computed from these rows: the first read need not redo it.
        self._digested[name] = self._fingerprint(name, digest)
        return self.reservoir(name)

    def has_reservoir(self, name: str | None = None) -> bool:
        sql = "SELECT count(*) FROM reservoirs" + (" WHERE name = ?" if name else "")
        return self.con.execute(sql, [name] if name else []).fetchall()[0][0] > 0

    def reservoir(self, name: str | None = None, *, expect: str | None = None) -> Reservoir:
        """The frozen reservoir (the newest if unnamed), its digest checked on every read.

        The digest (version 2) covers every member's id, split and label and its
        record's label, source, round, status and normalised content; a second human
        row under a member's id with other content is refused too. ``expect`` is a
        digest pinned elsewhere (``reservoir show --expect``, ``[reservoir] digest``):
        the only check that also catches a rewrite of the data *and* the stored digest.

        The check runs once per connection: the file is held exclusively while
        connected, so only tailguard's own writes could change it meanwhile, and those
        that touch human records (ingest, quarantine, relabel, freeze) start over.
        """
        self.con  # noqa: B018 - (re)connect first: a reconnect empties the cache
        res = self._checked.get(name)
        if res is None:
            res = self._read_reservoir(name)
            self._checked[name] = self._checked[res.name] = res
        if expect is not None and expect.strip().lower() != res.digest:
            raise ReservoirError(
                f"reservoir {res.name!r} has digest {res.digest}, not the expected "
                f"{expect.strip()}: the ledger was rewritten (data and digest) or is not the "
                "one you pinned"
            )
        return res

    def _read_reservoir(self, name: str | None) -> Reservoir:
        row = self.con.execute(
            "SELECT name, digest, seed, holdout_fraction, "
            + ("digest_version " if self._has_digest_version() else "NULL ")
            + "FROM reservoirs "
            + ("WHERE name = ? " if name else "")
            + "ORDER BY created_at DESC LIMIT 1",
            [name] if name else [],
        ).fetchall()
        row = row[0] if row else None
        if row is None:
            raise ReservoirError(
                "no frozen reservoir"
                + (f" named {name!r}" if name else "")
                + ": run `tailguard reservoir freeze` first"
            )
        rname, digest, seed, holdout, version = row
        members = self.con.sql(
            "SELECT id, label, split FROM reservoir_members WHERE name = ? ORDER BY id",
            params=[rname],
        ).to_arrow_table()
        if (version or 1) == 1 and _reservoir_digest(members) != digest:
            raise ReservoirError(
                f"reservoir {rname!r} was altered outside tailguard: its members no longer "
                f"match the digest {digest[:12]}...; restore the ledger from a backup"
            )
        self._check_reservoir_content(rname, digest if (version or 1) >= 2 else None)
        split = members.column("split").to_numpy(zero_copy_only=False)
        ids = members.column("id")
        return Reservoir(
            name=rname,
            digest=digest,
            seed=seed,
            holdout_fraction=holdout,
            train_ids=ids.filter(pa.array(split == "train")).combine_chunks(),
            holdout_ids=ids.filter(pa.array(split == "holdout")).combine_chunks(),
        )

    def _has_digest_version(self) -> bool:
        if not self._digest_version:  # once there, the column stays (migrations only add)
            self._digest_version = bool(
                self.con.execute(
                    "SELECT 1 FROM duckdb_columns() WHERE table_name = 'reservoirs' "
                    "AND column_name = 'digest_version'"
                ).fetchall()
            )
        return self._digest_version

    def _check_reservoir_content(self, name: str, digest: str | None) -> None:
        """Re-hash the reservoir's records and compare with their ids (and the digest).

        The full re-hash runs once per ledger session and whenever a cheap
        fingerprint (row counts and sums of fast 64-bit hashes of the members and of
        every human row under their ids) changes, so repeated reads in a loop stay
        cheap and any edit still triggers the exact check.
        """
        fingerprint = self._fingerprint(name, digest)
        if self._verified.get(name) == fingerprint:
            return
        broken, shadows = self.con.execute(
            f"""
            SELECT
              (SELECT count(*) FROM reservoir_members m
               LEFT JOIN (SELECT DISTINCT id FROM records
                          WHERE origin = 'human' AND {_SQL_CONTENT_ID} = id) r USING (id)
               WHERE m.name = $name AND r.id IS NULL),
              (SELECT count(*) FROM records r JOIN reservoir_members m
                 ON m.id = r.id AND m.name = $name
               WHERE r.origin = 'human' AND {_SQL_CONTENT_ID} <> r.id)
            """,
            {"name": name},
        ).fetchall()[0]
        if broken:
            raise ReservoirError(
                f"reservoir {name!r} was altered outside tailguard: {broken} of its records "
                "are missing or their content no longer matches their id"
            )
        if shadows:
            raise ReservoirError(
                f"reservoir {name!r} was altered outside tailguard: {shadows} human row(s) "
                "claim a reservoir id with other content (a shadow row)"
            )
        if (
            digest is not None
            and self._digested.get(name) != fingerprint
            and _content_digest(self.con, name) != digest
        ):
            raise ReservoirError(
                f"reservoir {name!r} was altered outside tailguard: its members, labels or "
                f"content no longer match the digest {digest[:12]}...; restore the ledger "
                "from a backup"
            )
        self._verified[name] = fingerprint

    def _fingerprint(self, name: str, digest: str | None) -> tuple[Any, ...]:
        """Row counts and sums of fast 64-bit hashes of the members and their human rows."""
        return self.con.execute(
            """
            SELECT count(r.id), sum(hash(r.content, r.label, r.round, r.source, r.status)
                                    % 1000000007),
                   (SELECT sum(hash(id, split, label) % 1000000007) FROM reservoir_members
                    WHERE name = $name)
            FROM reservoir_members m
            LEFT JOIN records r ON r.id = m.id AND r.origin = 'human' WHERE m.name = $name
            """,
            {"name": name},
        ).fetchall()[0] + (digest,)

    # ------------------------------------------------------------------ pinning
    def pin_reservoir(self, run: str = "main") -> Reservoir:
        """The reservoir ``run`` is pinned to: recorded at its first stage, checked after.

        Refused if the reservoir's name or digest changed since the run began (a
        deleted and refrozen reservoir, a newer one taking over unnamed reads).
        """
        res = self.reservoir()
        pinned = self.con.execute(
            "SELECT name, digest FROM run_reservoirs WHERE run = ?", [run]
        ).fetchall()
        if not pinned:
            if not self.read_only:
                _do(
                    self.con,
                    "INSERT INTO run_reservoirs VALUES (?, ?, ?, ?)",
                    [run, res.name, res.digest, dt.datetime.now(dt.UTC)],
                )
            return res
        name, digest = pinned[0]
        if (name, digest) != (res.name, res.digest):
            raise ReservoirError(
                f"run {run!r} is pinned to reservoir {name!r} (digest {digest[:12]}...), but "
                f"the ledger's reservoir is now {res.name!r} (digest {res.digest[:12]}...): "
                "the reservoir was replaced; restore the ledger from a backup"
            )
        return res

    # ------------------------------------------------------------------ corrections
    def relabel(self, id: str, label: str | None, *, reason: str = "") -> int:  # noqa: A002
        """Correct the label of every record with ``id``; the old value stays in history.

        A member of a frozen reservoir keeps its label (the reservoir's digest covers
        it): freeze a new reservoir in a new ledger instead.
        """
        self._checked.clear()
        with self._transaction() as con:
            if con.execute("SELECT 1 FROM reservoir_members WHERE id = ?", [id]).fetchall():
                raise ReservoirError(
                    f"record {id} is in a frozen reservoir; its label cannot change"
                )
            old = con.execute(
                "SELECT DISTINCT label FROM records WHERE id = ? ORDER BY 1", [id]
            ).fetchall()
            if not old:
                raise InputError(f"no record with id {id!r}", field="id")
            n = con.execute("UPDATE records SET label = ? WHERE id = ?", [label, id]).fetchall()[0][
                0
            ]
            self._log(
                con,
                "relabel",
                key=id,
                old=json.dumps([o[0] for o in old]),
                new=json.dumps(label),
                reason=reason,
            )
        return n

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

    def history(self) -> pa.Table:
        """Every replaced manifest or metric set and every label correction, oldest first."""
        if not self._has_table("history"):
            return pa.table({})
        return self.con.sql("SELECT * FROM history ORDER BY changed_at").to_arrow_table()

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

    def runs(self) -> list[str]:
        """Every run name with a manifest, a metric, a decision or a stage."""
        rows = self.con.execute(
            "SELECT run FROM manifests UNION SELECT run FROM metrics UNION "
            "SELECT run FROM decisions UNION SELECT run FROM stages ORDER BY 1"
        ).fetchall()
        return [r[0] for r in rows]

    def check_run(self, run: str | None) -> None:
        """Refuse a run name the ledger does not know, listing the ones it does."""
        if run is None:
            return
        known = self.runs()
        if run not in known:
            raise InputError(
                f"no run {run!r} in this ledger; runs: {', '.join(known) or '(none yet)'}",
                field="run",
            )

    def reservoir_records(self, split: str = "train", name: str | None = None) -> pa.Table:
        """Human records of the reservoir: ``train``, ``holdout`` or ``all`` (one per id)."""
        if split not in {"train", "holdout", "all"}:
            raise InputError(f"split must be train, holdout or all, not {split!r}")
        sql, params = self._reservoir_sql(split, name)
        return self.con.sql(sql, params=params).to_arrow_table().cast(SCHEMA)

    def _reservoir_sql(self, split: str, name: str | None) -> tuple[str, list[Any]]:
        res = self.reservoir(name)
        cond = "" if split == "all" else "AND m.split = ?"
        params = [res.name] + ([] if split == "all" else [split])
        sql = f"""
            SELECT r.* FROM (SELECT DISTINCT ON (id) * FROM records
                             WHERE origin = 'human' ORDER BY id, round, source) r
            JOIN reservoir_members m ON m.id = r.id AND m.name = ? {cond}
            ORDER BY r.id
            """
        return sql, params

    # ------------------------------------------------------------------ fingerprints
    def fingerprints(
        self, kind: str, ids: pa.Array | pa.ChunkedArray, width: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Stored fixed-width fingerprints of records (by content id), for ``kind``.

        Returns ``(found, values)``: which ids have one, and a ``(len(ids), width)``
        uint8 array holding them (zeros where not found). ``kind`` names what was
        computed and how (a verifier's fingerprint with its version and parameters),
        so a change of either never reads an old value. Ids are content hashes, so a
        stored value holds for the record in any reference set and any run.
        """
        n = len(ids)
        found = np.zeros(n, bool)
        values = np.zeros((n, width), np.uint8)
        if n == 0 or not self._has_table(FINGERPRINT_TABLE):
            return found, values
        con = self.con.cursor()
        try:
            con.register("wanted", pa.table({"pos": np.arange(n, dtype=np.int64), "id": ids}))
            # Batch by batch into ``values``: a reservoir's signatures are held once, not twice.
            for hit in con.sql(
                f"SELECT w.pos, f.value FROM wanted w JOIN {FINGERPRINT_TABLE} f "
                "ON f.kind = ? AND f.id = w.id",
                params=[kind],
            ).to_arrow_reader(_FINGERPRINT_BATCH):
                pos = hit.column(0).to_numpy()
                found[pos] = True
                values[pos] = _fixed_width(hit.column(1), width, kind)
        finally:
            con.close()
        return found, values

    def store_fingerprints(
        self, kind: str, ids: pa.Array | pa.ChunkedArray, values: np.ndarray
    ) -> int:
        """Keep fingerprints (one row of ``values`` per id, any fixed-width dtype) of
        ``kind`` for later runs; ids already stored are left as they are. Returns the
        number added (0 on a read-only ledger).

        Values are stored as lists of 64-bit words, not blobs: DuckDB writes a
        million 512-byte MinHash signatures about five times faster that way.
        """
        if self.read_only or len(ids) == 0:
            return 0
        raw = np.ascontiguousarray(values).view(np.uint8).reshape(len(ids), -1)
        words = -(-raw.shape[1] // 8)
        if raw.shape[1] != words * 8:  # padded to whole words (a view otherwise: no copy)
            raw = np.pad(raw, ((0, 0), (0, words * 8 - raw.shape[1])))
        value = pa.ListArray.from_arrays(
            pa.array(np.arange(0, (len(ids) + 1) * words, words, dtype=np.int32)),
            pa.array(raw.view(np.uint64).reshape(-1)),
        )
        with self._transaction() as con:
            con.register("new_fp", pa.table({"id": ids, "value": value}))
            added = con.execute(
                f"INSERT INTO {FINGERPRINT_TABLE} SELECT DISTINCT ON (n.id) ?, n.id, n.value "
                f"FROM new_fp n ANTI JOIN (SELECT id FROM {FINGERPRINT_TABLE} WHERE kind = ?) f "
                "ON f.id = n.id",
                [kind, kind],
            ).fetchall()[0][0]
            con.unregister("new_fp")
        return int(added)

    def export_round(
        self,
        round: int,  # noqa: A002
        directory: str | Path,
        *,
        reservoir: bool = True,
        earlier: bool = True,
        references: dict[str, pa.Table] | None = None,
        rows_per_file: int = 250_000,
    ) -> dict[str, Any]:
        """Write round ``round``'s candidates and the sets the gate compares them with as
        Parquet shards for an out-of-core gate (``tailguard.gate.distributed``).

        ``candidates/`` holds each synthetic candidate once (the gate's order: by id,
        the lowest generation); ``reservoir/`` the reservoir's training split by id;
        ``earlier/`` (``earlier``) the accepted synthetic records of rounds before
        ``round``, as ``Gate.run_round`` selects them and in its order, each tagged
        ``set = 'generation <g> synthetic'``; ``references/<i>-<name>/`` each named
        reference set of ``references`` (tables of ``id`` and ``content``) in its
        order, tagged ``set = name``. Every row has its ``pos`` in that order. DuckDB
        streams the shards: nothing passes through Python. Returns the directories
        (``"references"``: a mapping of set name to directory).
        """
        import shutil
        from urllib.parse import quote

        directory = Path(directory)
        out: dict[str, Any] = {"candidates": directory / "candidates"}
        candidates = """
            SELECT * FROM (SELECT DISTINCT ON (id) * FROM records
                           WHERE round = ? AND status = 'candidate' AND origin = 'synthetic'
                           ORDER BY id, generation)
            ORDER BY id"""
        queries = [(out["candidates"], candidates, [round])]
        if reservoir:
            out["reservoir"] = directory / "reservoir"
            queries.append((out["reservoir"], *self._reservoir_sql("train", None)))
        if earlier:
            out["earlier"] = directory / "earlier"
            earlier_sql = """
                SELECT id, content, 'generation ' || generation::VARCHAR || ' synthetic' AS "set",
                       generation, round
                FROM records WHERE origin = 'synthetic' AND status = 'accepted' AND round < ?
                ORDER BY round, origin, id, generation"""
            queries.append((out["earlier"], earlier_sql, [round]))
        for name, table in (references or {}).items():
            for col in ("id", "content"):
                if col not in table.column_names:
                    raise InputError(f"reference set {name!r} has no {col!r} column", field=col)
        named = {}
        for i, name in enumerate(references or {}):
            named[name] = directory / "references" / f"{i}-{quote(name, safe='')}"
            sql = f'SELECT id::VARCHAR AS id, content::VARCHAR AS content, ? AS "set" FROM ref_{i}'
            queries.append((named[name], sql + " ORDER BY given", [name]))
        if references is not None:
            out["references"] = named
            shutil.rmtree(directory / "references", ignore_errors=True)
        try:
            for i, table in enumerate((references or {}).values()):
                given = pa.array(np.arange(table.num_rows, dtype=np.int64))
                self.con.register(
                    f"ref_{i}", table.select(["id", "content"]).append_column("given", given)
                )
            for path, sql, params in queries:
                if path.exists():
                    shutil.rmtree(path)
                path.mkdir(parents=True)
                self.con.execute(
                    f"COPY (SELECT (row_number() OVER () - 1)::BIGINT AS pos, * FROM ({sql})) "
                    f"TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE {int(rows_per_file)}, "
                    "ROW_GROUPS_PER_FILE 1, OVERWRITE_OR_IGNORE)",
                    params,
                )
        finally:
            for i in range(len(named)):
                self.con.unregister(f"ref_{i}")
        return out

    def training_pool(
        self,
        round: int,  # noqa: A002
        *,
        reservoir: str | None = None,
        text: bool = True,
    ) -> pa.Table:
        """What round ``round`` may train on: id, origin, generation, label, round, source,
        content (left out with ``text=False``: planning needs none, and at a million
        records the texts are most of the bytes moved and sorted).

        The reservoir's training split; human records ingested after the freeze
        (fresh data) up to this round; every accepted synthetic record up to this
        round. Never a holdout id, in any origin.
        """
        res = self.reservoir(reservoir)
        return self.con.sql(
            """
            WITH holdout AS (SELECT id FROM reservoir_members WHERE name = ? AND split='holdout'),
                 anchored AS (SELECT id FROM reservoir_members WHERE name = ? AND split='train')
            SELECT * FROM (
                SELECT DISTINCT ON (id, origin)
                    id, origin, generation, label, round, source"""
            + (", content" if text else "")
            + """
                FROM records r
                WHERE id NOT IN (SELECT id FROM holdout) AND round <= ? AND (
                    (origin = 'human' AND status <> 'quarantined'
                     AND (id IN (SELECT id FROM anchored) OR round >= 1))
                    OR (origin = 'synthetic' AND status = 'accepted'))
                ORDER BY id, origin, generation, round)
            ORDER BY id, origin
            """,
            params=[res.name, res.name, round],
        ).to_arrow_table()

    # ------------------------------------------------------------------ quarantine
    def quarantine(self, flagged: pa.Table) -> int:
        """Quarantine human records (``id``, ``code``, ``detail``, ``score``, ``matched_id``).

        Their status becomes ``quarantined`` (kept, never deleted): a reservoir freeze
        and the training pool skip them until :meth:`release_quarantined`. Each call is logged.
        """
        return self._quarantine_action(flagged, "quarantine", "accepted", "quarantined")

    def release_quarantined(
        self, ids: list[str] | pa.Array, *, detail: str = "released by hand"
    ) -> int:
        """Release quarantined records back to ``accepted`` (logged, like the quarantine)."""
        ids = pa.array(ids, pa.string())
        n = len(ids)
        table = pa.table(
            {
                "id": ids,
                "code": pa.repeat(pa.scalar("released"), n),
                "detail": pa.repeat(pa.scalar(detail), n),
                "score": pa.nulls(n, pa.float64()),
                "matched_id": pa.nulls(n, pa.string()),
            }
        )
        return self._quarantine_action(table, "release", "quarantined", "accepted")

    def _quarantine_action(self, table: pa.Table, action: str, old: str, new: str) -> int:
        for col in ("id", "code", "detail", "score", "matched_id"):
            if col not in table.column_names:
                raise InputError(f"the {action} table needs a {col!r} column", field=col)
        self._checked.clear()
        with self._transaction() as con:
            con.register("moving", table.select(["id", "code", "detail", "score", "matched_id"]))
            unknown = con.execute(
                "SELECT min(id), count(*) FROM moving WHERE id NOT IN "
                "(SELECT id FROM records WHERE origin = 'human' AND status = ?)",
                [old],
            ).fetchall()[0]
            if unknown[1]:
                raise InputError(
                    f"{unknown[1]} id(s) are not {old} human records (e.g. {unknown[0]}); "
                    f"nothing was changed",
                    field="id",
                )
            n = con.execute(
                "UPDATE records SET status = ? WHERE origin = 'human' AND status = ? "
                "AND id IN (SELECT id FROM moving)",
                [new, old],
            ).fetchall()[0][0]
            _do(
                con,
                "INSERT INTO quarantine_log SELECT id, ?, code, detail, score, matched_id, ? "
                "FROM moving",
                [action, dt.datetime.now(dt.UTC)],
            )
            con.unregister("moving")
        return n

    def quarantined(self) -> pa.Table:
        """Records now quarantined, with the reason, score and match of their quarantine.

        Screened human records and the synthetic records a rollback set aside (code
        ``rolled_back``, one row per id and generation); ``origin`` tells them apart.
        """
        return self.con.sql(
            f"""
            SELECT r.id, r.origin, r.generation, r.content, r.source, r.round, q.code,
                   q.detail, q.score, q.matched_id, q.logged_at AS quarantined_at
            FROM (SELECT DISTINCT ON (id, origin, generation) * FROM records
                  WHERE status = 'quarantined' ORDER BY id, origin, generation, round) r
            JOIN (SELECT DISTINCT ON (id, rolled) *, code = '{_rollback.ROLLED_BACK_CODE}'
                         AS rolled
                  FROM quarantine_log WHERE action = 'quarantine'
                  ORDER BY id, rolled, logged_at DESC) q
              ON q.id = r.id AND q.rolled = (r.origin = 'synthetic')
            ORDER BY r.origin, r.id, r.generation
            """
        ).to_arrow_table()

    # ------------------------------------------------------------------ rollback
    def rollback(
        self,
        to_round: int,
        *,
        reason: str = "",
        run: str | None = None,
    ) -> Rollback:
        """Go back to round ``to_round`` of ``run``: quarantine every synthetic record of
        generations after it and mark the run's later rounds rolled back.

        Nothing is deleted: the records keep their rows (status ``quarantined``, code
        ``rolled_back`` in :meth:`quarantine_log`, releasable with
        :meth:`release_rolled_back`), the later rounds' manifests and metrics stay as
        history, marked in :meth:`rollbacks`. The training pool, the loop and the audit
        read the marks: the next round gets the next new number, plans from the clean
        state and retrains round ``to_round``'s model. Refused (a
        :class:`~tailguard.errors.ConfigError`, nothing changed) for a round that is
        negative, has no manifest, was rolled back, or is the run's latest. ``run=None``
        is the ledger's one run with manifests (several: name one).
        """
        self._forget("rolled")
        with self._transaction() as con:
            return _rollback.rollback(con, to_round, run=run, reason=reason, who=_who())

    def rollbacks(self, run: str | None = None) -> pa.Table:
        """Every rollback, oldest first (``run`` only, if given): append-only history."""
        if not self._has_table("rollbacks"):
            return pa.table({})  # a ledger of an earlier version opened read-only
        return _rollback.history(self.con, run)

    def rolled_back_rounds(self, run: str | None = "main") -> list[int]:
        """Rounds of ``run`` (``None``: of every run) a rollback set aside, ascending."""
        if not self._has_table("rollbacks"):
            return []
        rounds = self._fact(("rolled", run), lambda: _rollback.rolled_back_rounds(self.con, run))
        return list(rounds)

    def release_rolled_back(
        self, ids: list[str] | pa.Array, *, detail: str = "released by hand"
    ) -> int:
        """Give rolled-back synthetic records their status from before the rollback back."""
        self._forget("rolled")
        with self._transaction() as con:
            return _rollback.release(con, pa.array(ids, pa.string()), detail=detail)

    def quarantine_log(self) -> pa.Table:
        """Every quarantine and release, oldest first (append-only)."""
        return self.con.sql("SELECT * FROM quarantine_log ORDER BY logged_at, id").to_arrow_table()

    # ------------------------------------------------------------------ verdicts
    def record_gate(
        self,
        round: int,
        verdicts: pa.Table,
        *,
        accepted: Any,
        rejected: Any,  # noqa: A002
    ) -> None:
        """Store a gate run's verdicts and move its candidates, in one transaction.

        Re-recording a round's verdicts for the same records replaces them, so a
        gate step that is run again after a crash leaves no duplicates.
        """
        table = _conform(verdicts, VERDICT_SCHEMA, "verdicts")
        ok, no = pa.array(accepted, pa.string()), pa.array(rejected, pa.string())
        moves = pa.table(
            {
                "id": pa.concat_arrays([ok, no]),
                "status": pa.concat_arrays(
                    [
                        pa.repeat(pa.scalar(Status.ACCEPTED.value), len(ok)),
                        pa.repeat(pa.scalar(Status.REJECTED.value), len(no)),
                    ]
                ),
            }
        )
        with self._transaction() as con:
            con.register("v", table)
            con.register("moves", moves)
            _do(con, "DELETE FROM verdicts WHERE round = ? AND id IN (SELECT id FROM v)", [round])
            cols = ", ".join(VERDICT_SCHEMA.names)
            _do(con, f"INSERT INTO verdicts ({cols}) SELECT {cols} FROM v")
            _do(
                con,
                # one status per id; 'accepted' sorts first and wins, as it always did
                "UPDATE records SET status = m.status FROM (SELECT DISTINCT ON (id) id, status "
                "FROM moves ORDER BY id, status) m WHERE records.id = m.id "
                "AND records.origin = 'synthetic' AND records.round = ? "
                "AND records.status = 'candidate'",
                [round],
            )
            for name in ("v", "moves"):
                con.unregister(name)

    def record_gate_parquet(self, round: int, path: str | Path) -> dict[str, int]:  # noqa: A002
        """Store verdict shards (``tailguard.gate.distributed``) and move the candidates,
        in one transaction, as :meth:`record_gate` does for an in-memory table.

        A candidate is accepted when every verdict on it passed. DuckDB reads the
        shards directly. Returns the verdicts, accepted and rejected counted.
        """
        files = sorted(str(p) for p in Path(path).rglob("*.parquet"))
        if not files:
            raise InputError("no verdict shards (*.parquet) found", file=str(path))
        cols = [f.name for f in VERDICT_SCHEMA if f.name != "round"]
        with self._transaction() as con:
            listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
            con.execute(
                "CREATE OR REPLACE TEMP VIEW shard_verdicts AS "
                f"SELECT {', '.join(cols)} FROM read_parquet([{listed}])"
            )
            _do(
                con,
                "DELETE FROM verdicts WHERE round = ? AND id IN (SELECT id FROM shard_verdicts)",
                [round],
            )
            names = ", ".join(VERDICT_SCHEMA.names)
            select = ", ".join("?::INTEGER" if c == "round" else c for c in VERDICT_SCHEMA.names)
            _do(
                con,
                f"INSERT INTO verdicts ({names}) SELECT {select} FROM shard_verdicts",
                [round],
            )
            con.execute(
                "CREATE OR REPLACE TEMP TABLE shard_decisions AS SELECT id, bool_and(passed) "
                "AS ok FROM shard_verdicts GROUP BY id"
            )
            _do(
                con,
                "UPDATE records SET status = CASE WHEN d.ok THEN 'accepted' ELSE 'rejected' END "
                "FROM shard_decisions d WHERE records.id = d.id AND records.origin = 'synthetic' "
                "AND records.round = ? AND records.status = 'candidate'",
                [round],
            )
            counts = con.execute(
                "SELECT (SELECT count(*) FROM shard_verdicts), count(*) FILTER (WHERE ok), "
                "count(*) FILTER (WHERE NOT ok) FROM shard_decisions"
            ).fetchall()[0]
            con.execute("DROP TABLE shard_decisions")
            con.execute("DROP VIEW shard_verdicts")
        return {"verdicts": counts[0], "accepted": counts[1], "rejected": counts[2]}

    def verdicts(self, *, id: str | None = None, round: int | None = None) -> pa.Table:  # noqa: A002
        where, params = self._filters(id=id, round=round)
        sql = f"SELECT * FROM {_verdict_rows(self.con)}" + (
            " WHERE " + " AND ".join(where) if where else ""
        )
        return self.con.sql(sql + " ORDER BY round, id, verifier", params=params).to_arrow_table()

    def gate_summary(self) -> pa.Table:
        """Per round and verifier: records seen and passed (the report's pass rates)."""
        return self.con.sql(
            "SELECT round, verifier, count(*) AS records, count(*) FILTER (WHERE passed) AS passed "
            "FROM verdicts GROUP BY ALL ORDER BY round, verifier"
        ).to_arrow_table()

    def rejection_reasons(self, *, top: int | None = None) -> pa.Table:
        """Failed verdicts counted by verifier and reason code, most frequent first.

        The same grouping as :meth:`GateResult.reasons`, so the ``tailguard gate``
        summary and the report count one ledger's rejections alike.
        """
        limit = "" if top is None else f" LIMIT {int(top)}"
        return self.con.sql(
            f"""
            SELECT verifier, code, count(*) AS count
            FROM {_verdict_rows(self.con)} WHERE NOT passed
            GROUP BY ALL ORDER BY count DESC, verifier, code
            {limit}
            """
        ).to_arrow_table()

    # ------------------------------------------------------------------ verifier audits
    def record_audits(self, audits: pa.Table) -> int:
        """Append one row per audited verifier (:data:`AUDIT_SCHEMA`): a verifier's
        measured quality is history, so a new audit never replaces an old one."""
        audits = _conform(audits, AUDIT_SCHEMA, "verifier audits")
        if audits.num_rows == 0:
            return 0
        now, who = dt.datetime.now(dt.UTC), _who()
        stamped = audits.append_column(
            "audited_at", pa.array([now] * audits.num_rows, pa.timestamp("us", tz="UTC"))
        ).append_column("audited_by", pa.array([who] * audits.num_rows, pa.string()))
        with self._transaction() as con:
            con.register("_audits", stamped)
            try:
                _do(con, "INSERT INTO verifier_audits SELECT * FROM _audits")
            finally:
                con.unregister("_audits")
        return audits.num_rows

    def verifier_audits(self, *, latest: bool = False) -> pa.Table:
        """Every verifier audit, oldest first; ``latest``: each verifier's newest only."""
        if not self._has_table("verifier_audits"):
            return _audit_rows().empty_table()  # a ledger of an earlier version, read-only
        sql = "SELECT * FROM verifier_audits"
        if latest:
            sql += " QUALIFY row_number() OVER (PARTITION BY verifier ORDER BY audited_at DESC) = 1"
        return self.con.sql(sql + " ORDER BY audited_at, verifier").to_arrow_table()

    # ------------------------------------------------------------------ manifests
    def write_manifest(self, manifest: Manifest) -> str:
        """Store a round's manifest after checking every slot may be trained on.

        Refused (nothing written) if a slot holds a holdout id, a human id that is
        neither in the reservoir nor fresh human data, or a synthetic id that the
        gate has not accepted. Replaces an earlier manifest of the same run and round
        only until the round is trained on (a later stage, metrics or a later round
        exist); the replaced digest is kept in :meth:`history`.
        """
        check_round(manifest.round)
        slots = manifest.slots.select(MANIFEST_SLOTS.names).cast(MANIFEST_SLOTS)
        res = self.reservoir()  # (checked: its id sets are the stored ones)
        ids, human = slots["id"], pc.equal(slots["origin"], Origin.HUMAN.value)
        held = pc.is_in(ids, value_set=res.holdout_ids)
        if pc.any(held).as_py():
            at = pc.index(held, True).as_py()
            self._refuse_slot(manifest, slots, at, "is in the reservoir holdout")
        # Reservoir training ids pass as they are; the rest must be fresh human data or
        # accepted synthetic records (one anti-join, with the previous digest alongside).
        rest = slots.filter(
            pc.invert(pc.and_(human, pc.is_in(ids, value_set=res.train_ids)))
        ).select(["id", "origin"])
        with self._transaction() as con:
            con.register("slots", slots)
            con.register("unanchored", rest)
            bad, previous = con.execute(
                """
                SELECT (SELECT (s.id, s.origin) FROM unanchored s ANTI JOIN records r
                        ON r.id = s.id AND r.origin = s.origin
                        AND ((r.origin = 'synthetic' AND r.status = 'accepted')
                             OR (r.origin = 'human' AND r.round >= 1)) LIMIT 1),
                       (SELECT digest FROM manifests WHERE run = $run AND round = $round)
                """,
                {"run": manifest.run, "round": manifest.round},
            ).fetchall()[0]
            con.unregister("unanchored")
            if bad:
                con.unregister("slots")
                why = (
                    "is not a reservoir or fresh human record"
                    if bad[1] == Origin.HUMAN.value
                    else "is not an accepted synthetic record"
                )
                self._refuse_slot(manifest, slots, pc.index(ids, bad[0]).as_py(), why)
            digest = manifest.digest
            if previous is not None:
                self._refuse_rewrite(con, "manifest", manifest.run, manifest.round)
                if previous != digest:
                    self._log(
                        con,
                        "manifest",
                        run=manifest.run,
                        round=manifest.round,
                        old=previous,
                        new=digest,
                        reason="re-planned before training",
                    )
                _do(
                    con,
                    "DELETE FROM manifests WHERE run = ? AND round = ?",
                    [manifest.run, manifest.round],
                )
                _do(
                    con,
                    "DELETE FROM manifest_slots WHERE run = ? AND round = ?",
                    [manifest.run, manifest.round],
                )
            _do(
                con,
                "INSERT INTO manifest_slots SELECT ?, ?, row_number() OVER () - 1, "
                "batch, id, origin, generation, label FROM slots",
                [manifest.run, manifest.round],
            )
            _do(
                con,
                "INSERT INTO manifests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    manifest.run,
                    manifest.round,
                    manifest.policy,
                    json.dumps(manifest.params, sort_keys=True, default=str),
                    manifest.seed,
                    digest,
                    manifest.n_batches,
                    slots.num_rows,
                    dt.datetime.now(dt.UTC),
                ],
            )
            con.unregister("slots")
        return digest

    @staticmethod
    def _refuse_slot(manifest: Manifest, slots: pa.Table, at: int, why: str) -> None:
        raise InputError(
            f"manifest for round {manifest.round} refused: {slots['origin'][at].as_py()} id "
            f"{slots['id'][at].as_py()} {why}"
        )

    def manifest(self, round: int, run: str = "main") -> Manifest:  # noqa: A002
        """Read a stored manifest back; its digest is checked against the stored one."""
        head = self.con.execute(
            "SELECT policy, params, seed, digest FROM manifests WHERE run = ? AND round = ?",
            [run, round],
        ).fetchall()
        head = head[0] if head else None
        if head is None:
            raise TailguardError(f"no manifest for round {round} (run {run!r})")
        slots = (
            self.con.sql(
                "SELECT batch, id, origin, generation, label FROM manifest_slots "
                "WHERE run = ? AND round = ? ORDER BY pos",
                params=[run, round],
            )
            .to_arrow_table()
            .cast(MANIFEST_SLOTS)
        )
        manifest = Manifest(
            round=round,
            slots=slots,
            policy=head[0],
            params=json.loads(head[1]),
            seed=head[2],
            run=run,
        )
        if manifest.digest != head[3]:
            raise TailguardError(
                f"manifest of round {round} was altered outside tailguard (digest mismatch)"
            )
        return manifest

    def manifests(self, run: str = "main") -> list[int]:
        rows = self.con.execute(
            "SELECT round FROM manifests WHERE run = ? ORDER BY round", [run]
        ).fetchall()
        return [r[0] for r in rows]

    def manifest_records(
        self,
        round: int,  # noqa: A002
        run: str = "main",
        *,
        checked: Manifest | None = None,
    ) -> pa.Table:
        """The training set of a round in training order, with full provenance.

        The stored manifest's digest is checked first, unless ``checked`` is that
        manifest as :meth:`manifest` just read (and checked) it.
        """
        if checked is None or (checked.round, checked.run) != (round, run):
            self.manifest(round, run)  # digest check
        return self.con.sql(
            """
            SELECT s.batch, s.pos, r.* FROM manifest_slots s
            JOIN records r
              ON r.id = s.id AND r.origin = s.origin AND r.generation = s.generation
            WHERE s.run = ? AND s.round = ?
            -- the first occurrence per slot: joining first dedupes the slots' rows only,
            -- not the whole records table (half the CPU at 200k records)
            QUALIFY row_number() OVER (
                PARTITION BY s.pos ORDER BY r.round, r.source, r.generator) = 1
            ORDER BY s.pos
            """,
            params=[run, round],
        ).to_arrow_table()

    def round_summary(self, run: str | None = "main") -> pa.Table:
        """Per run and round: the one definition of a round's composition.

        ``total``, ``human`` and ``synthetic`` slots of the manifest, ``human_share``,
        ``reservoir_share`` (slots from the reservoir's train split), ``traceable``
        (slots whose id, origin and generation are in ``records``), ``new_human``
        (human ids used for the first time in this run), ``bought`` (those of them not
        in the reservoir's train split: the human data a round bought), ``generated`` (synthetic
        records of the round), ``verified`` (ids the gate ruled on) and
        ``rolled_back`` (a rollback set the round aside: history, not the live
        lineage). ``audit``, the report and the lab all read it; ``run=None`` covers
        every run.
        """
        reservoir_name = self.reservoir().name if self.has_reservoir() else ""
        rolled = (
            "SELECT DISTINCT run, unnest(rounds) AS round FROM rollbacks"
            if self._has_table("rollbacks")
            else "SELECT NULL::VARCHAR AS run, NULL::INTEGER AS round WHERE false"
        )
        return self.con.sql(
            f"""
            WITH slots AS (SELECT * FROM manifest_slots WHERE ? IS NULL OR run = ?),
            traced AS (
                SELECT s.run, s.round, count(*) AS total,
                       count(*) FILTER (WHERE s.origin = 'human') AS human,
                       count(*) FILTER (WHERE s.origin = 'synthetic') AS synthetic,
                       human / total AS human_share,
                       count(m.id) / total AS reservoir_share,
                       count(r.id) AS traceable
                FROM slots s
                LEFT JOIN (SELECT id FROM reservoir_members WHERE name = ? AND split = 'train') m
                  ON m.id = s.id AND s.origin = 'human'
                LEFT JOIN (
                    SELECT DISTINCT id, origin, generation FROM records
                    WHERE source IS NOT NULL AND origin IS NOT NULL) r
                  ON r.id = s.id AND r.origin = s.origin AND r.generation = s.generation
                GROUP BY s.run, s.round),
            train_split AS (
                SELECT id FROM reservoir_members WHERE name = ? AND split = 'train'),
            first_use AS (
                SELECT run, id, min(round) AS round FROM slots WHERE origin = 'human'
                GROUP BY run, id),
            new_human AS (
                SELECT run, round, count(*) AS new_human,
                       count(*) FILTER (WHERE id NOT IN (SELECT id FROM train_split)) AS bought
                FROM first_use GROUP BY ALL),
            generated AS (
                SELECT round, count(*) AS generated FROM records
                WHERE origin = 'synthetic' GROUP BY round),
            verified AS (
                SELECT round, count(DISTINCT id) AS verified FROM {_verdict_rows(self.con)}
                WHERE verifier <> 'none' GROUP BY round),
            rolled AS ({rolled})
            SELECT t.run, t.round, t.total, t.human, t.synthetic, t.human_share,
                   t.reservoir_share, t.traceable,
                   coalesce(n.new_human, 0) AS new_human,
                   coalesce(n.bought, 0) AS bought,
                   coalesce(g.generated, 0) AS generated,
                   coalesce(v.verified, 0) AS verified,
                   b.round IS NOT NULL AS rolled_back
            FROM traced t LEFT JOIN new_human n USING (run, round)
            LEFT JOIN generated g USING (round) LEFT JOIN verified v USING (round)
            LEFT JOIN rolled b ON b.run = t.run AND b.round = t.round
            ORDER BY t.run, t.round
            """,
            params=[run, run, reservoir_name, reservoir_name],
        ).to_arrow_table()

    def audit(self, *, floor: float = AUDIT_FLOOR, run: str | None = None) -> pa.Table:
        """Per round: human and synthetic counts and shares, by generation, and the alarm.

        ``flagged`` marks a live round whose human share is below ``floor``: real data
        was silently substituted by synthetic data. ``rolled_back`` marks a round a
        rollback set aside (shown, never flagged: its model was discarded). The counts
        are :meth:`round_summary`'s.
        """
        floor = check_fraction(floor, "the audit floor", zero=True)
        summary = self.round_summary(run)
        cols = ["run", "round", "total", "human", "synthetic", "human_share", "reservoir_share"]
        below = pc.less(summary["human_share"], floor)
        table = (
            summary.select(cols)
            .append_column("flagged", pc.and_(below, pc.invert(summary["rolled_back"])))
            .append_column("rolled_back", summary["rolled_back"])
        )
        by_gen: dict[tuple[str, int], dict[str, int]] = {}
        for r, rnd, gen, n in self.con.execute(
            "SELECT run, round, generation, count(*) FROM manifest_slots "
            "WHERE origin = 'synthetic' AND (? IS NULL OR run = ?) GROUP BY ALL ORDER BY ALL",
            [run, run],
        ).fetchall():
            by_gen.setdefault((r, rnd), {})[str(gen)] = n
        keys = zip(table.column("run").to_pylist(), table.column("round").to_pylist(), strict=True)
        return table.append_column(
            "by_generation", pa.array([json.dumps(by_gen.get(k, {})) for k in keys], pa.string())
        )

    # ------------------------------------------------------------------ metrics, dial, stages
    def write_metrics(self, table: pa.Table) -> None:
        """Store metric rows: see METRIC_SCHEMA.

        Rows of the same run, round and sample are replaced only until a later round
        of the run exists (the replacement is logged in :meth:`history`); after that,
        refused: evaluate under another ``sample`` name or in a new run.
        """
        rows = _conform(table, METRIC_SCHEMA, "metric rows")
        if rows.num_rows and pc.min(rows["round"]).as_py() < 0:
            raise InputError("metric rows refused: rounds must be >= 0", field="round")
        replaced = self._cached_groups(rows)
        self._forget("metrics")
        with self._transaction() as con:
            con.register("m", rows)
            if replaced is None:
                replaced = con.execute(
                    "SELECT DISTINCT run, round, sample FROM metrics SEMI JOIN (SELECT DISTINCT "
                    "run, round, sample FROM m) USING (run, round, sample) ORDER BY ALL"
                ).fetchall()
            for run, rnd, sample in replaced:
                try:
                    self._refuse_rewrite(con, "metrics", run, rnd)
                except InputError:
                    con.unregister("m")
                    raise
                self._log(con, "metrics", run=run, round=rnd, key=sample, reason="re-evaluated")
            if replaced:
                _do(
                    con,
                    "DELETE FROM metrics WHERE (run, round, sample) IN "
                    "(SELECT DISTINCT run, round, sample FROM m)",
                )
            _do(con, "INSERT INTO metrics SELECT * FROM m")
            con.unregister("m")

    def _cached_groups(self, rows: pa.Table) -> list[tuple[str, int, str]] | None:
        """The (run, round, sample) groups of ``rows`` the ledger holds already, from the
        runs' metrics read on this connection; None when one of them was not read."""
        groups = set(zip(*(rows[c].to_pylist() for c in ("run", "round", "sample")), strict=True))
        held = [self._facts.get(("metrics", run)) for run in {g[0] for g in groups}]
        if any(table is None for table in held):
            return None
        have = {
            g
            for table in held
            for g in zip(*(table[c].to_pylist() for c in ("run", "round", "sample")), strict=True)
        }
        return sorted(groups & have)

    @staticmethod
    def _refuse_rewrite(
        con: duckdb.DuckDBPyConnection,
        what: str,
        run: str,
        rnd: int,
    ) -> None:
        """Refuse to replace ``what`` of a round once a later stage of the run exists."""
        train = ("train", "evaluate") if what == "manifest" else ()
        later = con.execute(
            """
            SELECT 'stage ' || stage || ' of round ' || round FROM stages
             WHERE run = $run
               AND (round > $round OR (round = $round AND list_contains($train, stage)))
            UNION ALL SELECT 'the manifest of round ' || round FROM manifests
             WHERE run = $run AND round > $round
            UNION ALL SELECT 'metrics of round ' || round FROM metrics
             WHERE run = $run AND (round > $round OR ($manifest AND round = $round))
            LIMIT 1
            """,
            {"run": run, "round": rnd, "train": list(train), "manifest": what == "manifest"},
        ).fetchall()
        if later:
            raise InputError(
                f"the {what} of round {rnd} (run {run!r}) cannot be replaced: {later[0][0]} "
                "already exists and history is append-only; use a new run name",
                field="round",
            )

    def metrics(self, run: str | None = None) -> pa.Table:
        where, params = self._filters(run=run)
        sql = "SELECT * FROM metrics" + (" WHERE " + " AND ".join(where) if where else "")
        return self._fact(
            ("metrics", run),
            lambda: (
                self.con.sql(sql + " ORDER BY run, round, sample, metric", params=params)
                .to_arrow_table()
                .cast(METRIC_SCHEMA)
            ),
        )

    def write_decision(
        self,
        *,
        run: str = "main",
        round: int,
        real_fraction: float,
        reason: str,  # noqa: A002
        evidence: dict[str, Any] | list[Any] | None = None,
    ) -> None:
        """Store one dial decision with the reason and the evidence it read."""
        held = self._facts.get(("decisions", run))
        fresh = held is not None and round not in set(held["round"].to_pylist())
        self._forget("decisions")
        with self._transaction() as con:
            if not fresh:  # (replaces the round's decision, if it has one)
                _do(con, "DELETE FROM decisions WHERE run = ? AND round = ?", [run, round])
            _do(
                con,
                "INSERT INTO decisions VALUES (?, ?, ?, ?, ?)",
                [
                    run,
                    round,
                    real_fraction,
                    reason,
                    json.dumps(evidence, sort_keys=True, default=str),
                ],
            )

    def decisions(self, run: str | None = None) -> pa.Table:
        where, params = self._filters(run=run)
        sql = "SELECT * FROM decisions" + (" WHERE " + " AND ".join(where) if where else "")
        return self._fact(
            ("decisions", run),
            lambda: self.con.sql(sql + " ORDER BY run, round", params=params).to_arrow_table(),
        )

    def mark_stage(
        self,
        run: str,
        round: int,  # noqa: A002
        stage: str,
        *,
        at: dt.datetime | None = None,
    ) -> None:
        """Record that a loop stage finished (what ``--resume`` reads), ``at`` (default: now)."""
        _do(
            self.con,
            "INSERT INTO stages VALUES (?, ?, ?, ?)",
            [run, round, stage, at or dt.datetime.now(dt.UTC)],
        )

    def stages(self, run: str = "main") -> pa.Table:
        return self.con.sql(
            "SELECT round, stage, finished_at FROM stages WHERE run = ? "
            "ORDER BY finished_at, round",
            params=[run],
        ).to_arrow_table()

    def last_stage(self, run: str = "main") -> tuple[int, str] | None:
        row = self.con.execute(
            "SELECT round, stage FROM stages WHERE run = ? "
            "ORDER BY finished_at DESC, round DESC LIMIT 1",
            [run],
        ).fetchall()
        row = row[0] if row else None
        return None if row is None else (row[0], row[1])


def _do(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> None:
    """Run a statement to completion (DuckDB wants every result consumed)."""
    con.execute(sql, params or []).fetchall()


class _Transaction:
    """``with`` block around one DuckDB transaction: commit on success, else roll back.

    Nested in another block of the same ledger (:meth:`Ledger.atomic`), it joins the
    outer transaction; a failure inside dooms the outer one, which then rolls back.
    """

    def __init__(self, ledger: Ledger) -> None:
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


def _conform(table: pa.Table, schema: pa.Schema, what: str) -> pa.Table:
    """``table``'s columns of ``schema``, in order and type, or a clear error saying why not."""
    try:
        return table.select(schema.names).cast(schema)
    except (KeyError, pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as exc:
        raise InputError(f"{what} do not match the expected columns {schema.names}: {exc}") from exc


def _reservoir_digest(members: pa.Table) -> str:
    """sha256 over the member ids in sorted order, one ``split:id`` line each (in SQL)."""
    with scratch() as con:
        con.register("members", members.select(["id", "split"]))
        return con.sql(
            "SELECT sha256(coalesce(string_agg(split || ':' || id, chr(10) ORDER BY id), '')) "
            "FROM members"
        ).fetchall()[0][0]


def _fixed_width(words: pa.Array, width: int, kind: str) -> np.ndarray:
    """Stored lists of 64-bit words, all holding ``width`` bytes, as a ``(n, width)`` uint8
    array."""
    n_words = -(-width // 8)
    offsets = words.offsets.to_numpy()
    if not (np.diff(offsets) == n_words).all():
        raise TailguardError(f"stored fingerprints of {kind!r} are not {width} bytes each")
    flat = words.values.to_numpy()[offsets[0] : offsets[-1]]
    return flat.view(np.uint8).reshape(len(words), n_words * 8)[:, :width]


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__


def check_ledger_file(path: Path) -> None:
    """Refuse, with what it is, a file that is not a whole DuckDB database.

    Checked before DuckDB opens it: a foreign file would otherwise open and fail in
    the middle of a query, and a SQLite file would make DuckDB reach for an extension.
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
    if size < _DUCKDB_HEADER or (size - _DUCKDB_HEADER) % _DUCKDB_BLOCK:
        raise TailguardError(
            f"{path} is a truncated DuckDB database ({size:,} bytes is not a whole number "
            "of blocks): restore the ledger from a backup"
        )


def _who() -> str:
    """``user@host`` for the history table (who replaced or corrected something)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def check_round(value: int, what: str = "round") -> int:
    """Rounds (and generations) are whole numbers >= 0 everywhere in the ledger."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise InputError(f"{what} must be a whole number >= 0, got {value!r}", field=what)
    if value > INT32_MAX:  # the ledger's INTEGER columns
        raise InputError(f"{what} must be at most {INT32_MAX:,}, got {value:,}", field=what)
    return int(value)


def _content_digest(con: duckdb.DuckDBPyConnection, name: str) -> str:
    """Digest version 2: sha256 over one JSON line per member, in id order.

    A line holds the member's split, id and frozen label, and its record's label,
    source, round, status and the sha256 of its normalised content (the record read
    as the reservoir's, the first by round and source), so any edit of what the
    reservoir stands for changes it, whitespace included.

    The lines stream out of DuckDB in batches and are hashed as they come (each
    batch's string buffer holds its lines back to back), so memory stays flat at a
    million members; the digest is the sha256 of the lines joined by newlines.
    """
    reader = con.sql(
        """
        WITH r AS (SELECT DISTINCT ON (id) * FROM records WHERE origin = 'human'
                   ORDER BY id, round, source)
        SELECT to_json([m.split, m.id, m.label, r.label, r.source, r.round::VARCHAR, r.status,
                        sha256(r.content)])::VARCHAR || chr(10) AS line
        FROM reservoir_members m LEFT JOIN r ON r.id = m.id WHERE m.name = ? ORDER BY m.id
        """,
        params=[name],
    ).to_arrow_reader(_DIGEST_BATCH)
    digest = hashlib.sha256()
    held = b""  # the newline after the last line is not part of the digest
    for batch in reader:
        lines = batch.column(0)
        if pa.types.is_large_string(lines.type):
            lines = lines.cast(pa.string())
        offsets = np.frombuffer(lines.buffers()[1], np.int32)
        lo, hi = int(offsets[lines.offset]), int(offsets[lines.offset + len(lines)])
        if hi > lo:
            digest.update(held)
            data = memoryview(lines.buffers()[2])[lo:hi]
            digest.update(data[:-1])
            held = bytes(data[-1:])
    return digest.hexdigest()


#: Stored fingerprints read per batch by :meth:`Ledger.fingerprints`.
_FINGERPRINT_BATCH = 65_536

#: Member lines hashed per batch by :func:`_content_digest`.
_DIGEST_BATCH = 100_000
