"""Named reference sets and earlier generations on top of kept fingerprints."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tailguard.gate import ExactDuplicate, Gate, NearDuplicate
from tailguard.records import content_id, make_records

RNG = np.random.default_rng(11)
WORDS = np.array([f"w{i}" for i in range(4000)])


def _text() -> str:
    return " ".join(RNG.choice(WORDS, 80))


def _near(text: str) -> str:
    """One word of 80 changed: Jaccard of 3-word shingles 75/81, far above 0.8."""
    words = text.split(" ")
    return " ".join([*words[:40], "changed", *words[41:]])


def _synthetic(texts: list[str], generation: int) -> pa.Table:
    return make_records(
        texts,
        origin="synthetic",
        source="m",
        generator="m",
        generation=generation,
        round=generation,
    )


def _counting(v: NearDuplicate, seen: list[int]) -> NearDuplicate:
    original = v.signatures
    v.signatures = lambda texts: seen.append(len(texts)) or original(texts)
    return v


@pytest.mark.parametrize("cls", [ExactDuplicate, NearDuplicate])
def test_a_verifier_used_before_still_sees_the_earlier_generations(cls):
    old = [_text() for _ in range(5)]
    earlier = pa.table({"id": [f"s{i}" for i in range(5)], "content": old, "generation": [1] * 5})
    base = cls(reference=[_text() for _ in range(20)])
    batch = pa.table(
        {"id": ["a", "b"], "content": [old[2] if cls is ExactDuplicate else _near(old[2]), _text()]}
    )
    assert base.verify(batch)["passed"].to_pylist() == [True, True]  # its index is built
    out = base.with_earlier(earlier).verify(batch)
    assert out["passed"].to_pylist() == [False, True]
    assert "generation 1 synthetic record s2" in out["detail"][0].as_py()
    assert base.verify(batch)["passed"].to_pylist() == [True, True]


def test_without_a_ledger_each_earlier_record_is_signed_once_per_process():
    old = [_text() for _ in range(6)]
    gens = pa.table({"id": [f"s{i}" for i in range(6)], "content": old, "generation": [1] * 6})
    seen: list[int] = []
    reference = [_text() for _ in range(10)]
    v = _counting(NearDuplicate(reference=reference), seen)
    v.with_earlier(gens.slice(0, 4)).verify(pa.table({"id": ["a"], "content": [_text()]}))
    assert sorted(seen) == [1, 4, 10]  # the batch, round 1's earlier records, the reference
    seen.clear()
    later = v.with_earlier(gens)  # round 2: two more earlier records
    assert seen == [2]
    out = later.verify(pa.table({"id": ["a", "b"], "content": [_near(old[1]), _near(old[5])]}))
    assert out["matched_id"].to_pylist() == ["s1", "s5"]
    expected = NearDuplicate(reference=reference).with_earlier(gens)._ref_sig
    assert (later._ref_sig == expected).all()


def test_earlier_generations_are_kept_in_the_ledger_and_read_back_next_round(frozen):
    texts = [_text() for _ in range(6)]
    frozen.add_records(_synthetic(texts[:4], 1))
    plain = Gate([NearDuplicate(reference=frozen.reservoir_records("all"))], progress=False)
    kept = NearDuplicate(reference=frozen.reservoir_records("all")).keep_fingerprints_in(frozen)
    gate = Gate([kept], progress=False)
    assert len(gate.run_round(frozen, 1).accepted_ids) == 4
    frozen.add_records(_synthetic([_near(texts[0]), texts[4]], 2))
    expected = plain.run(
        frozen.records(round=2, status="candidate"),
        earlier=frozen.records(round=1, status="accepted", columns=["id", "content", "generation"]),
    )
    stored = "SELECT count(*) FROM fingerprint_words WHERE kind LIKE 'near_duplicate/%'"
    before = frozen.con.sql(stored).fetchall()[0][0]
    seen: list[int] = []
    _counting(kept, seen)
    result = gate.run_round(frozen, 2)
    assert seen == [4, 2]  # round 1's accepted records (signed once, then kept), the batch
    after = frozen.con.sql(stored).fetchall()[0][0]
    assert after == before + 4
    assert result.verdicts.sort_by("id").equals(expected.verdicts.sort_by("id"))
    detail = {r["id"]: r["detail"] for r in frozen.verdicts(round=2).to_pylist()}
    assert (
        "generation 1 synthetic record " + content_id(texts[0])
        in detail[content_id(_near(texts[0]))]
    )
    # a later run reads them back: only round 2's accepted record and the batch are signed
    frozen.add_records(_synthetic([_near(texts[1])], 3))
    seen.clear()
    again = _counting(
        NearDuplicate(reference=frozen.reservoir_records("all")).keep_fingerprints_in(frozen), seen
    )
    assert Gate([again], progress=False).run_round(frozen, 3).rejected_ids.to_pylist() == [
        content_id(_near(texts[1]))
    ]
    assert seen == [1, 1]


def test_named_sets_are_kept_with_the_reservoir_and_keep_their_names(frozen):
    eval_texts = [_text() for _ in range(5)]
    ref = frozen.reservoir_records("all")
    first = ExactDuplicate(reference=ref, references={"eval": eval_texts})
    first.keep_fingerprints_in(frozen)
    batch = pa.table({"id": ["a", "b"], "content": [eval_texts[2].upper(), _text()]})
    out = first.verify(batch)
    stored = "SELECT count(*) FROM fingerprint_words WHERE kind LIKE 'exact_duplicate/%'"
    assert frozen.con.sql(stored).fetchall()[0][0] == ref.num_rows + 5
    again = ExactDuplicate(reference=ref, references={"eval": eval_texts})
    again.keep_fingerprints_in(frozen)
    assert again.verify(batch).equals(out)
    assert out["passed"].to_pylist() == [False, True]
    assert out["detail"][0].as_py() == f"copy of eval record {content_id(eval_texts[2])}"
