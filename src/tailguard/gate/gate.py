"""The gate: run verifiers over a round's candidates and decide accepted or rejected.

``Gate.run(table)`` is pure (no ledger): it returns a :class:`GateResult` with
every verdict. ``Gate.run_round(ledger, round)`` gates a round's synthetic
candidates, stores every verdict and moves each candidate to ``accepted`` or
``rejected``; nothing is deleted.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tailguard.engines import Engine, InProcess, ProcessPool
from tailguard.errors import ConfigError, InputError
from tailguard.gate.base import (
    LEDGER_VERDICT_SCHEMA,
    RESULT_VERDICT_SCHEMA,
    GateDefaults,
    Verdict,
    Verifier,
    _error_verdicts,
    safe_verify,
)
from tailguard.gate.config import build_verifier, gate_section, read_references
from tailguard.gate.dedup import ExactDuplicate, FingerprintStore, NearDuplicate
from tailguard.records import Origin, Status

if TYPE_CHECKING:
    from tailguard.ledger import Ledger


#: Rows of one shared chunk of a constant column (see :func:`constant_column`).
_CONSTANT_ROWS = 65_536


def constant_column(value: str, m: int) -> pa.ChunkedArray:
    """``value`` ``m`` times, as one chunk repeated: the memory of a chunk, whatever ``m``.

    A single repeated string array would hold ``m`` copies of the text, and past 2 GB
    (10M verdicts of a verifier with 200 bytes of parameters) its 32-bit offsets wrap.
    """
    chunk = pa.repeat(pa.scalar(value, pa.string()), min(m, _CONSTANT_ROWS))
    whole, rest = divmod(m, _CONSTANT_ROWS)
    parts = [chunk] * whole + ([chunk.slice(0, rest)] if rest else [])
    return pa.chunked_array(parts or [chunk], pa.string())


def label_verdicts(out: pa.Table, verifier: Verifier, params: str | None = None) -> pa.Table:
    """A verifier's verdicts (with ids) labelled with its name, parameters and version."""
    m = out.num_rows
    params = verifier.params_json() if params is None else params
    out = out.append_column("verifier", constant_column(verifier.name, m))
    out = out.append_column("params", constant_column(params, m))
    out = out.append_column("version", constant_column(str(verifier.version), m))
    return out.select(RESULT_VERDICT_SCHEMA.names).cast(RESULT_VERDICT_SCHEMA)


class _SafeVerify:
    """A picklable batch function: one verifier's verdicts with ids, never raising."""

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = safe_verify(self.verifier, batch)
        return out.add_column(0, "id", batch.column("id"))


@dataclass(frozen=True)
class GateResult:
    """Every verdict of one gate run, and the decision for each record.

    ``verdicts`` has one row per record x verifier (:data:`RESULT_VERDICT_SCHEMA`);
    a record is accepted when it passed every verifier.
    """

    ids: pa.Array
    accepted: np.ndarray  # bool, aligned with ids
    verdicts: pa.Table
    verifiers: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def empty(self) -> bool:
        return self.n == 0

    @property
    def accepted_ids(self) -> pa.Array:
        return self.ids.filter(pa.array(self.accepted))

    @property
    def rejected_ids(self) -> pa.Array:
        return self.ids.filter(pa.array(~self.accepted))

    @property
    def pass_rate(self) -> float:
        return float(self.accepted.mean()) if self.n else float("nan")

    def pass_rates(self) -> pa.Table:
        """Per verifier: records seen, passed, and the pass rate."""
        g = self.verdicts.group_by("verifier", use_threads=False).aggregate(
            [("passed", "count"), ("passed", "sum")]
        )
        n = g.column("passed_count")
        passed = g.column("passed_sum")
        rate = pc.divide(pc.cast(passed, pa.float64()), pc.cast(n, pa.float64()))
        return pa.table(
            {"verifier": g.column("verifier"), "records": n, "passed": passed, "pass_rate": rate}
        )

    def reasons(self, *, failed_only: bool = True, top: int | None = None) -> pa.Table:
        """Counts by verifier and reason code, most frequent first.

        The same grouping as ``Ledger.rejection_reasons``, so the CLI and the report agree.
        """
        v = (
            self.verdicts.filter(pc.invert(self.verdicts["passed"]))
            if failed_only
            else self.verdicts
        )
        g = v.group_by(["verifier", "code"], use_threads=False).aggregate([("code", "count")])
        g = g.rename_columns(["verifier", "code", "count"]).sort_by(
            [("count", "descending"), ("verifier", "ascending"), ("code", "ascending")]
        )
        return g.slice(0, top) if top is not None else g

    def explain(self, record_id: str) -> list[Verdict]:
        """Every verdict on one record."""
        return Verdict.rows(self.verdicts.filter(pc.equal(self.verdicts["id"], record_id)))

    def for_ledger(self, round: int) -> pa.Table:  # noqa: A002
        """The verdicts with their round, in the ledger's columns."""
        n = self.verdicts.num_rows
        t = self.verdicts.add_column(1, "round", pa.repeat(pa.scalar(round, pa.int32()), n))
        return t.select(LEDGER_VERDICT_SCHEMA.names).cast(LEDGER_VERDICT_SCHEMA)


class Gate(GateDefaults):
    """Run a list of verifiers over candidates; a record must pass them all.

    ``engine`` decides where row-independent verifiers run. ``None`` runs them
    in-process: measured on this project's verifiers (``bench/scale.py``), a local
    process pool pays more to pickle batches than it saves (300k records: 9.7 s
    in-process against 161 s in a pool), so a pool is used only when asked for,
    with ``engine=ProcessPool()`` or ``parallel_min`` (records from which a pool
    is started; for slow per-record verifiers such as code execution). A
    verifier that does not pickle always runs in-process. Verifiers that need
    the whole pool (duplicate search) take it ``slice_size`` candidates at a time
    (:meth:`run_slices`): a round's texts are never all in memory; for data larger
    than one machine see :mod:`tailguard.gate.distributed`.

    ``earlier_generations`` (on by default): in :meth:`run_round`, the duplicate
    verifiers also compare with the synthetic records the gate accepted in earlier
    rounds, so a later generation cannot re-add what an earlier one contributed.
    """

    def __init__(
        self,
        verifiers: Sequence[Verifier],
        *,
        engine: Engine | None = None,
        batch_size: int = GateDefaults.BATCH_SIZE,
        parallel_min: int | None = GateDefaults.PARALLEL_MIN,
        progress: bool = True,
        earlier_generations: bool = True,
        slice_size: int = GateDefaults.SLICE_SIZE,
        spill_dir: str | None = None,
    ) -> None:
        verifiers = list(verifiers)
        if not isinstance(slice_size, int) or isinstance(slice_size, bool) or slice_size < 1:
            raise ConfigError(f"slice_size must be a whole number >= 1, got {slice_size!r}")
        if not verifiers:
            raise ConfigError("a gate needs at least one verifier")
        for v in verifiers:
            if not isinstance(v, Verifier):
                raise ConfigError(f"{v!r} is not a Verifier")
        names = [v.name for v in verifiers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"two verifiers are named {dupes[0]!r}: give each a distinct `name`")
        self.verifiers = verifiers
        self.engine = engine
        self.batch_size = batch_size
        self.parallel_min = parallel_min
        self.progress = progress
        self.earlier_generations = earlier_generations
        self.slice_size = slice_size
        self.spill_dir = spill_dir

    @classmethod
    def from_config(cls, config: Any, **kwargs: Any) -> Gate:
        """Build a gate from the ``[gate]`` table of ``tailguard.toml`` (see docs/gate.md).

        Keywords: ``reference`` (the reservoir table for duplicate verifiers),
        ``source`` (the file name for messages), ``base_dir`` (for relative paths),
        ``progress``.
        """
        return gate_from_config(config, **kwargs)

    def params(self) -> dict[str, Any]:
        return {
            v.name: {"kind": v.kind, "version": v.version, **v.params()} for v in self.verifiers
        }

    def prepare(self) -> int:
        """Compute every duplicate verifier's reference fingerprints now (stored in the
        ledger given as ``fingerprints=``): ``reservoir freeze`` does, once per reservoir.
        Returns the most reference records any of them compares with (0: none)."""
        return max((v.prepare() for v in self.verifiers if hasattr(v, "prepare")), default=0)

    def _engine_for(self, verifier: Verifier, n: int) -> Engine:
        if self.engine is not None:
            engine = self.engine
        elif self.parallel_min is not None and n >= self.parallel_min:
            engine = ProcessPool()
        else:
            return InProcess()
        if not isinstance(engine, InProcess):
            try:
                pickle.dumps(verifier)
            except Exception:  # noqa: BLE001 - e.g. a lambda: run it here instead
                return InProcess()
        return engine

    def run(self, table: pa.Table, *, earlier: pa.Table | None = None) -> GateResult:
        """Gate every record of ``table`` (needs ``id`` and ``content``; each id once).

        ``earlier`` (``id``, ``content``, ``generation``): accepted synthetic records of
        earlier generations the duplicate verifiers also compare with.
        """
        for col in ("id", "content"):
            if col not in table.column_names:
                raise InputError(f"the gate needs a {col!r} column", field=col)
        table = _first_per_id(table)
        step = max(self.slice_size, 1)
        slices = (table.slice(lo, step) for lo in range(0, table.num_rows, step))
        return self.run_slices(slices, table.num_rows, earlier=earlier)

    def run_slices(
        self, slices: Iterable[pa.Table], n: int | None = None, *, earlier: pa.Table | None = None
    ) -> GateResult:
        """Gate a round given as slices (each with ``id`` and ``content``; a record
        repeating the previous slice's last id is skipped, as ledger slices come by
        id), holding one slice's texts at a time: row-independent verifiers judge each
        slice, duplicate verifiers compare it with their references' index and keep its
        keys or signatures for the search within the round. ``n``: the records
        expected, for the progress bar. The verdicts equal :meth:`run` on the whole
        table, whatever the slices' size.
        """
        verifiers = [
            v.with_earlier(earlier) if earlier is not None and hasattr(v, "with_earlier") else v
            for v in self.verifiers
        ]
        scans = [_SafeScan(v, self.spill_dir) if hasattr(v, "scan") else None for v in verifiers]
        parts: list[list[pa.Table]] = [[] for _ in verifiers]
        ids: list[pa.Array] = []
        with _progress_bar(self.progress) as bar:
            tasks = [bar.add_task(v.name, total=n) for v in verifiers] if bar else []
            for table in _distinct(slices):
                ids.append(table.column("id").combine_chunks())
                for i, v in enumerate(verifiers):
                    advance = (lambda k, t=tasks[i]: bar.advance(t, k)) if bar else None
                    scan = scans[i]
                    if scan is not None:
                        scan.add(table)
                        if advance:
                            advance(table.num_rows)
                        continue
                    fn = _SafeVerify(v)
                    if v.row_independent:
                        out = self._engine_for(v, n or table.num_rows).map_batches(
                            fn, table, batch_size=self.batch_size, progress=advance
                        )
                    else:
                        out = fn(table)
                        if advance:
                            advance(table.num_rows)
                    parts[i].append(out)
        all_ids = pa.concat_arrays(ids) if ids else pa.array([], pa.string())
        if len(all_ids) == 0:
            return GateResult(
                all_ids,
                np.zeros(0, bool),
                RESULT_VERDICT_SCHEMA.empty_table(),
                tuple(v.name for v in self.verifiers),
                ("nothing to gate",),
            )
        labelled = []
        passed = np.ones(len(all_ids), bool)
        for v, scan, own in zip(verifiers, scans, parts, strict=True):
            out = scan.finish(all_ids) if scan is not None else pa.concat_tables(own)
            out = label_verdicts(out, v)
            passed &= out.column("passed").to_numpy(zero_copy_only=False)
            labelled.append(out)
        return GateResult(
            all_ids, passed, pa.concat_tables(labelled), tuple(v.name for v in self.verifiers)
        )

    def run_round(self, ledger: Ledger, round: int) -> GateResult:  # noqa: A002
        """Gate round ``round``'s synthetic candidates, store verdicts, set statuses.

        The candidates are read from the ledger ``slice_size`` at a time, so their
        texts are never all in memory at once (:meth:`run_slices`)."""
        where = {
            "round": round,
            "status": Status.CANDIDATE.value,
            "origin": Origin.SYNTHETIC.value,
        }
        result = self.run_slices(
            ledger.record_slices(self.slice_size, **where),
            ledger.count(**where),
            earlier=self._earlier(ledger, round),
        )
        if result.empty:
            return result
        # One transaction: verdicts stored and statuses moved together, or neither.
        ledger.record_gate(
            round,
            result.for_ledger(round),
            accepted=result.accepted_ids,
            rejected=result.rejected_ids,
        )
        return result

    def _earlier(self, ledger: Ledger, round: int) -> pa.Table | None:  # noqa: A002
        """Accepted synthetic records of rounds before ``round`` (rolled-back ones are
        quarantined, so not among them), if the gate compares with them."""
        if not self.earlier_generations or round < 1:
            return None
        accepted = ledger.records(
            origin=Origin.SYNTHETIC.value,
            status=Status.ACCEPTED.value,
            columns=["id", "content", "generation", "round"],
        )
        return accepted.filter(pc.less(accepted["round"], round))

    def __repr__(self) -> str:
        return f"Gate({self.verifiers!r})"


class _SafeScan:
    """A duplicate verifier's slice-by-slice search that, like :func:`safe_verify`,
    never raises: a failure fails every record with the exception as the detail."""

    def __init__(self, verifier: Any, spill_dir: str | None) -> None:
        self.scan = verifier.scan(spill_dir)
        self.failed: BaseException | None = None

    def add(self, table: pa.Table) -> None:
        if self.failed is None:
            try:
                self.scan.add(table)
            except Exception as exc:  # noqa: BLE001 - a verifier's failure is a verdict
                self.failed = exc

    def finish(self, ids: pa.Array) -> pa.Table:
        out = None
        if self.failed is None:
            try:
                out = self.scan.finish()
            except Exception as exc:  # noqa: BLE001
                self.failed = exc
        if out is None:
            out = _error_verdicts(self.failed or RuntimeError("no verdicts"), len(ids))
        return out.add_column(0, "id", ids)


def _distinct(slices: Iterable[pa.Table]) -> Iterator[pa.Table]:
    """Each slice with one row per id, and without the previous slice's last id."""
    last = None
    for table in slices:
        table = _first_per_id(table)
        if last is not None and table.num_rows:
            table = table.filter(pc.not_equal(table.column("id"), last))
        if table.num_rows:
            last = table.column("id")[-1]
            yield table


def _first_per_id(table: pa.Table) -> pa.Table:
    """One row per content id (the first): content, not occurrences, is gated."""
    if table.num_rows == 0:
        return table
    ids = table.column("id")
    if ids.null_count:
        raise InputError("a record has no id", field="id")
    if pc.count_distinct(ids).as_py() == table.num_rows:
        return table
    _, first = np.unique(
        np.asarray(ids.to_numpy(zero_copy_only=False), dtype=object), return_index=True
    )
    return table.take(pa.array(np.sort(first)))


class _NoBar:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _progress_bar(enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
    )


def gate_from_config(
    config: Any,
    *,
    reference: pa.Table | None = None,
    source: str = "config",
    base_dir: str | Path | None = None,
    progress: bool = True,
    fingerprints: FingerprintStore | None = None,
) -> Gate:
    """Build a :class:`Gate` from a config: a loaded ``tailguard.toml``
    (``tailguard.config.load_config``), its ``[gate]`` section, or a plain dict.

    ``reference`` is the reservoir (``id``, ``content``) given to duplicate verifiers
    whose ``reference`` is ``"reservoir"`` (the default). Every entry is checked before
    anything runs; an error names the key. Relative paths resolve against ``base_dir``,
    by default the loaded config file's folder. ``fingerprints`` (the ledger the
    reference came from) keeps the reference's duplicate fingerprints between runs.
    """
    from tailguard.engines import engine_from_name

    section = gate_section(config, source=source)
    if base_dir is None and not isinstance(config, dict):
        base_dir = getattr(config, "base_dir", None)  # a loaded file's folder
    references = read_references(section, base_dir=base_dir, source=source)
    verifiers = [
        build_verifier(
            spec,
            reference=reference,
            references=references,
            base_dir=base_dir,
            where=f"{source}: gate.verifiers.{i}",
        )
        for i, spec in enumerate(section.verifiers)
    ]
    if fingerprints is not None:
        for v in verifiers:
            if isinstance(v, ExactDuplicate | NearDuplicate):
                v.keep_fingerprints_in(fingerprints)
    engine = None if section.engine is None else engine_from_name(section.engine)
    return Gate(
        verifiers,
        engine=engine,
        batch_size=section.batch_size,
        parallel_min=section.parallel_min,
        slice_size=section.slice_size,
        progress=progress,
        earlier_generations=section.earlier_generations,
    )
