"""The verifier contract, the columnar verdict table, and the gate that runs verifiers.

A verifier rules on a whole batch at once and answers with a *verdict table*
(:data:`VERDICT_SCHEMA`: ``passed``, ``code``, ``detail``, ``score``,
``matched_id``), one row per input record, in input order. ``code`` is a stable
name for the cause (``near_duplicate``, ``too_short``, ...) that the CLI, the
ledger and the report count by; ``detail`` is the human sentence for this record
(``J~0.91 with reservoir record ...``), as datatrove's filters do. Columns
instead of a list of objects keep the hot path vectorised; :class:`Verdict` is
the one-record view used by ``--explain`` and reports.
"""

from __future__ import annotations

import inspect
import json
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tailguard.errors import InputError
from tailguard.gate.worker import Worker, check_seconds, error_detail
from tailguard.records import ERROR_CODE, FAIL_CODE, PASS_CODE, VERDICT_ROWS
from tailguard.records import NO_GATE_CODE as NO_GATE_CODE  # re-exported with the others

#: What :meth:`Verifier.verify` returns: one row per record, in input order.
VERDICT_SCHEMA = pa.schema(
    [
        pa.field("passed", pa.bool_(), nullable=False),
        pa.field("code", pa.string(), nullable=False),
        pa.field("detail", pa.string(), nullable=False),
        pa.field("score", pa.float64()),
        pa.field("matched_id", pa.string()),
    ]
)

#: One row per record x verifier, as the ledger stores them (``Ledger.record_gate``).
LEDGER_VERDICT_SCHEMA = VERDICT_ROWS

#: The verdict table of a gate run before it has a round (ledger columns minus ``round``).
RESULT_VERDICT_SCHEMA = pa.schema([f for f in LEDGER_VERDICT_SCHEMA if f.name != "round"])


class Reason(NamedTuple):
    """A stable cause ``code`` and the human ``detail`` (what a user function may return)."""

    code: str
    detail: str = ""


def verdicts(
    passed: Any,
    code: Any = None,
    detail: Any = None,
    *,
    score: Any = None,
    matched_id: Any = None,
) -> pa.Table:
    """Build a verdict table from columns (arrays, lists or scalars broadcast to ``passed``).

    A passed record's code is always ``"ok"``, so a verifier may give one code for
    all; a failed record's defaults to ``"rejected"``. ``detail`` defaults to the
    code, so a verifier only has to name what went wrong.
    """
    ok = pa.array(np.asarray(passed, dtype=bool))
    n = len(ok)

    def column(values: Any, kind: pa.DataType) -> pa.Array:
        if values is None:
            return pa.nulls(n, kind)
        if isinstance(values, str | float | int):
            return pa.array(np.full(n, values).tolist(), kind) if n else pa.array([], kind)
        arr = (
            values
            if isinstance(values, pa.Array | pa.ChunkedArray)
            else pa.array(values, from_pandas=True)
        )  # NaN means "no score": null
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if len(arr) != n:
            raise ValueError(f"verdict column has {len(arr)} values for {n} records")
        return arr.cast(kind)

    given = pc.if_else(ok, pa.scalar(None, pa.string()), column(code, pa.string()))
    codes = pc.coalesce(given, pc.if_else(ok, PASS_CODE, FAIL_CODE))
    details = pc.coalesce(column(detail, pa.string()), codes)
    return pa.table(
        [ok, codes, details, column(score, pa.float64()), column(matched_id, pa.string())],
        schema=VERDICT_SCHEMA,
    )


@dataclass(frozen=True)
class Verdict:
    """One verifier's ruling on one record: the single-record view of a verdict row."""

    id: str
    verifier: str
    passed: bool
    code: str
    detail: str
    score: float | None = None
    matched_id: str | None = None
    params: str = "{}"
    version: str = ""
    round: int | None = None

    @classmethod
    def rows(cls, table: pa.Table) -> list[Verdict]:
        """Every row of a (result or ledger) verdict table as a :class:`Verdict`."""
        names = {f.name for f in cls.__dataclass_fields__.values()}  # type: ignore[attr-defined]
        return [cls(**{k: v for k, v in row.items() if k in names}) for row in table.to_pylist()]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class GateDefaults:
    """The gate's defaults (:class:`~tailguard.gate.gate.Gate` inherits them), here so that
    the ``[gate]`` section, which the gate is built from, imports them from below."""

    #: Records per worker batch, and the table size from which a process pool is used
    #: (``None``: never by default).
    BATCH_SIZE: int = 2048
    PARALLEL_MIN: int | None = None
    #: Candidates read and searched at a time in ``Gate.run_round`` (bounds the texts held).
    SLICE_SIZE: int = 100_000


#: A :class:`Toml` whose parameter has no default in ``tailguard.toml`` (a key to give).
REQUIRED: Any = object()


@dataclass(frozen=True)
class Toml:
    """How ``tailguard.toml`` writes a parameter whose Python form TOML cannot hold.

    ``type`` is the TOML value's type (constraints in ``Annotated``); ``key`` the
    table's key when it is not the parameter's name (a judge's ``entry`` for ``fn``);
    ``convert`` turns the TOML value into the Python one (a ``ValueError`` names the
    problem); ``default`` overrides the signature's (``None`` keeps it; :data:`REQUIRED`:
    the key must be given). A ``passed=False`` parameter is the gate's to fill (the
    duplicate verifiers' ``reference`` and ``references`` name sets the gate reads).
    """

    type: Any
    key: str | None = None
    convert: Callable[[Any], Any] | None = None
    default: Any = None
    passed: bool = True


class Verifier:
    """Base class of every verifier: a name, explicit keyword parameters, ``verify``.

    Subclasses set ``kind`` (the name used in ``tailguard.toml``) and ``version``
    (bump it when the rule changes, so old verdicts stay explainable), take
    only keyword parameters in ``__init__`` and store each under its own name,
    and implement :meth:`verify`. ``row_independent = False`` tells the gate a
    verifier must see the whole pool at once (duplicate search) rather than be
    split across worker processes.

    The ``__init__`` signature is the one declaration of the parameters: the config's
    ``[[gate.verifiers]]`` table of a registered kind (:func:`tailguard.gate.section.register`)
    is built from its names, types (constraints in ``Annotated``: ``Annotated[int,
    Field(ge=1)]``) and defaults; a parameter typed ``Path`` is a file, resolved against
    the config's folder; ``toml`` declares the TOML form of the few that TOML cannot hold.
    """

    kind: ClassVar[str] = "verifier"
    version: ClassVar[str] = "1"
    #: Wall-clock seconds a batch may take in a verifier of the user's own (a subclass
    #: outside tailguard): it runs in a killable worker process, and a batch that
    #: overruns fails with code ``timeout`` (see :func:`safe_verify`). Built-in
    #: verifiers run in the gate's process and bound their own user-influenced work.
    timeout: float = 60.0
    row_independent: ClassVar[bool] = True
    #: The codes a failed verdict of this verifier can carry (besides ``error``).
    codes: ClassVar[tuple[str, ...]] = (FAIL_CODE,)
    #: Columns of the record table the verifier reads (beyond ``id`` and ``content``).
    columns: ClassVar[tuple[str, ...]] = ()
    #: The TOML form of parameters whose Python form is not TOML (see :class:`Toml`).
    toml: ClassVar[Mapping[str, Toml]] = {}

    _name: str | None = None

    @property
    def name(self) -> str:
        """The verifier's name in verdicts: its kind unless renamed (two of one kind)."""
        return self._name or self.kind

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    def params(self) -> dict[str, Any]:
        """The constructor's keyword parameters, JSON-able, as stored in the ledger."""
        sig = inspect.signature(type(self).__init__)
        out = {}
        for p in sig.parameters.values():
            if p.name == "self" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            out[p.name] = _jsonable(getattr(self, p.name, None))
        return out

    def params_json(self) -> str:
        return json.dumps(self.params(), sort_keys=True, default=str)

    def verify(self, batch: pa.Table) -> pa.Table:  # pragma: no cover - abstract
        """Rule on every record of ``batch`` (columns ``id``, ``content``, ...).

        Answer with :func:`verdicts`: a stable ``code`` per cause (one per distinct
        way a record fails, listed in the class's ``codes``) and a human ``detail``.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [_jsonable(v) for v in value]
    if hasattr(value, "to_dict"):
        return _jsonable(value.to_dict())
    return str(value)


def safe_verify(verifier: Verifier, batch: pa.Table) -> pa.Table:
    """Run a verifier so that whatever it does, each record gets a verdict.

    An exception (or a malformed answer) fails the records it concerns with the
    exception as the detail (code ``error``); it never stops the gate. For a row-independent
    verifier a failing batch is retried record by record, so one poisonous
    record does not fail its neighbours.

    A verifier of the user's own (its class defined outside tailguard) runs in a
    killable worker process under its ``timeout``: one that never returns, or holds
    the interpreter in C code, cannot hang the gate; its batch fails with code
    ``timeout``. Built-in verifiers keep the in-process path.
    """
    if not type(verifier).__module__.startswith("tailguard."):
        return _isolated_verify(verifier, batch)
    try:
        return _checked(verifier.verify(batch), batch.num_rows)
    except Exception as exc:  # noqa: BLE001 - a verifier's failure is a verdict
        if not verifier.row_independent or batch.num_rows <= 1:
            return _error_verdicts(exc, batch.num_rows)
    parts = []
    for i in range(batch.num_rows):  # only on the error path
        try:
            parts.append(_checked(verifier.verify(batch.slice(i, 1)), 1))
        except Exception as exc:  # noqa: BLE001
            parts.append(_error_verdicts(exc, 1))
    return pa.concat_tables(parts)


#: Worker processes of user verifiers, by ``id`` of the verifier (dropped with it).
_WORKERS: dict[int, Any] = {}


def _worker_for(verifier: Verifier) -> Any:
    key = id(verifier)
    worker = _WORKERS.get(key)
    if worker is None:
        worker = Worker(verifier.verify)
        try:
            weakref.finalize(verifier, _drop_worker, key)
        except TypeError:  # no weak references (``__slots__``): a worker per call
            return worker
        _WORKERS[key] = worker
    return worker


def _drop_worker(key: int) -> None:
    worker = _WORKERS.pop(key, None)
    if worker is not None:
        worker.close()


def _isolated_verify(verifier: Verifier, batch: pa.Table) -> pa.Table:
    """:func:`safe_verify` for a user's verifier: ``verify`` in a worker process, each
    call within the verifier's ``timeout``; an error is retried record by record (each
    record within the timeout), a timeout fails the whole batch."""
    n = batch.num_rows
    try:
        timeout = check_seconds(getattr(verifier, "timeout", Verifier.timeout), "timeout")
    except InputError as exc:
        return _error_verdicts(exc, n)
    worker = _worker_for(verifier)
    try:
        table, why = _answer(verifier, worker.call(batch, timeout), n, timeout)
        if table is not None:
            return table
        if n <= 1 or not verifier.row_independent:
            return verdicts(np.zeros(n, bool), ERROR_CODE, why)
        out = []
        for outcome in worker.map([batch.slice(i, 1) for i in range(n)], timeout):
            table, why = _answer(verifier, outcome, 1, timeout)  # (the error path only)
            out.append(table if table is not None else verdicts([False], ERROR_CODE, why))
        return pa.concat_tables(out)
    finally:
        if _WORKERS.get(id(verifier)) is not worker:
            worker.close()


def _answer(
    verifier: Verifier, outcome: Any, n: int, timeout: float
) -> tuple[pa.Table | None, str]:
    """One worker outcome as verdicts, or ``(None, why)`` for an error (to retry)."""
    if outcome.kind == "timeout":
        detail = f"{verifier.name} gave no answer within {timeout:g}s"
        return verdicts(np.zeros(n, bool), "timeout", detail), ""
    if outcome.kind != "ok":
        return None, str(outcome.value)
    try:
        return _checked(outcome.value, n), ""
    except Exception as exc:  # noqa: BLE001 - a malformed answer is an error verdict
        return None, error_detail(exc)


def _checked(out: Any, n: int) -> pa.Table:
    if not isinstance(out, pa.Table):
        raise TypeError(f"verify returned {type(out).__name__}, not a pyarrow.Table")
    if out.num_rows != n:
        raise ValueError(f"verify returned {out.num_rows} verdicts for {n} records")
    if "passed" not in out.column_names:
        raise ValueError("verify's table lacks column 'passed'")
    cols = {
        name: out.column(name) if name in out.column_names else pa.nulls(n, f.type)
        for name, f in zip(VERDICT_SCHEMA.names, VERDICT_SCHEMA, strict=True)
    }
    if "detail" not in out.column_names and "reason" in out.column_names:
        cols["detail"] = out.column("reason")  # a bare reason: the detail of a generic code
    if out.column("passed").null_count:
        raise ValueError("verify returned a null 'passed'")
    return verdicts(
        cols["passed"].to_numpy(zero_copy_only=False),
        cols["code"],
        cols["detail"],
        score=cols["score"],
        matched_id=cols["matched_id"],
    )


def _error_verdicts(exc: BaseException, n: int) -> pa.Table:
    return verdicts(np.zeros(n, bool), ERROR_CODE, error_detail(exc))


def require_columns(batch: pa.Table, names: Sequence[str], verifier: str) -> None:
    """Refuse a batch that lacks a column a verifier reads."""
    missing = [c for c in names if c not in batch.column_names]
    if missing:
        raise InputError(f"{verifier} needs column(s) {missing}", field=missing[0])
