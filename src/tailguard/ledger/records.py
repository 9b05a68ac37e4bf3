"""Records: ingest, adding exported rows, reading and counting them, moving their
status, and label corrections (the old label stays in history)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tailguard.errors import InputError, ReservoirError
from tailguard.ledger.connection import LedgerBase
from tailguard.ledger.schema import (
    _SQL_CONTENT_ID,
    _conform,
    check_round,
)
from tailguard.readers import read_table
from tailguard.records import (
    SCHEMA,
    Origin,
    Status,
    content_id_sql,
    record_rows,
    resolve_provenance,
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


class RecordStore(LedgerBase):
    """The records table: every example and where it came from."""

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
        or against the ledger, is refused as a label conflict (see :meth:`relabel`),
        except a label a relabel corrected: re-reading the original file keeps the
        correction (so a project whose ``[data] files`` hold the old label still runs).
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
            WHERE NOT EXISTS (  -- the file's label is one a relabel corrected: it stands
                SELECT 1 FROM history h WHERE h.kind = 'relabel' AND h.key = n.id
                   AND list_contains(from_json(h.old, '["VARCHAR"]'), n.label))
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
        already in the ledger; return how many went in.

        One row per fact: a human text that is a frozen reservoir member is not added
        again (from another file, without its label): the member's one row is what the
        reservoir's digest covers and what training reads."""
        inserted = con.execute(
            f"""
            INSERT INTO records BY NAME SELECT n.* FROM ({rows}) n ANTI JOIN records r
            ON r.id = n.id AND r.origin = n.origin AND r.source = n.source
               AND r.generator IS NOT DISTINCT FROM n.generator
               AND r.generation = n.generation
            WHERE n.origin <> 'human' OR n.id NOT IN (SELECT id FROM reservoir_members)
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
        with self._lean():  # the sort spills instead of holding the round's texts
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

    def relabel(self, id: str, label: str | None, *, reason: str = "") -> int:  # noqa: A002
        """Correct the label of every record with ``id``; the old value stays in history.

        A member of a frozen reservoir keeps its label (the reservoir's digest covers
        it): freeze a new reservoir in a new ledger instead.
        """
        self._refuse_during_run("a relabel")
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
