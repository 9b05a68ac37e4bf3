"""What a round may train on, the manifests of what it did train on, and the audit of
every round's composition."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pyarrow.compute as pc

from tailguard.errors import InputError, TailguardError, check_fraction
from tailguard.ledger.connection import LedgerBase
from tailguard.ledger.schema import (
    _do,
    _verdict_rows,
    check_round,
)
from tailguard.records import (
    MANIFEST_SLOTS,
    Manifest,
    Origin,
)

#: Rows per Arrow batch when a training set streams out of DuckDB.
_READ_BATCH = 1 << 17


class ManifestStore(LedgerBase):
    """Training pools, manifests and the per-round summary the audit, report and lab read."""

    #: The audit's floor: a round whose human share is below it is flagged.
    AUDIT_FLOOR: float = 0.15

    def training_pool(
        self,
        round: int,  # noqa: A002
        *,
        reservoir: str | None = None,
        text: bool = True,
    ) -> pa.Table:
        """What round ``round`` may train on: id, origin, generation, label, round, source,
        content (left out with ``text=False``: planning needs none, and at a million
        records the texts are most of the bytes moved and sorted).

        The reservoir's training split; human records ingested after the freeze
        (fresh data) up to this round; every accepted synthetic record up to this
        round. Never a holdout id, in any origin.
        """
        res = self.reservoir(reservoir)
        return self.con.sql(
            """
            WITH holdout AS (SELECT id FROM reservoir_members
                             WHERE name = $name AND split = 'holdout'),
                 anchored AS (SELECT id FROM reservoir_members WHERE name = $name AND split='train')
            SELECT * FROM (
                SELECT DISTINCT ON (id, origin)
                    id, origin, generation, label,
                    CASE WHEN origin = 'human' AND id IN (SELECT id FROM anchored)
                         THEN 0 ELSE round END AS round, source"""
            + (", content" if text else "")
            + """
                FROM records r
                WHERE id NOT IN (SELECT id FROM holdout) AND (
                    -- the reservoir is re-injected whole from round 0, whatever round its
                    -- members were ingested at; fresh data from the round it enters
                    (origin = 'human' AND status <> 'quarantined'
                     AND (id IN (SELECT id FROM anchored) OR (round >= 1 AND round <= $r)))
                    OR (origin = 'synthetic' AND status = 'accepted' AND round <= $r))
                -- a human id's row is the one the reservoir's digest reads (first by
                -- round and source, whatever a twin's generation says)
                ORDER BY id, origin, CASE WHEN origin = 'human' THEN 0 ELSE generation END,
                         round, source)
            ORDER BY id, origin
            """,
            params={"name": res.name, "r": round},
        ).to_arrow_table()

    def write_manifest(self, manifest: Manifest) -> str:
        """Store a round's manifest after checking every slot may be trained on.

        Refused (nothing written) if a slot holds a holdout id, a human id that is
        neither in the reservoir nor fresh human data, or a synthetic id that the
        gate has not accepted. Replaces an earlier manifest of the same run and round
        only until the round is trained on (a later stage, metrics or a later round
        exist); the replaced digest is kept in :meth:`history`.
        """
        check_round(manifest.round)
        slots = manifest.slots.select(MANIFEST_SLOTS.names).cast(MANIFEST_SLOTS)
        res = self.reservoir()  # (checked: its id sets are the stored ones)
        ids, human = slots["id"], pc.equal(slots["origin"], Origin.HUMAN.value)
        held = pc.is_in(ids, value_set=res.holdout_ids)
        if pc.any(held).as_py():
            at = pc.index(held, True).as_py()
            self._refuse_slot(manifest, slots, at, "is in the reservoir holdout")
        # Reservoir training ids pass as they are; the rest must be fresh human data or
        # accepted synthetic records (one anti-join, with the previous digest alongside).
        rest = slots.filter(
            pc.invert(pc.and_(human, pc.is_in(ids, value_set=res.train_ids)))
        ).select(["id", "origin"])
        with self._transaction() as con:
            con.register("slots", slots)
            con.register("unanchored", rest)
            bad, previous = con.execute(
                """
                SELECT (SELECT (s.id, s.origin) FROM unanchored s ANTI JOIN records r
                        ON r.id = s.id AND r.origin = s.origin
                        AND ((r.origin = 'synthetic' AND r.status = 'accepted')
                             OR (r.origin = 'human' AND r.round >= 1)) LIMIT 1),
                       (SELECT digest FROM manifests WHERE run = $run AND round = $round)
                """,
                {"run": manifest.run, "round": manifest.round},
            ).fetchall()[0]
            con.unregister("unanchored")
            if bad:
                con.unregister("slots")
                why = (
                    "is not a reservoir or fresh human record"
                    if bad[1] == Origin.HUMAN.value
                    else "is not an accepted synthetic record"
                )
                self._refuse_slot(manifest, slots, pc.index(ids, bad[0]).as_py(), why)
            digest = manifest.digest
            if previous is not None:
                self._refuse_rewrite(con, "manifest", manifest.run, manifest.round)
                if previous != digest:
                    self._log(
                        con,
                        "manifest",
                        run=manifest.run,
                        round=manifest.round,
                        old=previous,
                        new=digest,
                        reason="re-planned before training",
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

    @staticmethod
    def _refuse_slot(manifest: Manifest, slots: pa.Table, at: int, why: str) -> None:
        raise InputError(
            f"manifest for round {manifest.round} refused: {slots['origin'][at].as_py()} id "
            f"{slots['id'][at].as_py()} {why}"
        )

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

    def manifest_records(
        self,
        round: int,  # noqa: A002
        run: str = "main",
        *,
        checked: Manifest | None = None,
    ) -> pa.Table:
        """The training set of a round in training order, with full provenance.

        The stored manifest's digest is checked first, unless ``checked`` is that
        manifest as :meth:`manifest` just read (and checked) it. Its human slots are
        reservoir members: the reservoir is checked (digest and the runs' pins) too.
        """
        if self.has_reservoir():
            self.reservoir()
        if checked is None or (checked.round, checked.run) != (round, run):
            self.manifest(round, run)  # digest check
        reader = self.con.sql(
            """
            SELECT s.batch, s.pos, r.* FROM manifest_slots s
            JOIN records r
              ON r.id = s.id AND r.origin = s.origin AND r.generation = s.generation
            WHERE s.run = ? AND s.round = ?
            -- the first occurrence per slot: joining first dedupes the slots' rows only,
            -- not the whole records table (half the CPU at 200k records)
            QUALIFY row_number() OVER (
                PARTITION BY s.pos ORDER BY r.round, r.source, r.generator) = 1
            ORDER BY s.pos
            """,
            params=[run, round],
        ).to_arrow_reader(_READ_BATCH)
        return reader.read_all()  # streamed into Arrow: not held by DuckDB and Arrow at once

    def round_summary(self, run: str | None = "main") -> pa.Table:
        """Per run and round: the one definition of a round's composition.

        ``total``, ``human`` and ``synthetic`` slots of the manifest, ``human_share``,
        ``reservoir_share`` (slots from the reservoir's train split), ``traceable``
        (slots whose id, origin and generation are in ``records``), ``new_human``
        (human ids used for the first time in this run), ``unlabelled`` (slots whose
        record has no label: the label metrics count them as a class of their own,
        ``(unlabelled)``), ``bought`` (those of them not
        in the reservoir's train split: the human data a round bought), ``generated`` (synthetic
        records of the round), ``verified`` (ids the gate ruled on) and
        ``rolled_back`` (a rollback set the round aside: history, not the live
        lineage). ``audit``, the report and the lab all read it; ``run=None`` covers
        every run.
        """
        reservoir_name = self.reservoir().name if self.has_reservoir() else ""
        rolled = (
            "SELECT DISTINCT run, unnest(rounds) AS round FROM rollbacks"
            if self._has_table("rollbacks")
            else "SELECT NULL::VARCHAR AS run, NULL::INTEGER AS round WHERE false"
        )
        return self.con.sql(
            f"""
            WITH slots AS (SELECT * FROM manifest_slots WHERE ? IS NULL OR run = ?),
            traced AS (
                SELECT s.run, s.round, count(*) AS total,
                       count(*) FILTER (WHERE s.origin = 'human') AS human,
                       count(*) FILTER (WHERE s.origin = 'synthetic') AS synthetic,
                       human / total AS human_share,
                       count(m.id) / total AS reservoir_share,
                       count(r.id) AS traceable,
                       count(*) FILTER (WHERE s.label IS NULL) AS unlabelled
                FROM slots s
                LEFT JOIN (SELECT id FROM reservoir_members WHERE name = ? AND split = 'train') m
                  ON m.id = s.id AND s.origin = 'human'
                LEFT JOIN (
                    SELECT DISTINCT id, origin, generation FROM records
                    WHERE source IS NOT NULL AND origin IS NOT NULL) r
                  ON r.id = s.id AND r.origin = s.origin AND r.generation = s.generation
                GROUP BY s.run, s.round),
            train_split AS (
                SELECT id FROM reservoir_members WHERE name = ? AND split = 'train'),
            first_use AS (
                SELECT run, id, min(round) AS round FROM slots WHERE origin = 'human'
                GROUP BY run, id),
            new_human AS (
                SELECT run, round, count(*) AS new_human,
                       count(*) FILTER (WHERE id NOT IN (SELECT id FROM train_split)) AS bought
                FROM first_use GROUP BY ALL),
            generated AS (
                SELECT round, count(*) AS generated FROM records
                WHERE origin = 'synthetic' GROUP BY round),
            verified AS (
                SELECT round, count(DISTINCT id) AS verified FROM {_verdict_rows(self.con)}
                WHERE verifier <> 'none' GROUP BY round),
            rolled AS ({rolled})
            SELECT t.run, t.round, t.total, t.human, t.synthetic, t.human_share,
                   t.reservoir_share, t.traceable, t.unlabelled,
                   coalesce(n.new_human, 0) AS new_human,
                   coalesce(n.bought, 0) AS bought,
                   coalesce(g.generated, 0) AS generated,
                   coalesce(v.verified, 0) AS verified,
                   b.round IS NOT NULL AS rolled_back
            FROM traced t LEFT JOIN new_human n USING (run, round)
            LEFT JOIN generated g USING (round) LEFT JOIN verified v USING (round)
            LEFT JOIN rolled b ON b.run = t.run AND b.round = t.round
            ORDER BY t.run, t.round
            """,
            params=[run, run, reservoir_name, reservoir_name],
        ).to_arrow_table()

    def audit(self, *, floor: float = AUDIT_FLOOR, run: str | None = None) -> pa.Table:
        """Per round: human and synthetic counts and shares, by generation, and the alarm.

        ``unlabelled``: the round's slots without a label. ``flagged`` marks a live
        round whose human share is below ``floor``: real data
        was silently substituted by synthetic data. ``rolled_back`` marks a round a
        rollback set aside (shown, never flagged: its model was discarded). The counts
        are :meth:`round_summary`'s.
        """
        floor = check_fraction(floor, "the audit floor", zero=True)
        summary = self.round_summary(run)
        cols = [
            "run", "round", "total", "human", "synthetic", "human_share", "reservoir_share",
            "unlabelled",
        ]  # fmt: skip
        below = pc.less(summary["human_share"], floor)
        table = (
            summary.select(cols)
            .append_column("flagged", pc.and_(below, pc.invert(summary["rolled_back"])))
            .append_column("rolled_back", summary["rolled_back"])
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
