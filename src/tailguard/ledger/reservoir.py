"""The frozen human reservoir: freezing it, reading it back with its digest checked,
pinning a run to it, and its records."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from tailguard.errors import InputError, ReservoirError
from tailguard.ledger.connection import LedgerBase
from tailguard.ledger.digests import _content_digest, _reservoir_digest
from tailguard.ledger.schema import (
    _SQL_CONTENT_ID,
    _do,
)
from tailguard.records import (
    SCHEMA,
)


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


class ReservoirStore(LedgerBase):
    """The reservoir and its members; every read checks them against the digest."""

    #: The share of each label :meth:`freeze_reservoir` holds out for evaluation.
    HOLDOUT: float = 0.1

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
        self._refuse_during_run("a freeze")
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
        row under a member's id with other content, or with another label or status,
        is refused too. A twin without a label is read by no one: the digest, the
        training pool and training all read a human id's first row by round and source
        (one sorting first changes the digest), and tailguard never adds one after the
        freeze (see ``ingest``).
        ``expect`` is a digest pinned elsewhere (``reservoir show --expect``,
        ``[reservoir] digest``): the only check that also catches a rewrite of the data
        *and* the stored digest.

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
        self._check_pins(rname, digest)
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

    def _check_pins(self, name: str, digest: str) -> None:
        """Every run that has stages is pinned, and to this reservoir.

        A reservoir frozen after a run began is refused by :meth:`freeze_reservoir`, so
        another one (an inserted ``evil`` with a consistent digest) or a run without a
        pin (its row deleted) was made outside tailguard: every command that reads the
        reservoir (mix, export, gate, eval, screen, run) refuses it, not only ``run``.
        """
        rows = self.con.execute(
            """
            SELECT s.run, p.name, p.digest FROM (SELECT DISTINCT run FROM stages) s
            LEFT JOIN run_reservoirs p USING (run)
            UNION SELECT run, name, digest FROM run_reservoirs ORDER BY 1
            """
        ).fetchall()
        for run, pinned, pinned_digest in rows:
            if pinned is None:
                raise ReservoirError(
                    f"run {run!r} has stages but no pinned reservoir: its pin was deleted "
                    "outside tailguard; restore the ledger from a backup"
                )
            if (pinned, pinned_digest) != (name, digest):
                raise ReservoirError(
                    f"reservoir {name!r} (digest {digest[:12]}...) is not the one run {run!r} "
                    f"is pinned to ({pinned!r}, digest {pinned_digest[:12]}...): the "
                    "reservoir was replaced or added outside tailguard; restore the ledger "
                    "from a backup"
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
        broken, shadows, twins = self.con.execute(
            f"""
            SELECT
              (SELECT count(*) FROM reservoir_members m
               LEFT JOIN (SELECT DISTINCT id FROM records
                          WHERE origin = 'human' AND {_SQL_CONTENT_ID} = id) r USING (id)
               WHERE m.name = $name AND r.id IS NULL),
              (SELECT count(*) FROM records r JOIN reservoir_members m
                 ON m.id = r.id AND m.name = $name
               WHERE r.origin = 'human' AND {_SQL_CONTENT_ID} <> r.id),
              (SELECT count(*) FROM (
                 SELECT r.id FROM records r JOIN reservoir_members m
                   ON m.id = r.id AND m.name = $name
                 WHERE r.origin = 'human' GROUP BY r.id
                 HAVING count(DISTINCT r.label) > 1 OR count(DISTINCT r.status) > 1))
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
        if twins:
            raise ReservoirError(
                f"reservoir {name!r} was altered outside tailguard: {twins} of its members "
                "have a second row with another label or status (a label twin); the "
                "digest and training would read different rows"
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

    def pin_reservoir(self, run: str = "main", *, record: bool = True) -> Reservoir:
        """The reservoir ``run`` is pinned to: recorded at its first stage, checked after.

        Refused if the reservoir's name or digest changed since the run began (a
        deleted and refrozen reservoir, a newer one taking over unnamed reads).
        ``record=False`` checks without writing the first pin, for callers that may
        still refuse (a refusal writes nothing).
        """
        res = self.reservoir()
        pinned = self.con.execute(
            "SELECT name, digest FROM run_reservoirs WHERE run = ?", [run]
        ).fetchall()
        if not pinned:
            if record and not self.read_only:
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

    def reservoir_labels(self, name: str) -> list[tuple[str, int, int]]:
        """``(label, train, holdout)`` member counts of reservoir ``name``, largest first;
        members without a label count under ``"(none)"``."""
        rows = self.con.execute(
            "SELECT coalesce(label, '(none)') AS label, count(*) FILTER (WHERE split='train'), "
            "count(*) FILTER (WHERE split='holdout') FROM reservoir_members WHERE name = ? "
            "GROUP BY 1 ORDER BY 2 DESC, 1",
            [name],
        ).fetchall()
        return [(label, int(train), int(holdout)) for label, train, holdout in rows]

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
