"""The reservoir's digests: version 1 over its member ids, version 2 over what every
member stands for (split, labels, source, round, status and content)."""

from __future__ import annotations

import hashlib

import duckdb
import numpy as np
import pyarrow as pa

from tailguard.ledger.scratch import scratch


def _reservoir_digest(members: pa.Table) -> str:
    """sha256 over the member ids in sorted order, one ``split:id`` line each (in SQL)."""
    with scratch() as con:
        con.register("members", members.select(["id", "split"]))
        return con.sql(
            "SELECT sha256(coalesce(string_agg(split || ':' || id, chr(10) ORDER BY id), '')) "
            "FROM members"
        ).fetchall()[0][0]


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


#: Member lines hashed per batch by :func:`_content_digest`.
_DIGEST_BATCH = 100_000
