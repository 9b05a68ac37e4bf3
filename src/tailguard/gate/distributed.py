"""The gate on Ray Data over Parquet shards: out of core, same verdicts as in-process.

Candidates and the sets they are compared with (the reservoir, named reference
sets, earlier generations' accepted records) are Parquet shards with a ``pos``
column (their in-process order; ``Ledger.export_round`` writes them). Nothing is
collected on the driver: every stage reads shards, runs on the cluster and writes
shards.

A duplicate verifier's reference side is the union of its sets, each row placed
where the in-process verifier's concatenated reference has it (the reservoir, the
named sets in the verifier's order, then earlier generations) and tagged with its
set: "the first reference copy" and "the first ``max_bucket`` references of a
bucket" then mean the same record on both paths, and a verdict names the same set.

- Row-independent verifiers: ``map_batches`` over the candidate shards.
- Exact duplicates: one 64-bit key per text; rows are grouped by a partition of
  the key (``groupby(part).map_groups``), so every copy of a text meets in one
  task, which decides first-of-group and reservoir matches vectorised.
- Near duplicates, a distributed LSH as Data-Juicer and NeMo Curator run it:
  MinHash signatures are written once as shards; every (band, key) is a row,
  grouped by a partition of the key, and candidate pairs come out of each group
  with the in-process rules (:mod:`tailguard.gate.grouping`: the first
  ``max_bucket`` references of a bucket, earlier candidates only). Pairs are joined
  with the signatures of both sides by two more groupings, confirmed by estimated
  Jaccard, and the best match of each candidate becomes its verdict.

Partitions are hash buckets of the grouping key, so a group never spans two
tasks; within a task the numpy code of :mod:`tailguard.gate.minhash` and
:mod:`tailguard.gate.grouping` runs as is.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tailguard.errors import ConfigError
from tailguard.gate import grouping, minhash
from tailguard.gate.base import RESULT_VERDICT_SCHEMA, Verifier
from tailguard.gate.dedup import (
    RESERVOIR_SET,
    ExactDuplicate,
    NearDuplicate,
    exact_keys,
    reference_table,
)
from tailguard.gate.gate import Gate, _SafeVerify, label_verdicts
from tailguard.gate.scan import exact_verdicts, near_verdicts

if TYPE_CHECKING:
    from tailguard.engines import RayEngine
    from tailguard.ledger import Ledger

#: Verdict shards: the in-process verdict columns and the candidate's ``pos``.
PARQUET_VERDICT_SCHEMA = pa.schema([pa.field("pos", pa.int64()), *RESULT_VERDICT_SCHEMA])
#: Rows per grouping task, to choose the number of hash partitions.
ROWS_PER_PARTITION = 2_000_000
_CAND, _REF = grouping.CAND, grouping.REF


class _Task:
    """A picklable batch function; Ray names its operators after ``__name__``."""

    @property
    def __name__(self) -> str:  # noqa: PLW3201
        return type(self).__name__.lstrip("_")


def _part(values: np.ndarray, parts: int) -> np.ndarray:
    return (minhash._fmix64(values.astype(np.uint64)) % np.uint64(parts)).astype(np.int64)


def _pos(batch: pa.Table) -> np.ndarray:
    return batch.column("pos").to_numpy().astype(np.int64)


def _objects(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=object)


def _set_column(batch: pa.Table) -> pa.Array | pa.ChunkedArray:
    """A batch's ``set`` tags (null on the candidate side)."""
    if "set" in batch.column_names:
        return batch.column("set")
    return pa.nulls(batch.num_rows, pa.string())


def _sig_column(sig: np.ndarray) -> pa.Array:
    n, k = sig.shape
    data = pa.py_buffer(np.ascontiguousarray(sig, np.uint32).tobytes())
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(4 * k), n, [None, data])


def _sig_array(col: pa.Array | pa.ChunkedArray, num_perm: int) -> np.ndarray:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    arr = arr.cast(pa.binary(4 * num_perm))
    n = len(arr)
    if n == 0:
        return np.zeros((0, num_perm), np.uint32)
    buf = np.frombuffer(arr.buffers()[1], np.uint32, count=(arr.offset + n) * num_perm)
    return buf[arr.offset * num_perm :].reshape(n, num_perm)


# ---------------------------------------------------------------- row-independent
class _Verify(_Task):
    """A verifier's verdicts on one shard batch, with ``pos`` and its labels."""

    def __init__(self, verifier: Verifier) -> None:
        self.fn, self.verifier = _SafeVerify(verifier), verifier

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = label_verdicts(self.fn(batch), self.verifier)
        return out.add_column(0, "pos", batch.column("pos")).cast(PARQUET_VERDICT_SCHEMA)


def _finish(out: pa.Table, pos: np.ndarray, ids: np.ndarray, verifier: Verifier, params: str):  # noqa: ANN202
    """Verdicts of one grouping task with their ids, labels and ``pos``."""
    out = out.add_column(0, "id", pa.array(ids.tolist(), pa.string()))
    out = label_verdicts(out, verifier, params)
    return out.add_column(0, "pos", pa.array(pos, pa.int64())).cast(PARQUET_VERDICT_SCHEMA)


# ---------------------------------------------------------------- exact duplicates
class _ExactRows(_Task):
    def __init__(self, side: int, parts: int) -> None:
        self.side, self.parts = side, parts

    def __call__(self, batch: pa.Table) -> pa.Table:
        keys = exact_keys(batch.column("content"))
        n = batch.num_rows
        return pa.table(
            {
                "part": _part(keys, self.parts),
                "key": keys,
                "side": np.full(n, self.side, np.int8),
                "pos": _pos(batch),
                "id": batch.column("id"),
                "set": _set_column(batch) if self.side == _REF else pa.nulls(n, pa.string()),
            }
        )


class _ExactGroup(_Task):
    """In one partition: each candidate's first reference copy, else first earlier copy."""

    def __init__(self, verifier: ExactDuplicate, params: str, has_ref: bool) -> None:
        self.verifier, self.params, self.has_ref = verifier, params, has_ref

    def __call__(self, t: pa.Table) -> pa.Table:
        key = t.column("key").to_numpy()
        side = t.column("side").to_numpy()
        pos = t.column("pos").to_numpy()
        ids, sets = _objects(t.column("id")), _objects(t.column("set"))
        cand, ref_first, cand_first = grouping.first_copies(key, side, pos)
        matched = np.full(len(cand), None, dtype=object)
        matched_set = np.full(len(cand), None, dtype=object)
        in_ref = ref_first >= 0
        matched[in_ref] = ids[ref_first[in_ref]]  # the first reference copy
        matched_set[in_ref] = sets[ref_first[in_ref]]
        if self.verifier.within_pool:
            dup = (cand_first != cand) & (matched == None)  # noqa: E711 - numpy mask
            matched[dup] = ids[cand_first[dup]]
        out = exact_verdicts(matched, matched_set)
        return _finish(out, pos[cand], ids[cand], self.verifier, self.params)


# ---------------------------------------------------------------- near duplicates
class _Signatures(_Task):
    def __init__(self, verifier: NearDuplicate) -> None:
        self.verifier = verifier

    def __call__(self, batch: pa.Table) -> pa.Table:
        sig = self.verifier.signatures(batch.column("content"))
        return pa.table(
            {
                "pos": batch.column("pos"),
                "id": batch.column("id"),
                "set": _set_column(batch),
                "sig": _sig_column(sig),
            }
        )


class _BandRows(_Task):
    """One row per valid record and band: the bucket key and its hash partition."""

    def __init__(self, verifier: NearDuplicate, side: int, parts: int) -> None:
        self.v, self.side, self.parts = verifier, side, parts

    def __call__(self, batch: pa.Table) -> pa.Table:
        sig = _sig_array(batch.column("sig"), self.v.num_perm)
        keep = sig[:, 0] != minhash.EMPTY
        sig, pos = sig[keep], _pos(batch)[keep]
        keys = minhash.band_keys(sig, self.v.bands, self.v.rows)  # (bands, n)
        bands = np.repeat(np.arange(self.v.bands, dtype=np.int16), len(pos))
        flat = keys.reshape(-1)
        return pa.table(
            {
                "part": _part(flat, self.parts),
                "band": bands,
                "key": flat,
                "side": np.full(len(flat), self.side, np.int8),
                "pos": np.tile(pos, self.v.bands),
            }
        )


_LINK_SCHEMA = pa.schema(
    [
        ("part", pa.int64()),
        ("pair", pa.bool_()),  # a pair row, or a signature row
        ("side", pa.int8()),
        ("pos", pa.int64()),  # the signature's record (for a pair: the matched record)
        ("qpos", pa.int64()),  # the candidate a pair belongs to
        ("id", pa.string()),
        ("set", pa.string()),  # the reference set of a reference-side record
        ("sig", pa.binary()),
    ]
)


def _link_rows(**cols: Any) -> pa.Table:
    n = len(cols["pos"])
    full = {f.name: cols.get(f.name, pa.nulls(n, f.type)) for f in _LINK_SCHEMA}
    return pa.table(full).cast(_LINK_SCHEMA)


class _Pairs(_Task):
    """In one partition, per band: the in-process candidate pairs of every bucket."""

    def __init__(self, verifier: NearDuplicate, parts: int, has_ref: bool) -> None:
        self.v, self.parts, self.has_ref = verifier, parts, has_ref

    def __call__(self, t: pa.Table) -> pa.Table:
        band = t.column("band").to_numpy()
        key = t.column("key").to_numpy()
        side = t.column("side").to_numpy()
        pos = t.column("pos").to_numpy()
        order = np.lexsort((pos, band))
        band, key, side, pos = band[order], key[order], side[order], pos[order]
        qs, rs, sides = [], [], []
        cap = self.v.max_bucket
        for b in np.unique(band):
            in_b = band == b
            q = in_b & (side == _CAND)
            r = in_b & (side == _REF)
            kq, pq = key[q], pos[q]
            if self.has_ref and r.any() and len(kq):
                i, j = grouping.reference_pairs(kq, key[r], None, None, cap)
                qs.append(pq[i]), rs.append(pos[r][j]), sides.append(np.full(len(i), _REF))
            if self.v.within_pool and len(kq):
                i, j = grouping.earlier_pairs(kq, None, cap)
                qs.append(pq[i]), rs.append(pq[j]), sides.append(np.full(len(i), _CAND))
        q = np.concatenate(qs) if qs else np.zeros(0, np.int64)
        r = np.concatenate(rs) if rs else np.zeros(0, np.int64)
        s = np.concatenate(sides).astype(np.int8) if sides else np.zeros(0, np.int8)
        if len(q):  # one row per pair (several bands may find it)
            _, first = np.unique(np.stack([q, r, s.astype(np.int64)]), axis=1, return_index=True)
            q, r, s = q[first], r[first], s[first]
        return _link_rows(
            part=_part(r * 2 + s, self.parts), pair=np.ones(len(q), bool), side=s, pos=r, qpos=q
        )


class _SigLinks(_Task):
    """Signature rows keyed like the pairs that will look them up."""

    def __init__(self, side: int, parts: int, by_candidate: bool = False) -> None:
        self.side, self.parts, self.by_candidate = side, parts, by_candidate

    def __call__(self, batch: pa.Table) -> pa.Table:
        pos = _pos(batch)
        n = len(pos)
        part = (
            _part(pos, self.parts) if self.by_candidate else _part(pos * 2 + self.side, self.parts)
        )
        return _link_rows(
            part=part,
            pair=np.zeros(n, bool),
            side=np.full(n, self.side, np.int8),
            pos=pos,
            id=batch.column("id"),
            set=batch.column("set"),
            sig=batch.column("sig").cast(pa.binary()),
        )


class _Attach(_Task):
    """In one partition: each pair gets the matched record's id, set and signature,
    and moves to its candidate's partition."""

    def __init__(self, parts: int) -> None:
        self.parts = parts

    def __call__(self, t: pa.Table) -> pa.Table:
        is_pair = t.column("pair").to_numpy(zero_copy_only=False)
        code = t.column("pos").to_numpy() * 2 + t.column("side").to_numpy()
        sig_rows = np.flatnonzero(~is_pair)
        pairs = np.flatnonzero(is_pair)
        order = np.argsort(code[sig_rows])
        where = sig_rows[order][np.searchsorted(code[sig_rows][order], code[pairs])]
        q = t.column("qpos").take(pa.array(pairs)).to_numpy()
        return _link_rows(
            part=_part(q, self.parts),
            pair=np.ones(len(pairs), bool),
            side=t.column("side").take(pa.array(pairs)),
            pos=t.column("pos").take(pa.array(pairs)),
            qpos=q,
            id=t.column("id").take(pa.array(where)),
            set=t.column("set").take(pa.array(where)),
            sig=t.column("sig").take(pa.array(where)),
        )


class _NearVerdicts(_Task):
    """In one partition: every candidate's verdict from its confirmed pairs."""

    def __init__(self, verifier: NearDuplicate, params: str) -> None:
        self.v, self.params = verifier, params

    def __call__(self, t: pa.Table) -> pa.Table:
        is_pair = t.column("pair").to_numpy(zero_copy_only=False)
        own = t.filter(pa.array(~is_pair))
        own = own.take(pc.sort_indices(own, [("pos", "ascending")]))
        pairs = t.filter(pa.array(is_pair))
        pos = own.column("pos").to_numpy()
        n = len(pos)
        k = self.v.num_perm
        sig = _sig_array(own.column("sig"), k)
        ids = _objects(own.column("id"))
        q = np.searchsorted(pos, pairs.column("qpos").to_numpy())
        psig = _sig_array(pairs.column("sig"), k)
        s = (sig[q] == psig).mean(axis=1) if len(q) else np.zeros(0)
        side = pairs.column("side").to_numpy()
        rpos = pairs.column("pos").to_numpy()
        rid, rset = _objects(pairs.column("id")), _objects(pairs.column("set"))
        matched = np.full(n, None, dtype=object)
        sets = np.full(n, None, dtype=object)
        score = np.full(n, np.nan)
        for which in (_REF, _CAND):  # reference matches first, as in-process
            on_side = np.flatnonzero(side == which)
            pick = grouping.best_pairs(q[on_side], rpos[on_side], s[on_side], self.v.threshold)
            best = on_side[pick]
            best = best[matched[q[best]] == None]  # noqa: E711 - a reference match wins
            matched[q[best]] = rid[best]
            score[q[best]] = s[best]
            sets[q[best]] = rset[best]
        empty = sig[:, 0] == minhash.EMPTY if n else np.zeros(0, bool)
        out = near_verdicts(matched, sets, score, empty)
        return _finish(out, pos, ids, self.v, self.params)


# ---------------------------------------------------------------- the stages
@dataclass(frozen=True)
class _Source:
    """One reference set's shards: ``name`` tags its rows (``None``: each row's own
    ``set``, as the earlier generations' shards carry their generation)."""

    name: str | None
    path: str
    rows: int
    ds: Any

    def described(self) -> dict[str, Any]:
        return {"records": self.rows, "parquet": self.path}


class _Placed(_Task):
    """One set's rows at their place in a verifier's reference (``pos`` moved past the
    sets before it), tagged with the set's name."""

    def __init__(self, offset: int, name: str | None) -> None:
        self.offset, self.name = offset, name

    def __call__(self, batch: pa.Table) -> pa.Table:
        n = batch.num_rows
        tag = batch.column("set") if self.name is None else pa.repeat(pa.scalar(self.name), n)
        return pa.table(
            {
                "pos": pa.array(_pos(batch) + self.offset, pa.int64()),
                "id": batch.column("id").cast(pa.string()),
                "content": batch.column("content").cast(pa.string()),
                "set": tag.cast(pa.string()),
            }
        )


@dataclass(frozen=True)
class _Reference:
    """A duplicate verifier's reference side: the union of its sets, and its verdicts'
    parameters, which list exactly those sets."""

    ds: Any  # None: nothing to compare with
    rows: int
    params: str


def _reference(
    v: ExactDuplicate | NearDuplicate,
    reservoir: _Source | None,
    named: Mapping[str, _Source],
    earlier: _Source | None,
    batch_size: int,
) -> _Reference:
    """The sets ``v`` compares with, in its in-process order: the reservoir, its named
    sets, then earlier generations (when there are any, as ``with_earlier`` adds them)."""
    import json

    sources = [reservoir] if reservoir is not None else []
    sources += [named[n] for n in v.references]
    if earlier is not None and earlier.rows:
        sources.append(earlier)
    parts, offset = [], 0
    for src in sources:
        if src.rows:
            cols = ["pos", "id", "content"] + (["set"] if src.name is None else [])
            placed = src.ds.select_columns(cols).map_batches(
                _Placed(offset, src.name), batch_format="pyarrow", batch_size=batch_size
            )
            parts.append(placed)
        offset += src.rows
    params = v.params()
    params["reference"] = reservoir.described() if reservoir else {"records": 0, "parquet": None}
    params["references"] = {n: named[n].described() for n in v.references}
    if earlier is not None and earlier.rows:
        params["references"]["earlier_generations"] = earlier.described()
    ds = (parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]) if parts else None
    return _Reference(ds, offset, json.dumps(params, sort_keys=True, default=str))


def gate_parquet(
    gate: Gate,
    candidates: str | Path,
    out: str | Path,
    *,
    engine: RayEngine,
    reservoir: str | Path | None = None,
    references: Mapping[str, str | Path] | None = None,
    earlier: str | Path | None = None,
    work_dir: str | Path | None = None,
) -> Path:
    """Gate candidate shards on Ray; write verdict shards (:data:`PARQUET_VERDICT_SCHEMA`).

    ``candidates``, ``reservoir``, each named set of ``references`` (set name:
    shards) and ``earlier`` (accepted records of earlier generations, with each row's
    ``set``): directories (or files) of Parquet with ``pos`` (0 to n - 1 in each set's
    order), ``id`` and ``content``, as ``Ledger.export_round`` writes them. Duplicate
    verifiers compare with the reservoir, the named sets they were built with (their
    contents come from the shards: build them with ``reference=None`` so the driver
    holds no reservoir) and the earlier generations, in the in-process order.
    ``work_dir`` keeps the intermediate signature shards (a temporary directory by
    default).
    """
    _check_sets(gate, references or {})
    ray = engine.ray()
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    tmp = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="tailguard-gate-"))
    tmp.mkdir(parents=True, exist_ok=True)

    def source(name: str | None, path: str | Path | None) -> _Source | None:
        if path is None:
            return None
        ds = ray.data.read_parquet(str(path))
        return _Source(name, str(path), ds.count(), ds)

    cand = ray.data.read_parquet(str(candidates))
    n_cand = cand.count()
    res = source(RESERVOIR_SET, reservoir)
    named = {n: source(n, p) for n, p in (references or {}).items()}
    older = source(None, earlier)
    bs = gate.batch_size
    try:
        for i, v in enumerate(gate.verifiers):
            if isinstance(v, ExactDuplicate | NearDuplicate):
                ref = _reference(v, res, named, older, bs)
                rows = n_cand + ref.rows
                if isinstance(v, ExactDuplicate):
                    ds = _exact(v, ref, cand, rows, bs)
                else:
                    ds = _near(ray, v, ref, cand, rows, bs, tmp / f"sig{i}")
            elif v.row_independent:
                cols = ["pos", "id", "content", *v.columns]
                src = ray.data.read_parquet(str(candidates)).select_columns(cols)
                ds = src.map_batches(_Verify(v), batch_format="pyarrow", batch_size=bs)
            else:
                raise TypeError(
                    f"verifier {v.name!r} needs the whole pool at once: it cannot run on shards"
                )
            ds.write_parquet(str(out / v.name))
    finally:
        if work_dir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _partitions(rows: int, engine_cpus: int = 2) -> int:
    return max(engine_cpus, -(-rows // ROWS_PER_PARTITION))


def _exact(v: ExactDuplicate, ref: _Reference, cand: Any, rows: int, bs: int) -> Any:
    parts = _partitions(rows)
    keyed = cand.map_batches(_ExactRows(_CAND, parts), batch_format="pyarrow", batch_size=bs)
    if ref.ds is not None:
        keyed = keyed.union(
            ref.ds.map_batches(_ExactRows(_REF, parts), batch_format="pyarrow", batch_size=bs)
        )
    return keyed.groupby("part", num_partitions=parts).map_groups(
        _ExactGroup(v, ref.params, ref.ds is not None), batch_format="pyarrow"
    )


def _near(  # noqa: PLR0913
    ray: Any, v: NearDuplicate, ref: _Reference, cand: Any, rows: int, bs: int, tmp: Path
) -> Any:
    has_ref = ref.ds is not None
    sig_fn = _Signatures(v)
    cand.select_columns(["pos", "id", "content"]).map_batches(
        sig_fn, batch_format="pyarrow", batch_size=bs
    ).write_parquet(str(tmp / "candidates"))
    if has_ref:
        ref.ds.map_batches(sig_fn, batch_format="pyarrow", batch_size=bs).write_parquet(
            str(tmp / "reference")
        )
    sigs = {_CAND: ray.data.read_parquet(str(tmp / "candidates"))}
    if has_ref:
        sigs[_REF] = ray.data.read_parquet(str(tmp / "reference"))
    band_parts = _partitions(rows * v.bands)
    parts = _partitions(rows * 2)

    def rows_of(side: int, fn: Any) -> Any:
        return sigs[side].map_batches(fn, batch_format="pyarrow", batch_size=bs)

    bands = rows_of(_CAND, _BandRows(v, _CAND, band_parts))
    if has_ref:
        bands = bands.union(rows_of(_REF, _BandRows(v, _REF, band_parts)))
    pairs = bands.groupby("part", num_partitions=band_parts).map_groups(
        _Pairs(v, parts, has_ref), batch_format="pyarrow"
    )
    linked = pairs.union(*[rows_of(side, _SigLinks(side, parts)) for side in sigs])
    attached = linked.groupby("part", num_partitions=parts).map_groups(
        _Attach(parts), batch_format="pyarrow"
    )
    per_candidate = attached.union(rows_of(_CAND, _SigLinks(_CAND, parts, by_candidate=True)))
    return per_candidate.groupby("part", num_partitions=parts).map_groups(
        _NearVerdicts(v, ref.params), batch_format="pyarrow"
    )


def _check_sets(gate: Gate, references: Mapping[str, Any]) -> None:
    """Every named set a duplicate verifier compares with must be given as shards, and
    every set given must be compared with: a verdict lists exactly what it checked.
    Checked before Ray starts."""
    named: set[str] = set()
    for v in gate.verifiers:
        if isinstance(v, ExactDuplicate | NearDuplicate):
            missing = [n for n in v.references if n not in references]
            if missing:
                raise ConfigError(
                    f"verifier {v.name!r} compares with reference set(s) "
                    f"{', '.join(map(repr, missing))}, not given as shards (references=)"
                )
            named.update(v.references)
    unused = [n for n in references if n not in named]
    if unused:
        raise ConfigError(
            f"reference set(s) {', '.join(map(repr, unused))} given as shards, but no "
            "duplicate verifier was built with them (references=)"
        )


def _gate_sets(gate: Gate) -> dict[str, pa.Table]:
    """The named reference sets (``id``, ``content``) the gate's duplicate verifiers
    hold, one table per name; two verifiers may share a set, not a name."""
    sets: dict[str, pa.Table] = {}
    for v in gate.verifiers:
        if isinstance(v, ExactDuplicate | NearDuplicate):
            for name, table in v.named_sets().items():
                if name in sets and not sets[name].equals(table):
                    raise ConfigError(
                        f"two duplicate verifiers hold different reference sets named {name!r}"
                    )
                sets[name] = table
    return sets


def gate_round_on_ray(
    gate: Gate,
    ledger: Ledger,
    round: int,  # noqa: A002
    directory: str | Path,
    *,
    engine: RayEngine,
    reservoir: bool = True,
    reservoir_split: str = "train",
    references: Mapping[str, Any] | None = None,
) -> dict[str, int]:
    """Export round ``round``'s candidates and the sets they are compared with as shards,
    gate them on Ray, and ingest the verdicts: statuses move to accepted or rejected
    as in :meth:`Gate.run_round`, with the same verdicts.

    The sets: the reservoir (``reservoir``; its ``reservoir_split``), the accepted
    records of earlier generations (if ``gate.earlier_generations``), and the named reference sets,
    taken from the duplicate verifiers unless ``references``
    (set name: a table, mapping or texts) gives their contents. Returns the counts
    the ledger recorded.
    """
    directory = Path(directory)
    sets = (
        _gate_sets(gate)
        if references is None
        else {n: reference_table(r) for n, r in references.items()}
    )
    _check_sets(gate, sets)
    paths = ledger.export_round(
        round,
        directory,
        reservoir=reservoir,
        reservoir_split=reservoir_split,
        earlier=gate.earlier_generations,
        references=sets,
    )
    verdict_dir = gate_parquet(
        gate,
        paths["candidates"],
        directory / "verdicts",
        engine=engine,
        reservoir=paths.get("reservoir"),
        references=paths["references"],
        earlier=paths.get("earlier"),
        work_dir=directory / "work",
    )
    return ledger.record_gate_parquet(round, verdict_dir)


__all__ = ["PARQUET_VERDICT_SCHEMA", "gate_parquet", "gate_round_on_ray"]
