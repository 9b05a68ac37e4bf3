"""The ledger's tables: their DDL, the migrations of earlier versions and the row schemas.

Also the small helpers every store shares (a statement run to completion, a table
conformed to a schema, who made a change, a round checked)."""

from __future__ import annotations

import getpass
import socket
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from tailguard.errors import InputError
from tailguard.limits import INT32_MAX
from tailguard.records import (
    AUDIT_ROWS,
    METRIC_ROWS,
    VERDICT_ROWS,
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


#: Where reference fingerprints are kept (a 0.3 ledger's ``fingerprints`` table of blobs is
#: no longer read: its values are computed once more and kept here).
FINGERPRINT_TABLE = "fingerprint_words"


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


def _do(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> None:
    """Run a statement to completion (DuckDB wants every result consumed)."""
    con.execute(sql, params or []).fetchall()


def _conform(table: pa.Table, schema: pa.Schema, what: str) -> pa.Table:
    """``table``'s columns of ``schema``, in order and type, or a clear error saying why not."""
    try:
        return table.select(schema.names).cast(schema)
    except (KeyError, pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as exc:
        raise InputError(f"{what} do not match the expected columns {schema.names}: {exc}") from exc


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__


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
