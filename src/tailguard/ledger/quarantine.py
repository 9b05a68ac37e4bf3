"""Quarantined records: screened human records and the synthetic records a rollback set
aside, with the log of every quarantine and release."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from tailguard.errors import InputError
from tailguard.ledger import rollback as _rollback
from tailguard.ledger.connection import LedgerBase
from tailguard.ledger.schema import (
    _do,
    _who,
)


class QuarantineStore(LedgerBase):
    """Quarantine, release and rollback; nothing is ever deleted."""

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
        self._refuse_during_run("a release")
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

    def rollback(
        self,
        to_round: int,
        *,
        reason: str = "",
        run: str | None = None,
    ) -> _rollback.Rollback:
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
        self._refuse_during_run("a rollback")
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
        self._refuse_during_run("a release")
        self._forget("rolled")
        with self._transaction() as con:
            return _rollback.release(con, pa.array(ids, pa.string()), detail=detail)

    def quarantine_log(self) -> pa.Table:
        """Every quarantine and release, oldest first (append-only)."""
        return self.con.sql("SELECT * FROM quarantine_log ORDER BY logged_at, id").to_arrow_table()
