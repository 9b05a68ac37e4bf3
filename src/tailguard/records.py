"""The record schema, provenance vocabulary and content ids.

A record is one training example with its provenance. Everything that moves
between tailguard's stages is an Arrow table in :data:`SCHEMA`.

Content normalisation (what an id is computed from):

1. Unicode NFC, so composed and decomposed accents are one text;
2. line endings ``\\r\\n`` and ``\\r`` become ``\\n``; leading and trailing
   whitespace is stripped (this is the stored ``content``);
3. for the id only, every run of whitespace becomes one space.

The id is the MD5 digest (128 bits, 32 hex digits) of the UTF-8 bytes of that
normalised text: it names content, not an occurrence, and is the same on any
machine. MD5 is used as a fingerprint here, not for security.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tailguard.errors import InputError


class Origin(StrEnum):
    """Who wrote an example."""

    HUMAN = "human"
    SYNTHETIC = "synthetic"


class Status(StrEnum):
    """Where an example stands with the gate."""

    CANDIDATE = "candidate"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    #: A "human" record screened as likely model-written: kept, never frozen or trained on.
    QUARANTINED = "quarantined"


SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("content", pa.string(), nullable=False),
        pa.field("origin", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("generator", pa.string()),
        pa.field("generation", pa.int32(), nullable=False),
        pa.field("parent_id", pa.string()),
        pa.field("label", pa.string()),
        pa.field("round", pa.int32(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("meta", pa.string()),
    ]
)

#: The code of a passed verdict.
PASS_CODE = "ok"
#: The code of a failed verdict whose verifier named no cause (e.g. a bare ``False``).
FAIL_CODE = "rejected"
#: The code of a verdict whose verifier raised or answered malformed.
ERROR_CODE = "error"
#: The code the loop records when no gate is configured (every candidate accepted).
NO_GATE_CODE = "no_gate"

#: One row per record x verifier, as the ledger stores the gate's verdicts: a stable
#: reason ``code`` (what the CLI, ledger and report count by) and the human ``detail``.
VERDICT_ROWS = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("round", pa.int32(), nullable=False),
        pa.field("verifier", pa.string(), nullable=False),
        pa.field("params", pa.string(), nullable=False),
        pa.field("version", pa.string(), nullable=False),
        pa.field("passed", pa.bool_(), nullable=False),
        pa.field("code", pa.string(), nullable=False),
        pa.field("detail", pa.string(), nullable=False),
        pa.field("score", pa.float64()),
        pa.field("matched_id", pa.string()),
    ]
)

#: One row per run, round, sample and metric: the monitor's history as the ledger keeps it.
METRIC_ROWS = pa.schema(
    [
        pa.field("run", pa.string()),
        pa.field("round", pa.int32()),
        pa.field("sample", pa.string()),
        pa.field("metric", pa.string()),
        pa.field("value", pa.float64()),
        pa.field("higher_is_better", pa.bool_()),
    ]
)

#: Columns that, with ``id``, identify one occurrence: same content, same provenance.
PROVENANCE_KEY = ("id", "origin", "source", "generator", "generation")


#: A verifier audit as ``Ledger.record_audits`` takes it: one row per verifier audited on
#: a labelled sample (the ledger adds ``audited_at`` and ``audited_by``). Shares are null
#: when their denominator is zero; ``_low``/``_high``: the Wilson interval at ``confidence``.
AUDIT_ROWS = pa.schema(
    [
        pa.field("verifier", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("version", pa.string(), nullable=False),
        pa.field("params", pa.string(), nullable=False),
        pa.field("sample", pa.string(), nullable=False),
        pa.field("sample_digest", pa.string(), nullable=False),
        pa.field("n_good", pa.int64(), nullable=False),
        pa.field("n_bad", pa.int64(), nullable=False),
        pa.field("accepted_good", pa.int64(), nullable=False),
        pa.field("accepted_bad", pa.int64(), nullable=False),
        *(
            pa.field(f"{share}{end}", pa.float64())
            for share in ("precision", "recall", "specificity")
            for end in ("", "_low", "_high")
        ),
        pa.field("confidence", pa.float64(), nullable=False),
    ]
)


def normalise_content(content: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    """Apply steps 1-2 of the normalisation to a column of texts (vectorised)."""
    # ASCII text is already NFC, and a byte scan is far cheaper than normalising.
    text = pa.chunked_array(
        [
            chunk if (_utf8_bytes(chunk)[1] < 0x80).all() else pc.utf8_normalize(chunk, "NFC")
            for chunk in _chunked(content).chunks
        ],
        content.type,
    )
    # Most data has no carriage return: a byte scan is far cheaper than the regex.
    if any((_utf8_bytes(chunk)[1] == ord("\r")).any() for chunk in text.chunks):
        text = pc.replace_substring_regex(text, r"\r\n?", "\n")
    return _chunked(pc.utf8_trim_whitespace(text))


def content_keys(content: pa.Array | pa.ChunkedArray) -> pa.Array:
    """What the ids of already-normalised texts are the MD5 of: whitespace runs collapsed.

    The ledger hashes these keys inside its INSERT (see :func:`content_id_sql`), so
    ingest never materialises a column of ids on the Python side.
    """
    return _collapse_whitespace(_chunked(content).combine_chunks())


def content_id_sql(key: str) -> str:
    """The DuckDB expression giving the content ids of a column of :func:`content_keys`."""
    return f"md5({key})"


def content_ids(content: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    """Content ids of already-normalised texts: md5 of whitespace-collapsed text."""
    return _ids_of_keys(content_keys(content))


#: Below this many texts, ids are hashed in Python: a DuckDB query costs milliseconds.
SMALL_BATCH = 4096


def _ids_of_keys(keys: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    if len(keys) < SMALL_BATCH:
        md5 = hashlib.md5
        ids = [None if k is None else md5(k.encode()).hexdigest() for k in keys.to_pylist()]
        return pa.chunked_array([pa.array(ids, pa.string())])
    # (Imported here: the ledger package is built on this module.)
    from tailguard.ledger.scratch import select

    return select(keys, content_id_sql("k"), column="k")


def _collapse_whitespace(texts: pa.Array) -> pa.Array:
    """Collapse whitespace runs to one space, running the regex only where it changes something.

    The regex's ``\\s`` is ``[\\t\\n\\f\\r ]`` (RE2, as in DuckDB), so a text can only change
    if it holds a control byte or two spaces in a row; UTF-8 never uses those bytes inside
    a multi-byte character. Flagging a few texts that would not change is harmless.
    """
    offsets, data = _utf8_bytes(texts)
    flags = data < ord(" ")
    space = data == ord(" ")
    flags[:-1] |= space[:-1] & space[1:]
    hits = np.flatnonzero(flags)
    if hits.size == 0:
        return texts
    irregular = np.zeros(len(texts), dtype=bool)
    irregular[np.searchsorted(offsets, hits, side="right") - 1] = True
    mask = pa.array(irregular)
    fixed = pc.replace_substring_regex(texts.filter(mask), r"\s+", " ")
    return pc.replace_with_mask(texts, mask, fixed)


def _utf8_bytes(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A string array's offsets (from 0) and the bytes they index, as views (no copy)."""
    if len(texts) == 0:
        return np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.uint8)
    width = np.dtype(np.int64 if pa.types.is_large_string(texts.type) else np.int32)
    _, offset_buf, data_buf = texts.buffers()
    offsets = np.frombuffer(
        offset_buf, width, count=len(texts) + 1, offset=texts.offset * width.itemsize
    )
    start, end = int(offsets[0]), int(offsets[-1])
    data = np.frombuffer(data_buf, np.uint8)[start:end] if data_buf else np.zeros(0, np.uint8)
    return offsets - start, data


def content_id(text: str) -> str:
    """The content id of one text (same rule as :func:`content_ids`)."""
    return content_ids(normalise_content(pa.array([text])))[0].as_py()


def make_records(
    content: Sequence[str] | pa.Array | pa.ChunkedArray,
    *,
    origin: Origin | str,
    source: str,
    generator: str | None = None,
    generation: int = 0,
    round: int = 0,  # noqa: A002 - the schema's own name
    label: Sequence[str | None] | pa.Array | pa.ChunkedArray | None = None,
    parent_id: Sequence[str | None] | pa.Array | pa.ChunkedArray | None = None,
    status: Status | str | None = None,
    meta: Sequence[dict[str, Any] | None] | None = None,
    created_at: dt.datetime | None = None,
) -> pa.Table:
    """Build a table of records in :data:`SCHEMA`, normalising content and computing ids.

    Human records are ``accepted`` by default (people are the reference);
    synthetic records start as ``candidate`` until the gate rules on them.
    """
    origin, status = resolve_provenance(
        origin=origin, generator=generator, generation=generation, status=status
    )
    rows = record_rows(content, label=label, parent_id=parent_id)
    n = rows.num_rows
    stamp = created_at or dt.datetime.now(dt.UTC)
    columns = {
        "id": _ids_of_keys(rows.column("key")),
        "content": rows.column("content"),
        "origin": pa.repeat(pa.scalar(origin.value), n),
        "source": pa.repeat(pa.scalar(source), n),
        "generator": pa.repeat(pa.scalar(generator, pa.string()), n),
        "generation": pa.repeat(pa.scalar(generation, pa.int32()), n),
        "parent_id": rows.column("parent_id"),
        "label": rows.column("label"),
        "round": pa.repeat(pa.scalar(round, pa.int32()), n),
        "status": pa.repeat(pa.scalar(status.value), n),
        "created_at": pa.repeat(pa.scalar(stamp, pa.timestamp("us", tz="UTC")), n),
        "meta": pa.array(
            [None if m is None else json.dumps(m, sort_keys=True) for m in meta]
            if meta is not None
            else pa.nulls(n, pa.string()),
            pa.string(),
        ),
    }
    return pa.table({k: _chunked(v) for k, v in columns.items()}, schema=SCHEMA)


def resolve_provenance(
    *, origin: Origin | str, generator: str | None, generation: int, status: Status | str | None
) -> tuple[Origin, Status]:
    """Check that a batch's provenance is consistent; default its status by origin.

    Human records are ``accepted`` by default (people are the reference);
    synthetic records start as ``candidate`` until the gate rules on them.
    """
    try:
        origin = Origin(origin)
    except ValueError:
        raise InputError(
            f"unknown origin {origin!r}: use {' or '.join(o.value for o in Origin)}",
            field="origin",
        ) from None
    if status is not None:
        try:
            status = Status(status)
        except ValueError:
            raise InputError(
                f"unknown status {status!r}: use {', '.join(s.value for s in Status)}",
                field="status",
            ) from None
    if origin is Origin.HUMAN and (generator is not None or generation != 0):
        raise InputError("human records have no generator and generation 0", field="origin")
    if origin is Origin.SYNTHETIC and generation < 1:
        raise InputError("synthetic records need generation >= 1", field="generation")
    if status is None:
        return origin, Status.ACCEPTED if origin is Origin.HUMAN else Status.CANDIDATE
    return origin, Status(status)


def record_rows(
    content: Sequence[str] | pa.Array | pa.ChunkedArray,
    *,
    label: Sequence[str | None] | pa.Array | pa.ChunkedArray | None = None,
    parent_id: Sequence[str | None] | pa.Array | pa.ChunkedArray | None = None,
) -> pa.Table:
    """The per-record columns of a batch: normalised ``content``, its id ``key``, ``label``,
    ``parent_id``. The id is :func:`content_id_sql` of ``key``; everything else in a record
    is the same for the whole batch, which lets the ledger add it as SQL constants.
    """
    is_arrow = isinstance(content, pa.Array | pa.ChunkedArray)
    texts = content if is_arrow else pa.array(content, pa.string())
    if texts.null_count:
        raise InputError("content is missing (null)", field="content")
    texts = normalise_content(texts.cast(pa.string()))
    n = len(texts)
    return pa.table(
        {
            "content": texts,
            "key": _chunked(content_keys(texts)),
            "label": _optional_strings(label, n),
            "parent_id": _optional_strings(parent_id, n),
        }
    )


def empty_records() -> pa.Table:
    """A table in :data:`SCHEMA` with no rows."""
    return SCHEMA.empty_table()


def _optional_strings(values: Any, n: int) -> pa.ChunkedArray:
    if values is None:
        return _chunked(pa.nulls(n, pa.string()))
    arr = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values)
    if len(arr) != n:
        raise InputError(f"expected {n} values, got {len(arr)}")
    return _chunked(arr if arr.type == pa.string() else pc.cast(arr, pa.string()))


def _chunked(values: Any) -> pa.ChunkedArray:
    if isinstance(values, pa.ChunkedArray):
        return values
    if isinstance(values, pa.Array):
        return pa.chunked_array([values])
    return pa.chunked_array([pa.array(values)])


MANIFEST_SLOTS = pa.schema(
    [
        pa.field("batch", pa.int32(), nullable=False),
        pa.field("id", pa.string(), nullable=False),
        pa.field("origin", pa.string(), nullable=False),
        pa.field("generation", pa.int32(), nullable=False),
        pa.field("label", pa.string()),
    ]
)


@dataclass(frozen=True)
class Manifest:
    """A round's training plan: the ordered ids of every batch, and how it was made.

    ``slots`` holds one row per training slot, in training order, in
    :data:`MANIFEST_SLOTS`. The digest covers the header (round, policy, its
    parameters, seed) and every slot, so two plans with one digest are the same plan.
    """

    round: int
    slots: pa.Table
    policy: str
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    run: str = "main"

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        header = {
            "round": self.round,
            "policy": self.policy,
            "params": self.params,
            "seed": self.seed,
        }
        h.update(json.dumps(header, sort_keys=True, default=str).encode())
        for name in ("batch", "id", "origin", "generation"):
            _hash_column(h, self.slots.column(name))
        return h.hexdigest()

    @property
    def n_batches(self) -> int:
        return 0 if self.slots.num_rows == 0 else int(pc.max(self.slots["batch"]).as_py()) + 1

    def counts(self) -> dict[str, int]:
        """Slots by origin and generation: ``human``, ``synthetic``, ``generation_k``."""
        out = {"total": self.slots.num_rows, "human": 0, "synthetic": 0}
        grouped = self.slots.group_by(["origin", "generation"]).aggregate([("id", "count")])
        for origin, gen, n in zip(
            *(grouped.column(c).to_pylist() for c in ("origin", "generation", "id_count")),
            strict=True,
        ):
            out[origin] += n
            if origin == Origin.SYNTHETIC:
                out[f"generation_{gen}"] = n
        return out

    def batches(self) -> list[list[str]]:
        """The ids of each batch, in order (small manifests; use ``slots`` for big ones)."""
        b = self.slots.column("batch").to_numpy()
        ids = self.slots.column("id").to_pylist()
        cuts = np.flatnonzero(np.diff(b)) + 1
        bounds = [0, *cuts.tolist(), len(ids)]
        return [ids[s:e] for s, e in zip(bounds[:-1], bounds[1:], strict=True)]


def _hash_column(h: Any, column: pa.ChunkedArray) -> None:
    """Feed a column's values (not its memory layout) into a hash, vectorised."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_string(arr.type):
        arr = arr.cast(pa.large_string())
        offsets = np.frombuffer(arr.buffers()[1], np.int64)[arr.offset : arr.offset + len(arr) + 1]
        data = arr.buffers()[2]
        h.update((offsets - offsets[0]).tobytes())
        if data is not None:
            h.update(memoryview(data)[int(offsets[0]) : int(offsets[-1])])
    else:
        h.update(np.ascontiguousarray(arr.to_numpy(zero_copy_only=False)).tobytes())
