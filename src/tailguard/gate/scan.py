"""The duplicate search over a round's candidates, slice by slice.

A round need not fit in memory with its texts: :meth:`ExactScan.add` and
:meth:`NearScan.add` take one slice of candidates at a time, compare it with the
reference fingerprints and band index (computed at freeze and kept in the ledger),
and keep only what the search within the round needs: a 64-bit key per record, or
a MinHash signature (in a file once the round outgrows a slice) and its band keys.
:meth:`finish` then groups the whole round at once, with the same rules
(:mod:`tailguard.gate.grouping`) as a single slice and as the Ray gate, so the
verdicts are the same record for record whatever the slice size.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from typing import IO, Any

import numpy as np
import pyarrow as pa

from tailguard.gate import grouping, minhash
from tailguard.gate.base import verdicts


class _Scan:
    """What both searches keep per slice: the candidates' ids, and the reference
    match each record found (-1: none)."""

    def __init__(self, verifier: Any) -> None:
        self.v = verifier
        self._ids: list[pa.Array | pa.ChunkedArray] = []
        self._ref: list[np.ndarray] = []
        self.n = 0

    def run(self, slices: Iterable[pa.Table]) -> pa.Table:
        """Every slice in turn, then the verdicts."""
        for batch in slices:
            self.add(batch)
        return self.finish()

    def add(self, batch: pa.Table) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def finish(self) -> pa.Table:  # pragma: no cover - abstract
        raise NotImplementedError

    def _keep(self, batch: pa.Table, ref: np.ndarray) -> None:
        self._ids.append(batch.column("id"))
        self._ref.append(ref)
        self.n += batch.num_rows

    def _matched(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per record: the matched id and set (``None``: no reference match yet), and
        the reference row matched (-1)."""
        ref = np.concatenate(self._ref) if self._ref else np.zeros(0, np.int64)
        matched = np.full(self.n, None, dtype=object)
        sets = np.full(self.n, None, dtype=object)
        hit = ref >= 0
        matched[hit], sets[hit] = self.v._ref_rows(ref[hit])
        return matched, sets, ref

    def _ids_of(self, rows: np.ndarray) -> np.ndarray:
        """The candidate ids at ``rows`` of the round (the only ids looked up)."""
        ids = pa.chunked_array([c for part in self._ids for c in _chunks(part)], pa.string())
        return np.asarray(ids.take(pa.array(rows, pa.int64())).to_pylist(), dtype=object)


#: Candidate pairs compared per map of the signature file (at most twice as many rows,
#: 512 bytes each at 128 permutations: a few MB resident at a time).
_PAIRS_MAPPED = 4096


def _chunks(col: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    return list(col.chunks) if isinstance(col, pa.ChunkedArray) else [col]


class ExactScan(_Scan):
    """Exact duplicates: a key per record; the first reference copy is found slice
    by slice, the first earlier candidate over the whole round's keys."""

    def __init__(self, verifier: Any) -> None:
        super().__init__(verifier)
        self._keys: list[np.ndarray] = []

    def add(self, batch: pa.Table) -> None:
        keys = minhash.text_keys(batch.column("content"))
        ref = np.full(len(keys), -1, np.int64)
        ref_keys = self.v._ref_keys
        if len(ref_keys) and len(keys):
            order = self.v._ref_order
            sorted_keys = ref_keys[order]
            pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
            hit = sorted_keys[pos] == keys
            ref[hit] = order[pos[hit]]
        self._keys.append(keys)
        self._keep(batch, ref)

    def finish(self) -> pa.Table:
        matched, sets, _ = self._matched()
        if self.v.within_pool and self.n:
            keys = np.concatenate(self._keys)
            side = np.full(self.n, grouping.CAND, np.int8)
            rows, _, first = grouping.first_copies(keys, side, np.arange(self.n))
            dup = np.flatnonzero((first != rows) & (matched == None))  # noqa: E711 - numpy mask
            matched[dup] = self._ids_of(first[dup])
        return exact_verdicts(matched, sets)


class NearScan(_Scan):
    """Near duplicates: each slice is signed and matched with the reference band index;
    its signatures wait (in a file under ``spill_dir`` from the second slice on) with
    its band keys, and the within-round pairs are found over all band keys at the end.
    """

    def __init__(self, verifier: Any, spill_dir: str | None = None) -> None:
        super().__init__(verifier)
        self._spill_dir = spill_dir
        self._sigs: list[np.ndarray] = []
        self._file: IO[bytes] | None = None
        self._keys: list[np.ndarray] = []
        self._score: list[np.ndarray] = []
        self._valid: list[np.ndarray] = []  # texts with words (the others are not compared)

    def add(self, batch: pa.Table) -> None:
        v = self.v
        sig = v.signatures(batch.column("content"))
        keys = minhash.band_keys(sig, v.bands, v.rows)
        ref = np.full(len(sig), -1, np.int64)
        score = np.full(len(sig), np.nan)
        if v._n_ref and len(sig):
            ref, score = minhash.best_matches(
                sig, v._ref_sig, v.threshold, bands=v.bands, rows=v.rows, cap=v.max_bucket,
                query_keys=keys, ref_index=v._ref_index,
            )  # fmt: skip
        self._keep(batch, ref)
        self._score.append(score)
        self._valid.append(sig[:, 0] != minhash.EMPTY)
        if v.within_pool:
            self._keys.append(keys)
            self._hold(sig)

    def _hold(self, sig: np.ndarray) -> None:
        if self._file is None and not self._sigs:
            self._sigs.append(sig)
            return
        if self._file is None:
            self._file = tempfile.TemporaryFile(dir=self._spill_dir)  # noqa: SIM115 - closed in finish
            self._file.write(memoryview(np.ascontiguousarray(self._sigs.pop())))
        self._file.write(memoryview(np.ascontiguousarray(sig)))

    def _similarity(self, q: np.ndarray, r: np.ndarray) -> np.ndarray:
        """Estimated Jaccard of candidate pairs ``(q, r)`` (rows of the round): from the
        signatures in memory for one slice, else from their file, mapped a chunk of pairs
        at a time and let go after each, so the pages a chunk touched leave the resident
        set (a map of the whole file kept while every pair is read grew it by the file's
        size: 512 MB at a million candidates)."""
        k = self.v.num_perm
        if self._file is None:
            sig = self._sigs[0] if self._sigs else np.zeros((0, k), np.uint32)
            return minhash.similarity(sig, sig, q, r)
        self._file.flush()
        out = np.empty(len(q), np.float64)
        for lo in range(0, len(q), _PAIRS_MAPPED):
            sig = np.memmap(self._file, np.uint32, "r", shape=(self.n, k))
            hi = lo + _PAIRS_MAPPED
            out[lo:hi] = (sig[q[lo:hi]] == sig[r[lo:hi]]).mean(axis=1)
            del sig
        return out

    def finish(self) -> pa.Table:
        v = self.v
        matched, sets, _ = self._matched()
        score = np.concatenate(self._score) if self._score else np.zeros(0)
        valid = np.concatenate(self._valid) if self._valid else np.zeros(0, bool)
        try:
            if v.within_pool and self.n:
                keys, self._keys = np.concatenate(self._keys, axis=1), []
                q, r = grouping.candidate_pairs(keys, None, cap=v.max_bucket, query_valid=valid)
                del keys
                m, s = grouping.best_matches(q, r, self._similarity(q, r), v.threshold, self.n)
                hit = np.flatnonzero((m >= 0) & (matched == None))  # noqa: E711 - numpy mask
                matched[hit] = self._ids_of(m[hit])
                score[hit] = s[hit]
        finally:
            if self._file is not None:
                self._file.close()
        return near_verdicts(matched, sets, score, ~valid)


def _what(sets: np.ndarray) -> np.ndarray:
    """``<set> record`` per matched reference set, ``candidate`` for a pool match."""
    out = np.full(len(sets), "candidate", dtype=object)
    named = sets != None  # noqa: E711 - numpy mask
    out[named] = np.char.add(sets[named].astype(str), " record").astype(object)
    return out


def exact_verdicts(matched: np.ndarray, sets: np.ndarray) -> pa.Table:
    """Exact-duplicate verdicts from each record's match (``None``: unique) and the
    reference set it belongs to (``None``: an earlier candidate)."""
    passed = matched == None  # noqa: E711 - numpy mask
    details = np.full(len(matched), None, dtype=object)
    what = np.char.add("copy of ", _what(sets).astype(str))
    details[~passed] = np.char.add(
        np.char.add(what[~passed], " "), matched[~passed].astype(str)
    ).astype(object)
    return verdicts(
        passed,
        np.where(passed, None, "exact_duplicate").tolist(),
        details.tolist(),
        score=np.where(passed, np.nan, 1.0),
        matched_id=matched.tolist(),
    )


def near_verdicts(
    matched: np.ndarray, sets: np.ndarray, score: np.ndarray, empty: np.ndarray
) -> pa.Table:
    """Near-duplicate verdicts from each record's best match (``None``: none), the
    reference set it belongs to (as for :func:`exact_verdicts`), its estimated Jaccard,
    and which records had no words."""
    passed = matched == None  # noqa: E711 - numpy mask
    details = np.full(len(matched), None, dtype=object)
    hit = ~passed
    details[hit] = _near_reason(_what(sets)[hit], matched[hit], score[hit])
    details[empty] = "no words: not compared"
    return verdicts(
        passed,
        np.where(passed, None, "near_duplicate").tolist(),
        details.tolist(),
        score=score,
        matched_id=matched.tolist(),
    )


def _near_reason(what: np.ndarray, ids: np.ndarray, sims: np.ndarray) -> np.ndarray:
    sims_txt = np.char.mod("%.2f", sims)
    with_what = np.char.add(np.char.add(" with ", what.astype(str)), " ")
    return np.char.add(np.char.add("J~", sims_txt), np.char.add(with_what, ids.astype(str))).astype(
        object
    )
