"""The gate's verdicts (from memory or Parquet shards), the rounds exported for an
out-of-core gate, and the verifiers' audits."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from tailguard.errors import InputError
from tailguard.ledger.connection import LedgerBase
from tailguard.ledger.schema import (
    AUDIT_SCHEMA,
    VERDICT_SCHEMA,
    _audit_rows,
    _conform,
    _do,
    _verdict_rows,
    _who,
)

#: The gate's candidates moved to accepted or rejected: a scan of ``records`` (updated in
#: row order; an UPDATE driven by a join on the ids updates rows in the ids' order, 50x
#: slower at a million) with an id accepted anywhere accepted.
_MOVE_CANDIDATES = """
    UPDATE records SET status = CASE WHEN id IN ({ok}) THEN 'accepted' ELSE 'rejected' END
    WHERE origin = 'synthetic' AND round = ? AND status = 'candidate'
      AND (id IN ({ok}) OR id IN ({no}))"""


class VerdictStore(LedgerBase):
    """Verdicts, the candidates' moves they decide, and verifier audits."""

    def export_round(
        self,
        round: int,  # noqa: A002
        directory: str | Path,
        *,
        reservoir: bool = True,
        reservoir_split: str = "train",
        earlier: bool = True,
        references: dict[str, pa.Table] | None = None,
        rows_per_file: int = 250_000,
    ) -> dict[str, Any]:
        """Write round ``round``'s candidates and the sets the gate compares them with as
        Parquet shards for an out-of-core gate (``tailguard.gate.distributed``).

        ``candidates/`` holds each synthetic candidate once (the gate's order: by id,
        the lowest generation); ``reservoir/`` the reservoir's ``reservoir_split``
        (``train``, or ``all`` as the project's gate compares with) by id;
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
            queries.append((out["reservoir"], *self._reservoir_sql(reservoir_split, None)))
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
        ok = pa.table({"id": pa.array(accepted, pa.string())})
        no = pa.table({"id": pa.array(rejected, pa.string())})
        with self._transaction() as con:
            con.register("v", table)
            con.register("ok", ok)
            con.register("no", no)
            if con.execute("SELECT 1 FROM verdicts WHERE round = ? LIMIT 1", [round]).fetchall():
                again = "DELETE FROM verdicts WHERE round = ? AND id IN (SELECT id FROM v)"
                _do(con, again, [round])  # the round gated again: its verdicts replaced
            cols = ", ".join(VERDICT_SCHEMA.names)
            _do(con, f"INSERT INTO verdicts ({cols}) SELECT {cols} FROM v")
            moves = _MOVE_CANDIDATES.format(ok="SELECT id FROM ok", no="SELECT id FROM no")
            _do(con, moves, [round])
            for name in ("v", "ok", "no"):
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
            ok, no = "SELECT id FROM shard_decisions WHERE ok", "SELECT id FROM shard_decisions"
            _do(con, _MOVE_CANDIDATES.format(ok=ok, no=no), [round])
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

    def verdict_params(self) -> list[str | None]:
        """The distinct verifier parameters (JSON) verdicts were given under."""
        rows = self.con.execute(f"SELECT DISTINCT params FROM {_verdict_rows(self.con)}")
        return [p for (p,) in rows.fetchall()]

    def judge_summary(self, params: list[str]) -> tuple[pa.Table, pa.Table]:
        """For the verifiers run with one of ``params`` (the judges): per round and
        verifier, records, passed and mean score; and their 20 most common reasons for a
        failed verdict (the score cut from the detail, so equal reasons group)."""
        self.con.register("judged", pa.table({"params": pa.array(params, pa.string())}))
        try:
            rows = f"{_verdict_rows(self.con)} WHERE params IN (SELECT params FROM judged)"
            judges = self.con.sql(
                "SELECT round, verifier, count(*) AS records, "
                "count(*) FILTER (WHERE passed) AS passed, avg(score) AS mean_score "
                f"FROM {rows} GROUP BY ALL ORDER BY round, verifier"
            ).to_arrow_table()
            reasons = self.con.sql(
                "SELECT verifier, code, regexp_replace(detail, ' \\(score [^)]*\\)$', '') "
                f"AS reason, count(*) AS count FROM {rows} AND NOT passed "
                "GROUP BY ALL ORDER BY count DESC, verifier, reason LIMIT 20"
            ).to_arrow_table()
        finally:
            self.con.unregister("judged")
        return judges, reasons

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
