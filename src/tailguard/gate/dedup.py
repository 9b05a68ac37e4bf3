"""Duplicate verifiers: exact and near copies, of reference sets or within the pool.

A candidate that copies a human reservoir record is memorisation, not new data;
one that copies an earlier candidate, or a synthetic record an earlier generation
already contributed, adds nothing; one that copies a named reference set (an
evaluation set to decontaminate against) leaks it into training. All fail, and the
verdict names the set and record matched (``detail``, ``matched_id``) and the
similarity (``score``). Within the pool the *first* record of a group passes and
later ones fail.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import Annotated, Any, Literal, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from tailguard.errors import InputError
from tailguard.gate import minhash
from tailguard.gate.base import Toml, Verifier
from tailguard.gate.scan import ExactScan, NearScan
from tailguard.records import content_ids, normalise_content

Reference = pa.Table | Sequence[str] | Mapping[str, str] | None

#: The reference sets in ``tailguard.toml``: the gate reads the tables they name.
REFERENCE_TOML = {
    # the frozen reservoir, or none
    "reference": Toml(Literal["reservoir", "none"], default="reservoir", passed=False),
    # which sets of ``[gate.references]`` to compare with (default: every one)
    "references": Toml(list[str] | None, passed=False),
}

#: The set name of the reference given as ``reference`` (the frozen reservoir).
RESERVOIR_SET = "reservoir"


def _named_sets(reference: Reference, references: Mapping[str, Reference] | None) -> pa.Table:
    """``id``, ``content`` and ``set`` of the reservoir and every named reference set."""
    parts = [(RESERVOIR_SET, reference_table(reference))]
    for name, ref in (references or {}).items():
        if name == RESERVOIR_SET:
            raise InputError(f"reference set name {name!r} is taken by the reservoir")
        parts.append((name, reference_table(ref)))
    return pa.concat_tables(
        [t.append_column("set", pa.repeat(pa.scalar(name), t.num_rows)) for name, t in parts]
    )


class _Sets:
    """What both duplicate verifiers share: named reference sets, and the accepted
    synthetic records of earlier generations added round by round."""

    _ref: pa.Table
    _store: FingerprintStore | None
    reference: dict[str, Any]
    references: dict[str, Any]

    def _init_sets(self, reference: Reference, references: Mapping[str, Reference] | None) -> None:
        self._ref = _named_sets(reference, references)
        sets = {n: self._ref.filter(pc.equal(self._ref["set"], n)) for n in references or {}}
        ids = self._ref.select(["id", "set"])  # (a filter of the texts would copy them)
        self.reference = _describe(ids.filter(pc.equal(ids["set"], RESERVOIR_SET)))
        self.references = {n: _describe(t) for n, t in sets.items()}
        self._named = {n: t.select(["id", "content"]) for n, t in sets.items()}
        self._memory = _MemoryFingerprints()

    def _ref_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ids and set names of reference rows ``rows``. The references' ids and sets
        stay Arrow columns: Python strings are made only for the rows a search matched
        (a million reference ids as Python objects cost ~90 MB per verifier)."""
        idx = pa.array(rows, pa.int64())
        ids = self._ref.column("id").take(idx).to_numpy(zero_copy_only=False)
        sets = self._ref.column("set").take(idx).to_numpy(zero_copy_only=False)
        return np.asarray(ids, dtype=object), np.asarray(sets, dtype=object)

    @property
    def _n_ref(self) -> int:
        """Reference records compared with (every set, earlier generations included)."""
        return self._ref.num_rows

    def named_sets(self) -> dict[str, pa.Table]:
        """Each named reference set (``id``, ``content``), in the order they are compared."""
        return dict(self._named)

    def with_earlier(self, earlier: pa.Table) -> Any:
        """A copy that also compares with ``earlier`` (``id``, ``content``, ``generation``:
        accepted synthetic records of earlier generations), each named by generation."""
        if earlier.num_rows == 0:
            return self
        new = copy.copy(self)
        gens = earlier["generation"].to_numpy(zero_copy_only=False)
        names = np.char.add(np.char.add("generation ", gens.astype(str)), " synthetic")
        extra = pa.table(
            {
                "id": earlier["id"].cast(pa.string()),
                "content": earlier["content"].cast(pa.string()),
                "set": pa.array(names.astype(object), pa.string()),
            }
        )
        new._ref = pa.concat_tables([self._ref.select(["id", "set"]), extra.select(["id", "set"])])
        new.references = {**self.references, "earlier_generations": _describe(extra)}
        new._extend(self, extra)
        return new

    @property
    def _earlier_store(self) -> FingerprintStore:
        """Where earlier generations' fingerprints are kept: the ledger given to
        ``keep_fingerprints_in`` (their ids are content ids), else this process's memory."""
        return self._store if self._store is not None else self._memory

    def _signed(self, values: np.ndarray) -> np.ndarray:
        """``values`` (the references' fingerprints, just computed or read), after
        letting go of the references' texts: from here on only ids and sets are needed,
        so a round never holds the reservoir's texts."""
        if "content" in self._ref.column_names:
            self._ref = self._ref.select(["id", "set"])
        return values

    def _extend(self, base: Any, extra: pa.Table) -> None:  # pragma: no cover - abstract
        """Set this copy's fingerprints: ``base``'s (its references) and ``extra``'s."""
        raise NotImplementedError

    def prepare(self) -> int:
        """Compute the references' fingerprints and index now (read from the store where
        it has them, and kept there): at freeze, so no round pays for them. Returns the
        number of reference records."""
        self._index()
        return self._n_ref

    def _index(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class FingerprintStore(Protocol):
    """Where reference fingerprints are kept between runs (a :class:`~tailguard.ledger.Ledger`).

    Keyed by a ``kind`` (what was computed, with the verifier's version and
    parameters) and a record's content id, so a value holds for that text in
    any reference set.
    """

    def fingerprints(
        self, kind: str, ids: pa.Array | pa.ChunkedArray, width: int
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def store_fingerprints(
        self, kind: str, ids: pa.Array | pa.ChunkedArray, values: np.ndarray
    ) -> int: ...


def stored_fingerprints(
    store: FingerprintStore | None,
    kind: str,
    ref: pa.Table,
    compute: Callable[[pa.ChunkedArray], np.ndarray],
    dtype: type | np.dtype,
    per_record: int,
) -> np.ndarray:
    """``compute(texts)`` of a reference table, read from ``store`` where it has them;
    only the records it lacks are computed, and those are stored for next time."""
    compute = _sliced(compute)
    if store is None or ref.num_rows == 0:
        return compute(_texts(ref))
    width = np.dtype(dtype).itemsize * per_record
    ids = ref.column("id")
    found, raw = store.fingerprints(kind, ids, width)
    if not found.any():  # the first run: compute them all, with no copy into ``raw``
        values = np.ascontiguousarray(compute(_texts(ref)), dtype)
        store.store_fingerprints(kind, ids, values.reshape(ref.num_rows, -1))
        return values.reshape(ref.num_rows) if per_record == 1 else values
    missing = ~found
    if missing.any():
        mask = pa.array(missing)
        new = np.ascontiguousarray(compute(_texts(ref).filter(mask)), dtype)
        new_raw = new.view(np.uint8).reshape(len(new), width)
        raw[missing] = new_raw
        store.store_fingerprints(kind, ids.filter(mask), new_raw)
    values = raw.view(dtype)
    return values.reshape(ref.num_rows) if per_record == 1 else values


#: Reference texts fingerprinted at a time: the work arrays of a MinHash pass grow
#: with the texts' words, so a reservoir is signed a slice at a time.
FINGERPRINT_SLICE = 100_000


def _sliced(
    compute: Callable[[pa.ChunkedArray], np.ndarray],
) -> Callable[[pa.ChunkedArray], np.ndarray]:
    """``compute`` over ``FINGERPRINT_SLICE`` texts at a time (a value per text
    depends on that text alone, so the result is the same)."""

    def run(texts: pa.ChunkedArray | pa.Array) -> np.ndarray:
        if len(texts) <= FINGERPRINT_SLICE:
            return compute(texts)
        first = compute(texts.slice(0, FINGERPRINT_SLICE))
        out = np.empty((len(texts), *first.shape[1:]), first.dtype)
        out[:FINGERPRINT_SLICE] = first
        for lo in range(FINGERPRINT_SLICE, len(texts), FINGERPRINT_SLICE):
            out[lo : lo + FINGERPRINT_SLICE] = compute(texts.slice(lo, FINGERPRINT_SLICE))
        return out

    return run


class _MemoryFingerprints:
    """A :class:`FingerprintStore` in memory, for a verifier without a ledger to keep
    earlier generations' fingerprints in: each record is still computed once per process."""

    def __init__(self) -> None:
        self._kept: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # kind: sorted ids, values

    def fingerprints(
        self, kind: str, ids: pa.Array | pa.ChunkedArray, width: int
    ) -> tuple[np.ndarray, np.ndarray]:
        wanted = _ids(pa.table({"id": ids})).astype(str)
        found = np.zeros(len(wanted), bool)
        values = np.zeros((len(wanted), width), np.uint8)
        kept_ids, kept = self._kept.get(kind, (np.zeros(0, str), values[:0]))
        if len(kept_ids) and len(wanted):
            pos = np.minimum(np.searchsorted(kept_ids, wanted), len(kept_ids) - 1)
            found = kept_ids[pos] == wanted
            values[found] = kept[pos[found]]
        return found, values

    def store_fingerprints(
        self, kind: str, ids: pa.Array | pa.ChunkedArray, values: np.ndarray
    ) -> int:
        new_ids = _ids(pa.table({"id": ids})).astype(str)
        raw = np.ascontiguousarray(values).view(np.uint8).reshape(len(new_ids), -1)
        kept_ids, kept = self._kept.get(kind, (np.zeros(0, str), raw[:0]))
        all_ids, first = np.unique(np.concatenate([kept_ids, new_ids]), return_index=True)
        self._kept[kind] = (all_ids, np.concatenate([kept, raw])[first])
        return len(all_ids) - len(kept_ids)


def reference_table(reference: Reference) -> pa.Table:
    """Normalise a reference set to a table of ``id`` and ``content``.

    Accepts a table with ``id`` and ``content`` (or ``text``) columns, such as
    ``Ledger.reservoir_records()``; a mapping of id to text; or plain texts (their
    content ids become their ids).
    """
    if reference is None:
        return pa.table({"id": pa.array([], pa.string()), "content": pa.array([], pa.string())})
    if isinstance(reference, pa.Table):
        text_col = "content" if "content" in reference.column_names else "text"
        if text_col not in reference.column_names:
            raise InputError(
                "the reference table needs a 'content' (or 'text') column", field="content"
            )
        texts = reference.column(text_col).cast(pa.string())
        ids = (
            reference.column("id").cast(pa.string())
            if "id" in reference.column_names
            else content_ids(normalise_content(texts))
        )
        return pa.table({"id": ids, "content": texts})
    if isinstance(reference, Mapping):
        return pa.table(
            {
                "id": pa.array(list(reference.keys()), pa.string()),
                "content": pa.array(list(reference.values()), pa.string()),
            }
        )
    if isinstance(reference, str):
        raise InputError("reference must be a table, a mapping or a list of texts, not a string")
    texts = normalise_content(pa.array(list(reference), pa.string()))
    return pa.table({"id": content_ids(texts), "content": texts})


def _describe(ref: pa.Table) -> dict[str, Any]:
    """A JSON-able stand-in for a reference set: its size and a digest of its ids."""
    h = hashlib.sha256()
    for chunk in ref.column("id").chunks:
        h.update("\n".join(chunk.to_pylist()).encode())
    return {"records": ref.num_rows, "ids_sha256": h.hexdigest()[:16]}


def _texts(batch: pa.Table) -> pa.ChunkedArray | pa.Array:
    return batch.column("content")


def _ids(table: pa.Table) -> np.ndarray:
    return np.asarray(table.column("id").to_numpy(zero_copy_only=False), dtype=object)


def exact_keys(texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit key per text that ignores case, punctuation and spacing
    (:func:`tailguard.gate.minhash.text_keys`)."""
    return minhash.text_keys(texts)


class _ReferenceFingerprints:
    """The reference's fingerprints may be kept in a store between runs."""

    _store: FingerprintStore | None = None

    def keep_fingerprints_in(self, store: FingerprintStore | None) -> Any:
        """Read the reference's fingerprints from ``store`` (the ledger the reference
        came from: its ids must be content ids) and keep the missing ones there, so
        later rounds and runs never recompute them. Returns the verifier."""
        self._store = store
        return self


class ExactDuplicate(_Sets, _ReferenceFingerprints, Verifier):
    """Fail records whose text equals a reference record's or an earlier record's.

    Texts are compared after lower-casing and reducing punctuation and spacing to
    one space, so a copy with different capitalisation is still a copy. References:
    ``reference`` (the reservoir), ``references`` (named sets, e.g. ``{"eval": ...}``)
    and, in a gate's round, earlier generations' accepted records. The references'
    keys are computed on first use (or read from the store given to
    :meth:`keep_fingerprints_in`).
    """

    kind = "exact_duplicate"
    version = "1"
    codes = ("exact_duplicate",)
    row_independent = False
    toml = REFERENCE_TOML

    def __init__(
        self,
        *,
        reference: Reference = None,
        within_pool: bool = True,
        references: Mapping[str, Reference] | None = None,
    ) -> None:
        self._init_sets(reference, references)
        self.within_pool = within_pool

    def _fingerprints(self, table: pa.Table, store: FingerprintStore | None) -> np.ndarray:
        kind = f"{self.kind}/{self.version}/exact_keys"
        return stored_fingerprints(store, kind, table, exact_keys, np.uint64, 1)

    def _extend(self, base: Any, extra: pa.Table) -> None:
        self._ref_keys = np.concatenate(
            [base._ref_keys, self._fingerprints(extra, self._earlier_store)]
        )
        self.__dict__.pop("_ref_order", None)  # sorted again with the earlier records

    @cached_property
    def _ref_keys(self) -> np.ndarray:
        return self._signed(self._fingerprints(self._ref, self._store))

    @cached_property
    def _ref_order(self) -> np.ndarray:
        return np.argsort(self._ref_keys, kind="stable")

    def _index(self) -> Any:
        return self._ref_order

    def verify(self, batch: pa.Table) -> pa.Table:
        return self.scan().run([batch])

    def scan(self, spill_dir: str | None = None) -> ExactScan:
        """A search over the candidates slice by slice (:class:`ExactScan`)."""
        return ExactScan(self)


class NearDuplicate(_Sets, _ReferenceFingerprints, Verifier):
    """Fail records whose estimated Jaccard similarity to another is >= ``threshold``.

    Similarity is over sets of ``shingle``-word windows, estimated by MinHash with
    ``num_perm`` permutations, searched with LSH (bands and rows chosen for the
    threshold and ``weights`` = (false-positive, false-negative) weights; the
    default leans to recall because confirming candidates is cheap). Compared
    against ``reference`` (the frozen reservoir, given at construction; its
    signatures are computed once, on first use, or read from the store given to
    :meth:`keep_fingerprints_in`), the named sets of ``references``, in a gate's
    round the accepted records of earlier generations, and, if ``within_pool``,
    each record against the earlier records of the same batch.
    """

    kind = "near_duplicate"
    #: 3: words are runs of letters and digits (``tailguard.words``), as the metrics count
    #: them, no longer whitespace tokens stripped of other characters ("it's" is 2 words)
    version = "3"
    codes = ("near_duplicate",)
    row_independent = False
    toml = REFERENCE_TOML

    def __init__(
        self,
        *,
        reference: Reference = None,
        threshold: float = 0.8,
        num_perm: Annotated[int, Field(ge=2, le=4096)] = 128,
        shingle: Annotated[int, Field(ge=1, le=64)] = 3,
        seed: Annotated[int, Field(ge=0, lt=2**63)] = 1,
        within_pool: bool = True,
        max_bucket: Annotated[int, Field(ge=1, le=1_000_000)] = 32,
        weights: tuple[float, float] = (0.2, 0.8),
        references: Mapping[str, Reference] | None = None,
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise InputError(f"threshold must be in (0, 1), got {threshold}", field="threshold")
        if num_perm < 2:
            raise InputError(f"num_perm must be >= 2, got {num_perm}", field="num_perm")
        self.threshold, self.num_perm, self.shingle, self.seed = threshold, num_perm, shingle, seed
        self.within_pool, self.max_bucket = within_pool, max_bucket
        self.weights = (float(weights[0]), float(weights[1]))
        self.bands, self.rows = minhash.optimal_bands(threshold, num_perm, *self.weights)
        self._init_sets(reference, references)

    def _fingerprints(self, table: pa.Table, store: FingerprintStore | None) -> np.ndarray:
        how = {"num_perm": self.num_perm, "shingle": self.shingle, "seed": self.seed}
        kind = f"{self.kind}/{self.version}/minhash {json.dumps(how, sort_keys=True)}"
        return stored_fingerprints(store, kind, table, self.signatures, np.uint32, self.num_perm)

    @cached_property
    def _ref_sig(self) -> np.ndarray:
        return self._signed(self._fingerprints(self._ref, self._store))

    @cached_property
    def _ref_index(self) -> tuple[np.ndarray, np.ndarray]:
        return minhash.reference_index(self._ref_sig, self.bands, self.rows)

    def _index(self) -> Any:
        return self._ref_index

    def _extend(self, base: Any, extra: pa.Table) -> None:
        # Earlier generations grow by a round at a time: each record is signed once
        # (kept in the ledger, or in memory without one); the band index is rebuilt.
        sig = self._fingerprints(extra, self._earlier_store).reshape(extra.num_rows, -1)
        self._ref_sig = np.concatenate([base._ref_sig, sig])
        self.__dict__.pop("_ref_index", None)

    def signatures(self, texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
        return minhash.signatures(
            texts, num_perm=self.num_perm, shingle=self.shingle, seed=self.seed
        )

    def verify(self, batch: pa.Table) -> pa.Table:
        return self.scan().run([batch])

    def scan(self, spill_dir: str | None = None) -> NearScan:
        """A search over the candidates slice by slice (:class:`NearScan`); signatures
        of a round larger than one slice wait in a file under ``spill_dir``."""
        return NearScan(self, spill_dir)
