"""The gate streams: a round searched slice by slice gives the verdicts of the whole round.

Random rounds with random duplicate structure (exact copies, copies in another case,
near copies, texts with no words, copies of the reference and of earlier candidates)
are gated in slices of a few records and in one piece, and compared verdict by
verdict; the duplicate verdicts are also checked against a search written out
independently (a dictionary of first copies; MinHash pairs over the whole round).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailguard.errors import ConfigError
from tailguard.gate import ExactDuplicate, Gate, NearDuplicate, minhash
from tailguard.ledger import Ledger
from tailguard.records import Origin, make_records

WORDS = [f"w{i}" for i in range(40)]
COLUMNS = ["id", "verifier", "passed", "code", "detail", "score", "matched_id"]


def _round(seed: int, n: int, n_ref: int) -> tuple[list[str], list[str]]:
    """``n`` candidate texts and ``n_ref`` reference texts with duplicates of every kind."""
    rng = np.random.default_rng(seed)

    def doc() -> str:
        return " ".join(rng.choice(WORDS, rng.integers(4, 14)))

    ref = [doc() for _ in range(n_ref)]
    cand: list[str] = []
    for _ in range(n):
        kind = rng.integers(0, 6)
        pool = cand if (rng.random() < 0.6 and cand) or not ref else ref
        src = pool[rng.integers(0, len(pool))] if pool else doc()
        if kind == 0:
            cand.append(doc())
        elif kind == 1:
            cand.append(src)  # exact copy
        elif kind == 2:
            cand.append(src.upper() + " !")  # a copy after normalising
        elif kind == 3:
            words = src.split() or ["w0"]
            words[rng.integers(0, len(words))] = str(rng.choice(WORDS))
            cand.append(" ".join(words + ["extra"]))  # a near copy
        elif kind == 4:
            cand.append("?!" if rng.random() < 0.5 else "")  # no words
        else:
            cand.append(src + " " + doc())  # half a copy
    return cand, ref


def _table(texts: list[str]) -> pa.Table:
    return pa.table({"id": [f"c{i:04d}" for i in range(len(texts))], "content": texts})


def _gate(ref: list[str], slice_size: int, **near: object) -> Gate:
    kw = {"threshold": 0.5, "num_perm": 64, **near}
    return Gate(
        [ExactDuplicate(reference=ref), NearDuplicate(reference=ref, **kw)],
        slice_size=slice_size,
        progress=False,
    )


def _rows(result) -> list[dict]:  # noqa: ANN001
    return result.verdicts.select(COLUMNS).to_pylist()


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 70),
    st.integers(0, 12),
    st.integers(1, 9),
    st.booleans(),
)
def test_slices_of_any_size_give_the_whole_rounds_verdicts(seed, n, n_ref, size, within):
    cand, ref = _round(seed, n, n_ref)
    table = _table(cand)
    whole = Gate(
        [
            ExactDuplicate(reference=ref, within_pool=within),
            NearDuplicate(reference=ref, threshold=0.5, num_perm=64, within_pool=within),
        ],
        slice_size=10**6,
        progress=False,
    ).run(table)
    sliced = Gate(
        [
            ExactDuplicate(reference=ref, within_pool=within),
            NearDuplicate(reference=ref, threshold=0.5, num_perm=64, within_pool=within),
        ],
        slice_size=size,
        progress=False,
    ).run(table)
    assert _rows(sliced) == _rows(whole)
    assert (sliced.accepted == whole.accepted).all()
    assert sliced.ids.to_pylist() == whole.ids.to_pylist()


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 60), st.integers(0, 10))
def test_exact_verdicts_in_slices_equal_a_dictionary_of_first_copies(seed, n, n_ref):
    cand, ref = _round(seed, n, n_ref)
    result = _gate(ref, 7).run(_table(cand))
    got = [r["matched_id"] for r in _rows(result) if r["verifier"] == "exact_duplicate"]
    ref_keys = minhash.text_keys(pa.array(ref, pa.string())).tolist() if ref else []
    first_ref = {k: i for i, k in reversed(list(enumerate(ref_keys)))}
    first_cand: dict[int, int] = {}
    expected = []
    for i, k in enumerate(minhash.text_keys(pa.array(cand, pa.string())).tolist()):
        if k in first_ref:
            expected.append(ref_ids(ref)[first_ref[k]])
        elif k in first_cand:
            expected.append(f"c{first_cand[k]:04d}")
        else:
            first_cand[k] = i
            expected.append(None)
    assert got == expected


def ref_ids(ref: list[str]) -> list[str]:
    from tailguard.records import content_ids, normalise_content

    return content_ids(normalise_content(pa.array(ref, pa.string()))).to_pylist()


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 60), st.integers(0, 10))
def test_near_verdicts_in_slices_equal_minhash_over_the_whole_round(seed, n, n_ref):
    cand, ref = _round(seed, n, n_ref)
    result = _gate(ref, 7).run(_table(cand))
    rows = [r for r in _rows(result) if r["verifier"] == "near_duplicate"]
    v = NearDuplicate(threshold=0.5, num_perm=64)
    sig = v.signatures(pa.array(cand, pa.string()))
    kw = {"bands": v.bands, "rows": v.rows, "cap": v.max_bucket}
    match = np.full(n, None, dtype=object)
    sim = np.full(n, np.nan)
    if ref:
        m, s = minhash.best_matches(sig, v.signatures(pa.array(ref, pa.string())), 0.5, **kw)
        ids = ref_ids(ref)
        for i in np.flatnonzero(m >= 0):
            match[i], sim[i] = ids[m[i]], s[i]
    m, s = minhash.best_matches(sig, None, 0.5, **kw)  # the whole round at once
    for i in np.flatnonzero((m >= 0) & (match == None)):  # noqa: E711
        match[i], sim[i] = f"c{m[i]:04d}", s[i]
    assert [r["matched_id"] for r in rows] == match.tolist()
    got = np.array([np.nan if r["score"] is None else r["score"] for r in rows])
    assert np.allclose(got, sim, equal_nan=True)


def test_a_ledger_round_read_in_slices_gets_the_verdicts_of_the_whole_round(tmp_path):
    cand, ref = _round(5, 300, 40)
    with Ledger.open(tmp_path / "l.duckdb") as led:
        led.add_records(make_records(ref, origin=Origin.HUMAN, source="h"))
        led.add_records(
            make_records(
                cand, origin=Origin.SYNTHETIC, source="m", generator="m", generation=1, round=1
            )
        )
        candidates = led.records(round=1, origin="synthetic", status="candidate")
        whole = _gate(ref, 10**6).run(candidates)
        sliced = _gate(ref, 7).run_round(led, 1)
        assert _rows(sliced) == _rows(whole)
        assert whole.n == len(set(cand)) and 0 < sliced.pass_rate < 1
        stored = led.verdicts(round=1).sort_by([("verifier", "ascending"), ("id", "ascending")])
        expected = whole.verdicts.sort_by([("verifier", "ascending"), ("id", "ascending")])
        assert stored["matched_id"].to_pylist() == expected["matched_id"].to_pylist()


def test_a_slice_repeating_the_last_id_is_gated_once():
    table = _table(["a b c d", "e f g h", "a b c d"])
    table = pa.concat_tables([table.slice(0, 2), table.slice(1, 1), table.slice(2, 1)])
    gate = _gate([], 1)
    result = gate.run_slices([table.slice(0, 2), table.slice(2, 1), table.slice(3, 1)])
    assert result.ids.to_pylist() == ["c0000", "c0001", "c0002"]
    assert result.accepted.tolist() == [True, True, False]


@pytest.mark.parametrize("size", [0, -3, 2.5, True])
def test_a_slice_size_must_be_a_whole_number_of_records(size):
    with pytest.raises(ConfigError, match="slice_size"):
        Gate([ExactDuplicate()], slice_size=size)


def test_a_reference_is_fingerprinted_in_slices_with_the_same_values(monkeypatch):
    from tailguard.gate import dedup

    cand, ref = _round(11, 10, 40)
    whole = NearDuplicate(reference=ref, num_perm=64)._ref_sig
    keys = ExactDuplicate(reference=ref)._ref_keys
    monkeypatch.setattr(dedup, "FINGERPRINT_SLICE", 3)
    assert (NearDuplicate(reference=ref, num_perm=64)._ref_sig == whole).all()
    assert (ExactDuplicate(reference=ref)._ref_keys == keys).all()
    assert whole.shape == (40, 64)


def test_the_config_sets_the_slice_size_and_refuses_a_bad_one():
    from tailguard.gate import gate_from_config

    spec = {"verifiers": [{"kind": "exact_duplicate", "reference": "none"}]}
    assert gate_from_config(spec).slice_size == Gate.SLICE_SIZE
    assert gate_from_config({**spec, "slice_size": 500}).slice_size == 500
    with pytest.raises(ConfigError, match="slice_size"):
        gate_from_config({**spec, "slice_size": 0})


def test_spilled_signatures_read_a_few_pairs_per_map_give_the_same_verdicts(monkeypatch):
    from tailguard.gate import scan

    cand, ref = _round(3, 400, 30)
    whole = _gate(ref, 10**6).run(_table(cand))  # one slice: the signatures stay in memory
    monkeypatch.setattr(scan, "_PAIRS_MAPPED", 3)  # spilled, and mapped 3 pairs at a time
    sliced = _gate(ref, 50).run(_table(cand))
    near = [r for r in _rows(sliced) if r["verifier"] == "near_duplicate"]
    assert sum(r["detail"].endswith(tuple(f"c{i:04d}" for i in range(400))) for r in near) > 3
    assert _rows(sliced) == _rows(whole)


def test_a_streamed_read_gives_duckdb_its_memory_back(tmp_path):
    with Ledger.open(tmp_path / "l.duckdb") as led:
        led.add_records(make_records(["a b c d", "e f g h"], origin=Origin.HUMAN, source="h"))

        def limit() -> str:
            return led.con.execute("SELECT current_setting('memory_limit')").fetchone()[0]

        normal = limit()
        slices = led.record_slices(1, origin="human")
        next(slices)
        assert limit() != normal  # held low while the sorted read streams
        assert len(list(slices)) == 1
        assert limit() == normal
        slices = led.record_slices(1, origin="human")
        next(slices)
        slices.close()  # a reader given up halfway lets go too
        assert limit() == normal


def test_a_verifiers_labels_on_ten_million_verdicts_hold_one_chunk_of_text() -> None:
    """10M verdicts of a verifier with 250 bytes of parameters: one repeated array
    would be 2.5 GB and wrap its 32-bit offsets; the label is one shared chunk."""
    from tailguard.gate.gate import constant_column

    before = pa.total_allocated_bytes()
    params = "p" * 250
    column = constant_column(params, 10_000_000)
    assert pa.total_allocated_bytes() - before < 50_000_000
    assert len(column) == 10_000_000 and column.type == pa.string()
    assert column[0].as_py() == params and column[9_999_999].as_py() == params
    assert [len(constant_column("x", m)) for m in (0, 1, 65_536, 65_537)] == [0, 1, 65_536, 65_537]
