"""The provenance ledger: every example, where it came from, and what was done with it.

A DuckDB file (``:memory:`` for tests and the lab) holds the records, the frozen
human reservoir, the gate's verdicts, each round's training manifest, the metric
history and the dial's decisions. Writes go in as Arrow tables inside one
transaction: a write lands whole or not at all.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tailguard.errors import InputError, ReservoirError, TailguardError, check_fraction
from tailguard.readers import read_table
from tailguard.records import (
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
"""

#: How content ids are recomputed inside DuckDB (content is stored normalised).
_SQL_CONTENT_ID = "md5(regexp_replace(content, '\\s+', ' ', 'g'))"

VERDICT_SCHEMA = VERDICT_ROWS

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


@dataclass(frozen=True)
class IngestResult:
    """What one ingest did: rows read, rows new to the ledger, rows already there."""

    read: int
    added: int
    existing: int

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

    def __init__(self, con: duckdb.DuckDBPyConnection, path: str) -> None:
        self.con = con
        self.path = path
        self._verified: dict[str, tuple[Any, ...]] = {}

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def open(cls, path: str | Path = ":memory:", *, read_only: bool = False) -> Ledger:
        """Open (or create) a ledger; ``":memory:"`` keeps it in this process only."""
        target = str(path)
        if target != ":memory:":
            p = Path(target)
            if read_only and not p.exists():
                raise TailguardError(f"no ledger at {p}")
            p.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = duckdb.connect(target, read_only=read_only)
        except duckdb.Error as exc:
            raise TailguardError(f"cannot open ledger {target}: {exc}") from exc
        if not read_only:
            _do(con, _DDL)
            _migrate(con)
        # Row order is kept by explicit ORDER BY everywhere, so let inserts run in parallel.
        _do(con, "SET preserve_insertion_order = false")
        return cls(con, target)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _transaction(self) -> _Transaction:
        return _Transaction(self.con)

    # ------------------------------------------------------------------ records
    def ingest(
        self,
        data: str | Path | pa.Table | Any,
        *,
        origin: Origin | str,
        source_name: str | None = None,
        generator: str | None = None,
        generation: int = 0,
        round: int = 0,  # noqa: A002 - the schema's name
        text_field: str = "text",
        label_field: str | None = None,
        parent_field: str | None = None,
        status: Status | str | None = None,
    ) -> IngestResult:
        """Ingest a file (JSONL, Parquet, CSV) or a table (Arrow, pandas, HF ``datasets``).

        Content-addressed: rows whose content and provenance are already in the
        ledger are counted as ``existing`` and not added again. All or nothing.
        """
        table, name = read_table(
            data, text_field=text_field, label_field=label_field, parent_field=parent_field
        )
        origin, status = resolve_provenance(
            origin=origin, generator=generator, generation=generation, status=status
        )
        rows = record_rows(
            table.column(text_field),
            label=table.column(label_field) if label_field else None,
            parent_id=table.column(parent_field) if parent_field else None,
        )
        provenance = {
            "origin": origin.value,
            "source": source_name or name,
            "generator": generator,
            "generation": generation,
            "round": round,
            "status": status.value,
            "created_at": dt.datetime.now(dt.UTC),
        }
        n = rows.num_rows
        # Ids are hashed inside the INSERT (in parallel, no id column in Python) and the
        # batch-wide provenance goes in as constants, which DuckDB stores almost for free.
        with self._transaction() as con:
            con.register("incoming", rows)
            # One provenance for the whole batch: a repeated key is a repeated record.
            # Distinct hashes prove distinct keys; a collision only costs an exact dedupe.
            repeats = self._count_distinct(con, "hash(key)") < n
            unique = "(SELECT DISTINCT ON (key) * FROM incoming)" if repeats else "incoming"
            added = self._insert_absent(
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
            con.unregister("incoming")
        return IngestResult(read=n, added=added, existing=n - added)

    def add_records(self, records: pa.Table) -> IngestResult:
        """Add records already in :data:`~tailguard.records.SCHEMA` (one transaction)."""
        if records.schema != SCHEMA:
            records = _conform(records, SCHEMA, "records")
        n = records.num_rows
        with self._transaction() as con:
            con.register("incoming", records)
            # Distinct ids rule out repeated keys without hashing all five key columns.
            repeats = (
                self._count_distinct(con, "hash(id)") < n
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
        with self._transaction() as con:
            if con.execute("SELECT 1 FROM reservoirs WHERE name = ?", [name]).fetchall():
                raise ReservoirError(
                    f"reservoir {name!r} is already frozen and cannot be changed; "
                    "freeze a new one under another name"
                )
            members = con.sql(
                """
                WITH human AS (
                    SELECT DISTINCT ON (id) id, label FROM records
                    WHERE origin = 'human' AND status <> 'quarantined' ORDER BY id),
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
            digest = _reservoir_digest(members)
            n_hold = int(
                np.sum(members.column("split").to_numpy(zero_copy_only=False) == "holdout")
            )
            con.register("members", members)
            _do(
                con, "INSERT INTO reservoir_members SELECT ?, id, split, label FROM members", [name]
            )
            con.unregister("members")
            _do(
                con,
                "INSERT INTO reservoirs VALUES (?, ?, ?, ?, ?, ?, ?)",
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
        return self.reservoir(name)

    def has_reservoir(self, name: str | None = None) -> bool:
        sql = "SELECT count(*) FROM reservoirs" + (" WHERE name = ?" if name else "")
        return self.con.execute(sql, [name] if name else []).fetchall()[0][0] > 0

    def reservoir(self, name: str | None = None) -> Reservoir:
        """The frozen reservoir (the newest if unnamed), its digest checked on every read."""
        row = self.con.execute(
            "SELECT name, digest, seed, holdout_fraction FROM reservoirs "
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
        rname, digest, seed, holdout = row
        members = self.con.sql(
            "SELECT id, label, split FROM reservoir_members WHERE name = ? ORDER BY id",
            params=[rname],
        ).to_arrow_table()
        if _reservoir_digest(members) != digest:
            raise ReservoirError(
                f"reservoir {rname!r} was altered outside tailguard: its members no longer "
                f"match the digest {digest[:12]}...; restore the ledger from a backup"
            )
        self._check_reservoir_content(rname)
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

    def _check_reservoir_content(self, name: str) -> None:
        """Re-hash the reservoir's records and compare with their ids.

        The full re-hash runs once per ledger session and whenever a cheap
        fingerprint (row count and a sum of fast 64-bit hashes of the members'
        content) changes, so repeated reads in a loop stay cheap and any edit
        still triggers the exact check.
        """
        fingerprint = self.con.execute(
            "SELECT count(r.id), sum(hash(r.content) % 1000000007) FROM reservoir_members m "
            "LEFT JOIN records r ON r.id = m.id AND r.origin = 'human' WHERE m.name = ?",
            [name],
        ).fetchall()[0]
        if self._verified.get(name) == fingerprint:
            return
        broken = self.con.execute(
            f"""
            SELECT count(*) FROM reservoir_members m
            LEFT JOIN (SELECT DISTINCT id FROM records
                       WHERE origin = 'human' AND {_SQL_CONTENT_ID} = id) r USING (id)
            WHERE m.name = ? AND r.id IS NULL
            """,
            [name],
        ).fetchall()[0][0]
        if broken:
            raise ReservoirError(
                f"reservoir {name!r} was altered outside tailguard: {broken} of its records "
                "are missing or their content no longer matches their id"
            )
        self._verified[name] = fingerprint

    def reservoir_records(self, split: str = "train", name: str | None = None) -> pa.Table:
        """Human records of the reservoir: ``train``, ``holdout`` or ``all`` (one per id)."""
        if split not in {"train", "holdout", "all"}:
            raise InputError(f"split must be train, holdout or all, not {split!r}")
        res = self.reservoir(name)
        cond = "" if split == "all" else "AND m.split = ?"
        params = [res.name] + ([] if split == "all" else [split])
        return (
            self.con.sql(
                f"""
            SELECT r.* FROM (SELECT DISTINCT ON (id) * FROM records
                             WHERE origin = 'human' ORDER BY id, round, source) r
            JOIN reservoir_members m ON m.id = r.id AND m.name = ? {cond}
            ORDER BY r.id
            """,
                params=params,
            )
            .to_arrow_table()
            .cast(SCHEMA)
        )

    def training_pool(self, round: int, *, reservoir: str | None = None) -> pa.Table:  # noqa: A002
        """What round ``round`` may train on: id, origin, generation, label, round, source.

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
                SELECT DISTINCT ON (id, origin) id, origin, generation, label, round, source
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
        and the training pool skip them until :meth:`release`. Each call is logged.
        """
        return self._quarantine_action(flagged, "quarantine", "accepted", "quarantined")

    def release(self, ids: list[str] | pa.Array, *, detail: str = "released by hand") -> int:
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
        """Records now quarantined, with the reason, score and match of their quarantine."""
        return self.con.sql(
            """
            SELECT r.id, r.content, r.source, r.round, q.code, q.detail, q.score, q.matched_id,
                   q.logged_at AS quarantined_at
            FROM (SELECT DISTINCT ON (id) * FROM records
                  WHERE origin = 'human' AND status = 'quarantined' ORDER BY id) r
            JOIN (SELECT DISTINCT ON (id) * FROM quarantine_log WHERE action = 'quarantine'
                  ORDER BY id, logged_at DESC) q USING (id)
            ORDER BY r.id
            """
        ).to_arrow_table()

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
        with self._transaction() as con:
            con.register("v", table)
            con.register("ok", pa.table({"id": pa.array(accepted, pa.string())}))
            con.register("no", pa.table({"id": pa.array(rejected, pa.string())}))
            _do(con, "DELETE FROM verdicts WHERE round = ? AND id IN (SELECT id FROM v)", [round])
            cols = ", ".join(VERDICT_SCHEMA.names)
            _do(con, f"INSERT INTO verdicts ({cols}) SELECT {cols} FROM v")
            for name, status in (("ok", Status.ACCEPTED), ("no", Status.REJECTED)):
                _do(
                    con,
                    "UPDATE records SET status = ? WHERE origin = 'synthetic' AND round = ? "
                    f"AND status = 'candidate' AND id IN (SELECT id FROM {name})",
                    [status.value, round],
                )
            for name in ("v", "ok", "no"):
                con.unregister(name)

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

    # ------------------------------------------------------------------ manifests
    def write_manifest(self, manifest: Manifest) -> str:
        """Store a round's manifest after checking every slot may be trained on.

        Refused (nothing written) if a slot holds a holdout id, a human id that is
        neither in the reservoir nor fresh human data, or a synthetic id that the
        gate has not accepted. Replaces an earlier manifest of the same run and round.
        """
        slots = manifest.slots.select(MANIFEST_SLOTS.names).cast(MANIFEST_SLOTS)
        res = self.reservoir()
        with self._transaction() as con:
            con.register("slots", slots)
            bad = con.execute(
                """
                SELECT s.id, s.origin,
                    CASE WHEN s.id IN (SELECT id FROM reservoir_members
                                       WHERE name = ? AND split = 'holdout')
                         THEN 'is in the reservoir holdout'
                         WHEN s.origin = 'human' THEN 'is not a reservoir or fresh human record'
                         ELSE 'is not an accepted synthetic record' END AS why
                FROM slots s
                WHERE s.id IN (SELECT id FROM reservoir_members WHERE name = ? AND split='holdout')
                   OR (s.origin = 'human' AND s.id NOT IN (
                        SELECT id FROM reservoir_members WHERE name = ? AND split = 'train'
                        UNION SELECT id FROM records WHERE origin = 'human' AND round >= 1))
                   OR (s.origin = 'synthetic' AND s.id NOT IN (
                        SELECT id FROM records WHERE origin = 'synthetic' AND status = 'accepted'))
                LIMIT 1
                """,
                [res.name, res.name, res.name],
            ).fetchall()
            bad = bad[0] if bad else None
            if bad:
                raise InputError(
                    f"manifest for round {manifest.round} refused: {bad[1]} id {bad[0]} {bad[2]}"
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
            digest = manifest.digest
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

    def manifest_records(self, round: int, run: str = "main") -> pa.Table:  # noqa: A002
        """The training set of a round in training order, with full provenance."""
        self.manifest(round, run)  # digest check
        return self.con.sql(
            """
            SELECT s.batch, s.pos, r.* FROM manifest_slots s
            JOIN (SELECT DISTINCT ON (id, origin, generation) * FROM records
                  ORDER BY id, origin, generation, round) r
              ON r.id = s.id AND r.origin = s.origin AND r.generation = s.generation
            WHERE s.run = ? AND s.round = ? ORDER BY s.pos
            """,
            params=[run, round],
        ).to_arrow_table()

    def round_summary(self, run: str | None = "main") -> pa.Table:
        """Per run and round: the one definition of a round's composition.

        ``total``, ``human`` and ``synthetic`` slots of the manifest, ``human_share``,
        ``reservoir_share`` (slots from the reservoir's train split), ``traceable``
        (slots whose id, origin and generation are in ``records``), ``new_human``
        (human ids used for the first time in this run), ``generated`` (synthetic
        records of the round) and ``verified`` (ids the gate ruled on). ``audit``, the
        report and the lab all read it; ``run=None`` covers every run.
        """
        reservoir_name = self.reservoir().name if self.has_reservoir() else ""
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
            first_use AS (
                SELECT run, id, min(round) AS round FROM slots WHERE origin = 'human'
                GROUP BY run, id),
            new_human AS (SELECT run, round, count(*) AS new_human FROM first_use GROUP BY ALL),
            generated AS (
                SELECT round, count(*) AS generated FROM records
                WHERE origin = 'synthetic' GROUP BY round),
            verified AS (
                SELECT round, count(DISTINCT id) AS verified FROM {_verdict_rows(self.con)}
                WHERE verifier <> 'none' GROUP BY round)
            SELECT t.run, t.round, t.total, t.human, t.synthetic, t.human_share,
                   t.reservoir_share, t.traceable,
                   coalesce(n.new_human, 0) AS new_human,
                   coalesce(g.generated, 0) AS generated,
                   coalesce(v.verified, 0) AS verified
            FROM traced t LEFT JOIN new_human n USING (run, round)
            LEFT JOIN generated g USING (round) LEFT JOIN verified v USING (round)
            ORDER BY t.run, t.round
            """,
            params=[run, run, reservoir_name],
        ).to_arrow_table()

    def audit(self, *, floor: float = AUDIT_FLOOR, run: str | None = None) -> pa.Table:
        """Per round: human and synthetic counts and shares, by generation, and the alarm.

        ``flagged`` marks a round whose human share is below ``floor``: real data was
        silently substituted by synthetic data. The counts are :meth:`round_summary`'s.
        """
        floor = check_fraction(floor, "the audit floor", zero=True)
        summary = self.round_summary(run)
        cols = ["run", "round", "total", "human", "synthetic", "human_share", "reservoir_share"]
        table = summary.select(cols).append_column(
            "flagged", pc.less(summary["human_share"], floor)
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
        """Store metric rows (replacing the same run, round and sample): see METRIC_SCHEMA."""
        rows = _conform(table, METRIC_SCHEMA, "metric rows")
        with self._transaction() as con:
            con.register("m", rows)
            _do(
                con,
                "DELETE FROM metrics WHERE (run, round, sample) IN "
                "(SELECT DISTINCT run, round, sample FROM m)",
            )
            _do(con, "INSERT INTO metrics SELECT * FROM m")
            con.unregister("m")

    def metrics(self, run: str | None = None) -> pa.Table:
        where, params = self._filters(run=run)
        sql = "SELECT * FROM metrics" + (" WHERE " + " AND ".join(where) if where else "")
        return (
            self.con.sql(sql + " ORDER BY run, round, sample, metric", params=params)
            .to_arrow_table()
            .cast(METRIC_SCHEMA)
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
        with self._transaction() as con:
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
        return self.con.sql(sql + " ORDER BY run, round", params=params).to_arrow_table()

    def mark_stage(self, run: str, round: int, stage: str) -> None:  # noqa: A002
        """Record that a loop stage finished (what ``--resume`` reads)."""
        _do(
            self.con,
            "INSERT INTO stages VALUES (?, ?, ?, ?)",
            [run, round, stage, dt.datetime.now(dt.UTC)],
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
    """``with`` block around one DuckDB transaction: commit on success, else roll back."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        self.con.begin()
        return self.con

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.con.commit()
        else:
            self.con.rollback()


def _conform(table: pa.Table, schema: pa.Schema, what: str) -> pa.Table:
    """``table``'s columns of ``schema``, in order and type, or a clear error saying why not."""
    try:
        return table.select(schema.names).cast(schema)
    except (KeyError, pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as exc:
        raise InputError(f"{what} do not match the expected columns {schema.names}: {exc}") from exc


def _reservoir_digest(members: pa.Table) -> str:
    """sha256 over the member ids in sorted order, one ``split:id`` line each (in SQL)."""
    con = duckdb.connect()
    con.register("members", members.select(["id", "split"]))
    return con.sql(
        "SELECT sha256(coalesce(string_agg(split || ':' || id, chr(10) ORDER BY id), '')) "
        "FROM members"
    ).fetchall()[0][0]
