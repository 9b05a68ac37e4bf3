"""Duplicate verifiers: exact and near copies, of the reservoir or within the pool.

A candidate that copies a human reservoir record is memorisation, not new data;
one that copies an earlier candidate adds nothing. Both fail, and the verdict
names the record matched (``matched_id``) and the similarity (``score``).
Within the pool the *first* record of a group passes and later ones fail.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from tailguard.errors import InputError
from tailguard.gate import minhash
from tailguard.gate.base import Verifier, verdicts
from tailguard.records import content_ids, normalise_content

Reference = pa.Table | Sequence[str] | Mapping[str, str] | None


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
    if store is None or ref.num_rows == 0:
        return compute(_texts(ref))
    width = np.dtype(dtype).itemsize * per_record
    ids = ref.column("id")
    found, raw = store.fingerprints(kind, ids, width)
    missing = ~found
    if missing.any():
        mask = pa.array(missing)
        new = np.ascontiguousarray(compute(_texts(ref).filter(mask)), dtype)
        new_raw = new.view(np.uint8).reshape(len(new), width)
        raw[missing] = new_raw
        store.store_fingerprints(kind, ids.filter(mask), new_raw)
    values = raw.view(dtype)
    return values.reshape(ref.num_rows) if per_record == 1 else values


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


class ExactDuplicate(_ReferenceFingerprints, Verifier):
    """Fail records whose text equals a reference record's or an earlier record's.

    Texts are compared after lower-casing and reducing punctuation and spacing to
    one space, so a copy with different capitalisation is still a copy. The
    reference's keys are computed on first use (or read from the store given to
    :meth:`keep_fingerprints_in`).
    """

    kind = "exact_duplicate"
    version = "1"
    codes = ("exact_duplicate",)
    row_independent = False

    def __init__(self, *, reference: Reference = None, within_pool: bool = True) -> None:
        self._ref = reference_table(reference)
        self.reference = _describe(self._ref)
        self.within_pool = within_pool
        self._ref_ids = _ids(self._ref)

    @cached_property
    def _ref_keys(self) -> np.ndarray:
        kind = f"{self.kind}/{self.version}/exact_keys"
        return stored_fingerprints(self._store, kind, self._ref, exact_keys, np.uint64, 1)

    @cached_property
    def _ref_order(self) -> np.ndarray:
        return np.argsort(self._ref_keys, kind="stable")

    def verify(self, batch: pa.Table) -> pa.Table:
        n = batch.num_rows
        keys = exact_keys(_texts(batch))
        matched = np.full(n, None, dtype=object)
        in_reservoir = np.zeros(n, bool)
        if len(self._ref_keys):
            sorted_keys = self._ref_keys[self._ref_order]
            pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
            in_reservoir = sorted_keys[pos] == keys
            matched[in_reservoir] = self._ref_ids[self._ref_order[pos[in_reservoir]]]
        if self.within_pool and n:
            _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
            earlier = first[inverse]
            dup = (earlier != np.arange(n)) & (matched == None)  # noqa: E711 - numpy mask
            matched[dup] = _ids(batch)[earlier[dup]]
        return exact_verdicts(matched, in_reservoir)


class NearDuplicate(_ReferenceFingerprints, Verifier):
    """Fail records whose estimated Jaccard similarity to another is >= ``threshold``.

    Similarity is over sets of ``shingle``-word windows, estimated by MinHash with
    ``num_perm`` permutations, searched with LSH (bands and rows chosen for the
    threshold and ``weights`` = (false-positive, false-negative) weights; the
    default leans to recall because confirming candidates is cheap). Compared
    against ``reference`` (the frozen reservoir, given at construction; its
    signatures are computed once, on first use, or read from the store given to
    :meth:`keep_fingerprints_in`) and, if ``within_pool``, each record against
    the earlier records of the same batch.
    """

    kind = "near_duplicate"
    version = "2"
    codes = ("near_duplicate",)
    row_independent = False

    def __init__(
        self,
        *,
        reference: Reference = None,
        threshold: float = 0.8,
        num_perm: int = 128,
        shingle: int = 3,
        seed: int = 1,
        within_pool: bool = True,
        max_bucket: int = 32,
        weights: tuple[float, float] = (0.2, 0.8),
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise InputError(f"threshold must be in (0, 1), got {threshold}", field="threshold")
        if num_perm < 2:
            raise InputError(f"num_perm must be >= 2, got {num_perm}", field="num_perm")
        self.threshold, self.num_perm, self.shingle, self.seed = threshold, num_perm, shingle, seed
        self.within_pool, self.max_bucket = within_pool, max_bucket
        self.weights = (float(weights[0]), float(weights[1]))
        self.bands, self.rows = minhash.optimal_bands(threshold, num_perm, *self.weights)
        self._ref = reference_table(reference)
        self.reference = _describe(self._ref)
        self._ref_ids = _ids(self._ref)

    @cached_property
    def _ref_sig(self) -> np.ndarray:
        how = {"num_perm": self.num_perm, "shingle": self.shingle, "seed": self.seed}
        kind = f"{self.kind}/{self.version}/minhash {json.dumps(how, sort_keys=True)}"
        return stored_fingerprints(
            self._store, kind, self._ref, self.signatures, np.uint32, self.num_perm
        )

    @cached_property
    def _ref_index(self) -> tuple[np.ndarray, np.ndarray]:
        return minhash.reference_index(self._ref_sig, self.bands, self.rows)

    def signatures(self, texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
        return minhash.signatures(
            texts, num_perm=self.num_perm, shingle=self.shingle, seed=self.seed
        )

    def verify(self, batch: pa.Table) -> pa.Table:
        n = batch.num_rows
        sig = self.signatures(_texts(batch))
        keys = minhash.band_keys(sig, self.bands, self.rows)
        kw = {"bands": self.bands, "rows": self.rows, "cap": self.max_bucket, "query_keys": keys}
        matched = np.full(n, None, dtype=object)
        in_reservoir = np.zeros(n, bool)
        score = np.full(n, np.nan)
        if len(self._ref_ids):
            m, s = minhash.best_matches(
                sig, self._ref_sig, self.threshold, ref_index=self._ref_index, **kw
            )
            in_reservoir = m >= 0
            matched[in_reservoir] = self._ref_ids[m[in_reservoir]]
            score[in_reservoir] = s[in_reservoir]
        if self.within_pool and n:
            m, s = minhash.best_matches(sig, None, self.threshold, **kw)
            hit = (m >= 0) & (matched == None)  # noqa: E711
            matched[hit] = _ids(batch)[m[hit]]
            score[hit] = s[hit]
        empty = sig[:, 0] == minhash.EMPTY if n else np.zeros(0, bool)
        return near_verdicts(matched, in_reservoir, score, empty)


def exact_verdicts(matched: np.ndarray, in_reservoir: np.ndarray) -> pa.Table:
    """Exact-duplicate verdicts from each record's match (``None``: unique) and
    whether it is a reservoir record (else an earlier candidate)."""
    passed = matched == None  # noqa: E711 - numpy mask
    details = np.full(len(matched), None, dtype=object)
    what = np.where(in_reservoir, "copy of reservoir record ", "copy of candidate ")
    details[~passed] = np.char.add(what[~passed], matched[~passed].astype(str)).astype(object)
    return verdicts(
        passed,
        np.where(passed, None, "exact_duplicate").tolist(),
        details.tolist(),
        score=np.where(passed, np.nan, 1.0),
        matched_id=matched.tolist(),
    )


def near_verdicts(
    matched: np.ndarray, in_reservoir: np.ndarray, score: np.ndarray, empty: np.ndarray
) -> pa.Table:
    """Near-duplicate verdicts from each record's best match (``None``: none), whether
    it is a reservoir record, its estimated Jaccard, and which records had no words."""
    passed = matched == None  # noqa: E711 - numpy mask
    details = np.full(len(matched), None, dtype=object)
    for where, what in ((in_reservoir, "reservoir record"), (~in_reservoir, "candidate")):
        hit = where & ~passed
        details[hit] = _near_reason(what, matched[hit], score[hit])
    details[empty] = "no words: not compared"
    return verdicts(
        passed,
        np.where(passed, None, "near_duplicate").tolist(),
        details.tolist(),
        score=score,
        matched_id=matched.tolist(),
    )


def _near_reason(what: str, ids: np.ndarray, sims: np.ndarray) -> np.ndarray:
    sims_txt = np.char.mod("%.2f", sims)
    return np.char.add(
        np.char.add("J~", sims_txt), np.char.add(f" with {what} ", ids.astype(str))
    ).astype(object)
