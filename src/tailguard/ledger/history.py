"""A run's history: metrics, the dial's decisions, finished loop stages and the log of
every replaced or corrected value."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from tailguard.errors import InputError
from tailguard.ledger.connection import LedgerBase
from tailguard.ledger.schema import (
    METRIC_SCHEMA,
    _conform,
    _do,
)


class HistoryStore(LedgerBase):
    """Metrics, decisions, stages and the change history; append-only once trained on."""

    def history(self) -> pa.Table:
        """Every replaced manifest or metric set and every label correction, oldest first."""
        if not self._has_table("history"):
            return pa.table({})
        return self.con.sql("SELECT * FROM history ORDER BY changed_at").to_arrow_table()

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
        """Record that a loop stage finished (what ``--resume`` reads), ``at`` (default: now).

        A run's first stage pins it to the reservoir (if one is frozen): every later
        reservoir read checks that pin.
        """
        if ("pinned", run) not in self._facts:
            con = self.con
            if (
                not con.execute("SELECT 1 FROM stages WHERE run = ?", [run]).fetchall()
                and not con.execute("SELECT 1 FROM run_reservoirs WHERE run = ?", [run]).fetchall()
                and self.has_reservoir()
            ):
                self.pin_reservoir(run)
            self._facts["pinned", run] = True
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
