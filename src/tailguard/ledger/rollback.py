"""Rollback to a clean round: the cheap remedy when the monitor shows degradation.

Rolling run ``run`` back to round ``R`` quarantines every synthetic record of
generations after ``R`` (status ``quarantined``, code ``rolled_back`` in the
quarantine log; nothing is deleted) and marks the run's later rounds as rolled back
in the append-only ``rollbacks`` table. Their manifests, metrics and decisions stay
as history: the audit and the report show them as rolled back, the loop skips them.

Records carry no run name (one ledger holds one lineage of rounds), so the quarantine
covers the ledger's synthetic records of generations after ``R``, whichever run wrote
them. Each record's status before the rollback is kept in ``rollback_records``, so
:func:`release` puts a released record back exactly where it was.

Round numbers never repeat: after a rollback to ``R`` of a run whose latest round is
``L``, the next round is ``L + 1``, planned from the clean state (the reservoir,
fresh human data and the synthetic records accepted up to ``R``) with the model
retrained from round ``R``'s manifest.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from tailguard.errors import ConfigError, InputError

#: The quarantine code of a synthetic record set aside by a rollback.
ROLLED_BACK_CODE = "rolled_back"

DDL = """
CREATE TABLE IF NOT EXISTS rollbacks (
    seq BIGINT NOT NULL, run VARCHAR NOT NULL, to_round INTEGER NOT NULL,
    rounds INTEGER[] NOT NULL, quarantined BIGINT NOT NULL, reason VARCHAR NOT NULL,
    rolled_at TIMESTAMPTZ NOT NULL, rolled_by VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS rollback_records (
    seq BIGINT NOT NULL, id VARCHAR NOT NULL, source VARCHAR NOT NULL, generator VARCHAR,
    generation INTEGER NOT NULL, status VARCHAR NOT NULL
);
"""


@dataclass(frozen=True)
class Rollback:
    """What one rollback did: the round gone back to, the rounds set aside, the records
    quarantined (rows of synthetic records of generations after ``to_round``)."""

    to_round: int
    rounds: tuple[int, ...]
    quarantined: int
    run: str = "main"
    reason: str = ""


def rolled_back_rounds(con: duckdb.DuckDBPyConnection, run: str | None = "main") -> list[int]:
    """Rounds of ``run`` (every run: ``None``) that a rollback set aside, ascending."""
    rows = con.execute(
        "SELECT DISTINCT unnest(rounds) FROM rollbacks WHERE ? IS NULL OR run = ? ORDER BY 1",
        [run, run],
    ).fetchall()
    return [r[0] for r in rows]


def history(con: duckdb.DuckDBPyConnection, run: str | None = None) -> pa.Table:
    """Every rollback, oldest first: run, to_round, rounds, quarantined, reason, when, who."""
    return con.sql(
        "SELECT seq, run, to_round, rounds, quarantined, reason, rolled_at, rolled_by "
        "FROM rollbacks WHERE $run IS NULL OR run = $run ORDER BY seq",
        params={"run": run},
    ).to_arrow_table()


def check_target(
    con: duckdb.DuckDBPyConnection, to_round: object, run: str
) -> tuple[int, list[int]]:
    """``to_round`` as a round of ``run`` one can go back to, and the later live rounds.

    Refused: not a whole number >= 0, a round without a manifest in the run, a round
    already rolled back, the run's latest round (nothing after it to undo).
    """
    if isinstance(to_round, bool) or not isinstance(to_round, int) or to_round < 0:
        raise ConfigError(
            f"rollback: the round to go back to must be a whole number >= 0, got {to_round!r}"
        )
    gone = set(rolled_back_rounds(con, run))
    rounds = [
        r[0]
        for r in con.execute(
            "SELECT round FROM stages WHERE run = ? UNION SELECT round FROM manifests "
            "WHERE run = ? ORDER BY 1",
            [run, run],
        ).fetchall()
    ]
    if not rounds:
        raise ConfigError(f"rollback: run {run!r} has no rounds in this ledger")
    planned = {
        r[0] for r in con.execute("SELECT round FROM manifests WHERE run = ?", [run]).fetchall()
    }
    if to_round in gone:
        raise ConfigError(
            f"rollback: round {to_round} of run {run!r} was itself rolled back; "
            "go back to a round that is still live"
        )
    if to_round not in planned:
        live = sorted(planned - gone)
        raise ConfigError(
            f"rollback: run {run!r} has no round {to_round} (no manifest); "
            f"its live rounds are {', '.join(map(str, live)) or '(none)'}"
        )
    later = [r for r in rounds if r > to_round and r not in gone]
    if not later:
        raise ConfigError(
            f"rollback: round {to_round} is the latest round of run {run!r}; "
            "there is nothing after it to roll back"
        )
    return to_round, later


def only_run(con: duckdb.DuckDBPyConnection) -> str:
    """The ledger's one run with manifests (one ledger, one lineage), or a clear error."""
    runs = [r[0] for r in con.execute("SELECT DISTINCT run FROM manifests ORDER BY 1").fetchall()]
    if len(runs) != 1:
        raise ConfigError(
            "rollback: "
            + (
                f"the ledger has several runs ({', '.join(runs)}); name one (run= / --run)"
                if runs
                else "the ledger has no rounds to roll back"
            )
        )
    return runs[0]


def rollback(
    con: duckdb.DuckDBPyConnection,
    to_round: int,
    *,
    run: str | None,
    reason: str,
    who: str,
) -> Rollback:
    """Quarantine synthetic records of generations after ``to_round`` and mark the run's
    later rounds rolled back (``run=None``: the ledger's one run). ``con`` is inside the
    caller's transaction."""
    run = only_run(con) if run is None else run
    to_round, later = check_target(con, to_round, run)
    now = dt.datetime.now(dt.UTC)
    seq = con.execute("SELECT coalesce(max(seq), 0) + 1 FROM rollbacks").fetchall()[0][0]
    con.execute(
        "INSERT INTO rollback_records SELECT ?, id, source, generator, generation, status "
        "FROM records WHERE origin = 'synthetic' AND generation > ? "
        "AND status <> 'quarantined'",
        [seq, to_round],
    ).fetchall()
    n = con.execute(
        "UPDATE records SET status = 'quarantined' WHERE origin = 'synthetic' "
        "AND generation > ? AND status <> 'quarantined'",
        [to_round],
    ).fetchall()[0][0]
    detail = f"rolled back to round {to_round} (run {run})" + (f": {reason}" if reason else "")
    con.execute(
        "INSERT INTO quarantine_log SELECT DISTINCT id, 'quarantine', ?, ?, NULL, NULL, ? "
        "FROM rollback_records WHERE seq = ?",
        [ROLLED_BACK_CODE, detail, now, seq],
    ).fetchall()
    con.execute(
        "INSERT INTO rollbacks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [seq, run, to_round, later, n, reason, now, who],
    ).fetchall()
    return Rollback(to_round=to_round, rounds=tuple(later), quarantined=n, run=run, reason=reason)


def release(con: duckdb.DuckDBPyConnection, ids: pa.Array, *, detail: str) -> int:
    """Give rolled-back synthetic records their status from before the rollback back
    (logged as a release). ``con`` is inside the caller's transaction."""
    con.register("releasing", pa.table({"id": ids}))
    try:
        held = """
            SELECT DISTINCT ON (b.id, b.source, b.generator, b.generation)
                   b.id, b.source, b.generator, b.generation, b.status
            FROM rollback_records b JOIN records r
              ON r.id = b.id AND r.origin = 'synthetic' AND r.source = b.source
             AND r.generator IS NOT DISTINCT FROM b.generator AND r.generation = b.generation
            WHERE r.status = 'quarantined' AND b.id IN (SELECT id FROM releasing)
            ORDER BY b.id, b.source, b.generator, b.generation, b.seq DESC
        """
        missing = con.execute(
            f"SELECT min(id), count(*) FROM releasing WHERE id NOT IN (SELECT id FROM ({held}))"
        ).fetchall()[0]
        if missing[1]:
            raise InputError(
                f"{missing[1]} id(s) are not rolled-back synthetic records (e.g. {missing[0]}); "
                "nothing was changed",
                field="id",
            )
        n = con.execute(
            f"""
            UPDATE records SET status = h.status FROM ({held}) h
            WHERE records.origin = 'synthetic' AND records.id = h.id
              AND records.source = h.source
              AND records.generator IS NOT DISTINCT FROM h.generator
              AND records.generation = h.generation
            """
        ).fetchall()[0][0]
        con.execute(
            "INSERT INTO quarantine_log SELECT DISTINCT id, 'release', 'released', ?, NULL, "
            "NULL, ? FROM releasing",
            [detail, dt.datetime.now(dt.UTC)],
        ).fetchall()
    finally:
        con.unregister("releasing")
    return n
