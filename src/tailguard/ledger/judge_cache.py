"""The judge cache's file: a judge's scores and reasons by (judge key, content id).

A DuckDB file of its own (not the ledger: a judge may run without one, and a cache
outlives the runs that filled it), opened for each read or write so several gates
can share it between calls."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from tailguard.ledger.files import _DUCKDB_CONFIG

_DDL = (
    "CREATE TABLE IF NOT EXISTS judge_cache (key VARCHAR, id VARCHAR, score DOUBLE, "
    "reason VARCHAR, PRIMARY KEY (key, id))"
)


class JudgeCacheFile:
    """Stored answers of a judge: read by id, written (replacing) as a batch."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)

    def _con(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(self.path, config=_DUCKDB_CONFIG)
        con.execute(_DDL)
        return con

    def get(self, key: str, ids: list[str]) -> list[tuple[str, float, str]]:
        """``(id, score, reason)`` of those of ``ids`` stored under ``key``."""
        con = self._con()
        try:
            con.register("wanted", pa.table({"id": pa.array(ids, pa.string())}))
            rows = con.execute(
                "SELECT id, score, reason FROM judge_cache WHERE key = ? "
                "AND id IN (SELECT id FROM wanted)",
                [key],
            ).fetchall()
        finally:
            con.close()
        return [(i, float(score), reason) for i, score, reason in rows]

    def put(self, key: str, answers: dict[str, tuple[float, str]]) -> None:
        """Store ``{id: (score, reason)}`` under ``key``, replacing earlier answers."""
        ids = list(answers)
        table = pa.table(
            {
                "key": pa.array([key] * len(ids), pa.string()),
                "id": pa.array(ids, pa.string()),
                "score": pa.array([answers[i][0] for i in ids], pa.float64()),
                "reason": pa.array([answers[i][1] for i in ids], pa.string()),
            }
        )
        con = self._con()
        try:
            con.register("fresh", table)
            con.execute("INSERT OR REPLACE INTO judge_cache SELECT * FROM fresh")
        finally:
            con.close()
