"""The verifier contract, the gate, and the built-in content verifiers."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailguard.errors import ConfigError, InputError
from tailguard.gate import (
    LEDGER_VERDICT_SCHEMA,
    VERDICT_SCHEMA,
    ExactDuplicate,
    FunctionVerifier,
    Gate,
    MathAnswer,
    NearDuplicate,
    Quality,
    Reason,
    Rules,
    Schema,
    Verifier,
    answers_equal,
    gate_from_config,
    load_config,
    load_rules,
    verdicts,
)
from tailguard.ledger import Ledger
from tailguard.records import make_records


def synth(texts: list[str], round: int = 1) -> pa.Table:  # noqa: A002
    return make_records(
        texts, origin="synthetic", source="t", generator="g", generation=1, round=round
    )


def no_digits(text: str) -> tuple[bool, str] | bool:
    return (False, "has a digit") if any(c.isdigit() for c in text) else True


def explode_on_seven(text: str) -> bool:
    if "7" in text:
        raise RuntimeError("seven is not allowed")
    return True


class Broken(Verifier):
    """Returns the wrong number of verdicts."""

    kind = "broken"

    def verify(self, batch: pa.Table) -> pa.Table:
        return verdicts(np.ones(batch.num_rows + 1, bool))


# --- contract ------------------------------------------------------------------------------


def test_verdict_table_is_columnar_with_default_reasons():
    t = verdicts(
        [True, False], [None, "bad"], [None, "0.7 > 0.5"], score=[0.5, None], matched_id=[None, "x"]
    )
    assert t.schema == VERDICT_SCHEMA
    assert t["code"].to_pylist() == ["ok", "bad"]
    assert t["detail"].to_pylist() == ["ok", "0.7 > 0.5"]
    assert verdicts([False])["code"].to_pylist() == ["rejected"]


def test_params_are_the_keyword_arguments_and_json():
    q = Quality(min_chars=3, max_repeated_ngrams=0.2)
    p = q.params()
    assert p["min_chars"] == 3 and p["max_repeated_ngrams"] == 0.2
    assert json.loads(q.params_json()) == p
    nd = NearDuplicate(reference=["a b c d"], threshold=0.7)
    assert nd.params()["reference"]["records"] == 1 and nd.params()["threshold"] == 0.7


def test_gate_runs_all_verifiers_and_a_record_must_pass_all():
    texts = ["a clean sentence about cats", "a sentence with 7 in it", "clean words only here"]
    g = Gate([FunctionVerifier(no_digits), Quality(min_chars=5)], progress=False)
    r = g.run(synth(texts))
    assert r.verdicts.num_rows == 6
    assert r.accepted.tolist() == [True, False, True]
    (failed,) = [v for v in r.explain(r.ids[1].as_py()) if not v.passed]
    assert failed.verifier == "no_digits" and failed.detail == "has a digit"
    assert failed.code == "rejected"  # a bare reason is the detail of the generic code
    rates = dict(
        zip(*r.pass_rates().select(["verifier", "pass_rate"]).to_pydict().values(), strict=True)
    )
    assert rates == {"no_digits": pytest.approx(2 / 3), "quality": 1.0}
    assert r.for_ledger(4).schema == LEDGER_VERDICT_SCHEMA


def test_a_raising_verifier_fails_only_its_records_with_the_exception_as_reason():
    texts = [f"record number {i}" for i in range(10)]
    r = Gate([FunctionVerifier(explode_on_seven)], progress=False).run(synth(texts))
    assert r.accepted.sum() == 9
    bad = r.verdicts.filter(pa.compute.invert(r.verdicts["passed"])).to_pylist()
    assert len(bad) == 1 and "RuntimeError: seven is not allowed" in bad[0]["detail"]
    assert bad[0]["code"] == "error"


def test_a_malformed_verifier_answer_is_a_failed_verdict_not_a_crash():
    r = Gate([Broken()], progress=False).run(synth(["one", "two"]))
    assert not r.accepted.any()
    assert "verdicts for" in r.verdicts["detail"][0].as_py()
    assert set(r.verdicts["code"].to_pylist()) == {"error"}


def test_parallel_gate_equals_in_process_gate():
    texts = [f"text {i} " + ("x" * (i % 13)) + (" 5" if i % 5 == 0 else "") for i in range(300)]
    table = synth(texts)
    serial = Gate([FunctionVerifier(no_digits), Quality()], progress=False).run(table)
    parallel = Gate(
        [FunctionVerifier(no_digits), Quality()], progress=False, batch_size=64, parallel_min=1
    ).run(table)
    assert parallel.verdicts.equals(serial.verdicts)


def test_lambdas_run_in_process_even_when_parallel():
    g = Gate(
        [FunctionVerifier(lambda t: len(t) > 3, name="long")],
        parallel_min=1,
        batch_size=2,
        progress=False,
    )
    assert g.run(synth(["abcd", "ab", "abcdef"])).accepted.tolist() == [True, False, True]


def test_nothing_to_gate_is_an_empty_result():
    r = Gate([Quality()], progress=False).run(synth([]))
    assert r.empty and r.verdicts.num_rows == 0 and "nothing to gate" in r.notes


def test_gate_refuses_two_verifiers_with_one_name_and_no_verifiers():
    with pytest.raises(ConfigError, match="named 'quality'"):
        Gate([Quality(), Quality()])
    with pytest.raises(ConfigError):
        Gate([])


def test_run_round_stores_verdicts_and_moves_candidates_nothing_deleted():
    with Ledger.open(":memory:") as led:
        led.add_records(synth(["fine text here", "bad text 9", "more fine text"], round=2))
        result = Gate([FunctionVerifier(no_digits)], progress=False).run_round(led, 2)
        assert len(result.accepted_ids) == 2 and len(result.rejected_ids) == 1
        assert led.count(round=2, status="rejected") == 1
        assert led.count(round=2, status="accepted") == 2
        rejected = led.records(round=2, status="rejected")["id"][0].as_py()
        (v,) = led.verdicts(id=rejected).to_pylist()
        assert v["detail"] == "has a digit" and v["round"] == 2 and v["verifier"] == "no_digits"
        assert v["code"] == "rejected"
        again = Gate([FunctionVerifier(no_digits)], progress=False).run_round(led, 2)
        assert again.empty  # nothing left to gate


# --- rules, schema, quality, math ---------------------------------------------------------


def test_rules_first_broken_rule_wins_and_keywords_are_whole_words():
    rules = Rules(
        rules=[
            {"name": "no-email", "forbid": r"[\w.]+@[\w.]+", "reason": "contains an email"},
            {"name": "polite", "forbid_keywords": ["idiot"], "reason": "insult"},
            {"name": "answer", "require": "Answer:", "reason": "no final answer"},
        ]
    )
    out = rules.verify(
        pa.table(
            {
                "content": [
                    "Answer: 4",
                    "mail me@x.org, idiot. Answer: 1",
                    "idiotic Answer: 2",
                    "IDIOT Answer: 3",
                    "nothing",
                ]
            }
        )
    )
    assert out["passed"].to_pylist() == [True, False, True, False, False]
    assert out["code"].to_pylist() == ["ok", "rule:no-email", "ok", "rule:polite", "rule:answer"]
    assert out["detail"].to_pylist()[1] == "contains an email"
    assert out["detail"].to_pylist()[3] == "insult"
    assert out["detail"].to_pylist()[4] == "no final answer"


def test_rules_file_errors_name_file_and_line(tmp_path):
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text('[[rule]]\nname = "a"\nforbid = "x"\nreason = oops\n')
    with pytest.raises(InputError) as exc:
        load_rules(bad_toml)
    assert exc.value.file == str(bad_toml) and exc.value.line == 4
    bad_regex = tmp_path / "regex.toml"
    bad_regex.write_text(
        '[[rule]]\nname = "ok"\nforbid = "a"\n\n[[rule]]\nname = "broken"\nforbid = "(unclosed"\n'
    )
    with pytest.raises(InputError) as exc:
        load_rules(bad_regex)
    assert exc.value.line == 6 and "bad regular expression" in str(exc.value)
    good = tmp_path / "good.toml"
    good.write_text('[[rule]]\nname = "x"\nforbid_keywords = ["spam"]\nreason = "spam"\n')
    assert Rules(rules=good).verify(pa.table({"content": ["spam!"]}))["passed"][0].as_py() is False


def test_schema_validates_and_refuses_bad_schema_files(tmp_path):
    s = Schema(
        schema={"type": "object", "required": ["q", "a"], "properties": {"a": {"type": "integer"}}}
    )
    out = s.verify(
        pa.table(
            {"content": ['{"q": "1+1", "a": 2}', '{"q": "x", "a": "two"}', '{"q": 1', '{"a": 1}']}
        )
    )
    assert out["passed"].to_pylist() == [True, False, False, False]
    reasons = out["detail"].to_pylist()
    assert "at a" in reasons[1] and reasons[2].startswith("not JSON") and "'q'" in reasons[3]
    assert out["code"].to_pylist() == ["ok", "schema", "not_json", "schema"]
    f = tmp_path / "s.json"
    f.write_text('{\n  "type": "object",\n  "required": [\n}')
    with pytest.raises(InputError) as exc:
        Schema(schema=f)
    assert exc.value.file == str(f) and exc.value.line == 4
    with pytest.raises(InputError, match="invalid JSON Schema"):
        Schema(schema={"type": "no-such-type"})
    assert (
        pickle.loads(pickle.dumps(s))
        .verify(pa.table({"content": ['{"q":1,"a":1}']}))["passed"][0]
        .as_py()
    )


def test_quality_measures_against_closed_form():
    q = Quality(ngram=2, max_repeated_ngrams=0.5, max_non_letters=0.3, min_chars=3)
    texts = ["a b a b a b", "one two three four", "12345 abc", "", "ok fine words"]
    m = q.measures(pa.array(texts))
    # "a b a b a b": 5 bigrams, 2 distinct -> 3/5 repeated
    assert m["repeated_ngrams"][0] == pytest.approx(0.6)
    assert m["repeated_ngrams"][1] == 0.0
    assert m["non_letters"][2] == pytest.approx(5 / 9)
    out = q.verify(pa.table({"content": texts}))
    assert out["passed"].to_pylist() == [False, True, False, False, True]
    assert out["code"].to_pylist() == [
        "repeated_ngrams",
        "ok",
        "non_letter_share",
        "too_short",
        "ok",
    ]
    assert out["detail"].to_pylist()[3] == "0 < 3 chars"
    assert out["detail"].to_pylist()[2] == "0.56 > 0.3"


@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(alphabet="ab c", max_size=30), min_size=1, max_size=20))
def test_quality_repeated_share_is_in_unit_interval(texts):
    m = Quality().measures(pa.array(texts))
    assert ((m["repeated_ngrams"] >= 0) & (m["repeated_ngrams"] < 1)).all()


@pytest.mark.parametrize(
    ("answer", "reference", "equal"),
    [
        ("1/2", "0.5", True),
        ("\\frac{3}{4}", "0.75", True),
        ("\\boxed{42}", "42", True),
        ("2*sqrt(2)", "sqrt(8)", True),
        ("1,000", "1000", True),
        ("3", "4", False),
        ("0.333", "1/3", False),
    ],
)
def test_math_answers_compare_by_value(answer, reference, equal):
    assert answers_equal(answer, reference)[0] is equal


def test_math_answer_verifier_reads_json_or_a_reference_column():
    m = MathAnswer()
    out = m.verify(
        pa.table(
            {
                "content": [
                    '{"answer": "6/4", "reference": "1.5"}',
                    '{"answer": "__import__(\\"os\\")", "reference": "1"}',
                    "not json",
                ]
            }
        )
    )
    assert out["passed"].to_pylist() == [True, False, False]
    assert out["code"].to_pylist() == ["ok", "cannot_compare", "bad_content"]
    col = MathAnswer(reference_column="label").verify(
        pa.table({"content": ['{"answer": 7}', "7.0"], "label": ["7", "8"]})
    )
    assert col["passed"].to_pylist() == [True, False]
    assert col["code"].to_pylist() == ["ok", "wrong_answer"]


# --- duplicates -----------------------------------------------------------------------------


def test_exact_duplicate_names_the_reservoir_record_or_earlier_candidate():
    ref = pa.table({"id": ["h1"], "content": ["The cat sat on the mat."]})
    ex = ExactDuplicate(reference=ref)
    out = ex.verify(
        pa.table(
            {
                "id": ["a", "b", "c", "d"],
                "content": [
                    "the CAT sat on the mat",
                    "a new sentence",
                    "A new   sentence!",
                    "other",
                ],
            }
        )
    )
    assert out["passed"].to_pylist() == [False, True, False, True]
    assert out["matched_id"].to_pylist() == ["h1", None, "b", None]
    assert out["code"].to_pylist() == ["exact_duplicate", "ok", "exact_duplicate", "ok"]


def test_near_duplicate_finds_planted_copies_and_names_them():
    rng = np.random.default_rng(3)
    vocab = [f"w{i}" for i in range(5000)]
    ref_texts = [" ".join(rng.choice(vocab, 60)) for _ in range(300)]
    ref = pa.table({"id": [f"h{i}" for i in range(300)], "content": ref_texts})
    words = ref_texts[17].split()
    words[30] = "changed"  # one word of 60: Jaccard of 3-shingles = 55/61 ~ 0.90
    queries = [" ".join(words), " ".join(rng.choice(vocab, 60)), ""]
    queries.append(queries[1] + " extra")  # near copy of an earlier candidate
    out = NearDuplicate(reference=ref).verify(
        pa.table({"id": ["q0", "q1", "q2", "q3"], "content": queries})
    )
    assert out["passed"].to_pylist() == [False, True, True, False]
    assert out["matched_id"].to_pylist() == ["h17", None, None, "q1"]
    assert out["score"][0].as_py() == pytest.approx(55 / 61, abs=0.1)
    assert "reservoir record h17" in out["detail"][0].as_py()
    assert out["code"].to_pylist() == ["near_duplicate", "ok", "ok", "near_duplicate"]
    assert out["detail"][2].as_py() == "no words: not compared"


@settings(max_examples=20, deadline=None)
@given(st.lists(st.text(alphabet="abc de", min_size=1, max_size=40), min_size=1, max_size=15))
def test_near_duplicate_is_deterministic_and_each_text_passes_against_itself_alone(texts):
    table = pa.table({"id": [str(i) for i in range(len(texts))], "content": texts})
    a = NearDuplicate(within_pool=True).verify(table)
    b = NearDuplicate(within_pool=True).verify(table)
    assert a.equals(b)
    assert a["passed"][0].as_py()  # the first record has nothing earlier to copy


# --- config ---------------------------------------------------------------------------------


def test_config_builds_the_gate_and_resolves_paths(tmp_path):
    (tmp_path / "rules.toml").write_text('[[rule]]\nname = "x"\nforbid = "spam"\n')
    (tmp_path / "tailguard.toml").write_text(
        '[gate]\nbatch_size = 128\n\n[[gate.verifiers]]\nkind = "quality"\nmin_chars = 4\n\n'
        '[[gate.verifiers]]\nkind = "near_duplicate"\nthreshold = 0.9\n\n'
        '[[gate.verifiers]]\nkind = "rules"\nname = "policy"\nrules = "rules.toml"\n'
    )
    cfg = load_config(tmp_path / "tailguard.toml")
    g = gate_from_config(
        cfg, reference=pa.table({"id": ["h"], "content": ["spam eggs ham"]}), base_dir=tmp_path
    )
    assert [v.name for v in g.verifiers] == ["quality", "near_duplicate", "policy"]
    assert g.batch_size == 128 and g.verifiers[1].threshold == 0.9
    r = g.run(synth(["spam eggs ham", "fine words here"]))
    assert r.accepted.tolist() == [False, True]


def test_config_errors_say_where(tmp_path):
    with pytest.raises(ConfigError, match=r"key 'gate.verifiers.0': Input tag 'nope'"):
        gate_from_config({"gate": {"verifiers": [{"kind": "nope"}]}})
    with pytest.raises(ConfigError, match=r"key 'gate.verifiers.0.min_char': unknown key"):
        gate_from_config({"gate": {"verifiers": [{"kind": "quality", "min_char": 3}]}})
    with pytest.raises(ConfigError, match="no verifiers"):
        gate_from_config({"gate": {}})
    f = tmp_path / "t.toml"
    f.write_text('[gate]\n[[gate.verifiers]]\nkind = "quality\n')
    with pytest.raises(InputError) as exc:
        load_config(f)
    assert exc.value.line == 3
    with pytest.raises(InputError) as exc:
        gate_from_config(
            {"gate": {"verifiers": [{"kind": "rules", "rules": "missing.toml"}]}}, base_dir=tmp_path
        )
    assert "missing.toml" in str(exc.value)


def spicy(text):
    if "chilli" in text:
        return False, Reason("too_spicy", f"{text.count('chilli')} chillies")
    return True


def test_a_function_may_name_its_own_code_or_give_a_bare_reason():
    out = FunctionVerifier(spicy).verify(pa.table({"content": ["mild", "chilli chilli"]}))
    assert out["code"].to_pylist() == ["ok", "too_spicy"]
    assert out["detail"].to_pylist() == ["ok", "2 chillies"]
    legacy = FunctionVerifier(
        lambda b: pa.table({"passed": [False, True], "reason": ["too salty", None]}),
        name="salt",
        vectorised=True,
    )
    r = Gate([legacy], progress=False).run(synth(["a", "b"]))
    assert r.verdicts["code"].to_pylist() == ["rejected", "ok"]
    assert r.verdicts["detail"].to_pylist() == ["too salty", "ok"]
    assert r.reasons().to_pylist() == [{"verifier": "salt", "code": "rejected", "count": 1}]


def test_every_failed_builtin_verdict_carries_a_declared_code():
    texts = ["", "x" * 50, "a b a b a b a b", "fine words here and there", "1234 5678"]
    texts.append(texts[3])  # a copy: the duplicate verifiers fail it
    for v in (Quality(min_chars=3, max_chars=40), ExactDuplicate(), NearDuplicate()):
        out = v.verify(pa.table({"id": [str(i) for i in range(6)], "content": texts}))
        failed = set(out.filter(pa.compute.invert(out["passed"]))["code"].to_pylist())
        assert failed and failed <= set(v.codes), (v.kind, failed)


# --- a user's own verifier: a killable worker under its timeout -------------------------------
class NeverReturns(Verifier):
    """Hangs on the record 'stuck' (as code stuck in C or a lost network call would)."""

    kind = "never_returns"
    timeout = 1.0

    def verify(self, batch: pa.Table) -> pa.Table:
        import time

        if "stuck" in batch.column("content").to_pylist():
            time.sleep(3600)
        return verdicts(np.ones(batch.num_rows, bool))


class RaisesOnSeven(Verifier):
    kind = "raises_on_seven"

    def verify(self, batch: pa.Table) -> pa.Table:
        texts = batch.column("content").to_pylist()
        if "seven" in texts:
            raise RuntimeError("seven is not allowed")
        return verdicts(np.ones(len(texts), bool), score=np.full(len(texts), 0.5))


def test_a_users_verifier_that_never_returns_cannot_hang_the_gate():
    import time

    from tailguard.gate import base

    gate = Gate([NeverReturns(), Quality(min_words=1)], batch_size=2, progress=False)
    started = time.monotonic()
    r = gate.run(synth(["fine text here", "stuck", "more fine text", "last one here"]))
    took = time.monotonic() - started
    assert took < 30, took  # one timeout per overrunning batch, not for ever
    rows = r.verdicts.filter(pa.compute.equal(r.verdicts["verifier"], "never_returns"))
    codes = dict(zip(rows["id"].to_pylist(), rows["code"].to_pylist(), strict=True))
    ids = r.ids.to_pylist()
    # the batch holding 'stuck' (records 0 and 1) timed out; the next batch was judged
    assert [codes[i] for i in ids] == ["timeout", "timeout", "ok", "ok"]
    assert "no answer within 1s" in rows["detail"].to_pylist()[0]
    # the other verifier ruled on every record, and the gate went on
    quality = r.verdicts.filter(pa.compute.equal(r.verdicts["verifier"], "quality"))
    assert quality.num_rows == 4
    assert r.accepted.tolist() == [False, False, True, True]
    assert base._WORKERS  # a worker process ran the user's verifier


def test_a_users_verifier_runs_isolated_and_its_errors_are_per_record():
    from tailguard.gate import base

    r = Gate([RaisesOnSeven()], batch_size=4, progress=False).run(synth(["one", "seven", "three"]))
    assert r.accepted.tolist() == [True, False, True]
    detail = r.verdicts["detail"].to_pylist()[1]
    assert r.verdicts["code"].to_pylist()[1] == "error" and "seven is not allowed" in detail
    assert r.verdicts["score"].to_pylist() == [0.5, None, 0.5]
    base._WORKERS.clear()
    Gate([Quality(min_words=1)], progress=False).run(synth(["a built-in verifier", "here"]))
    assert not base._WORKERS  # built-in verifiers keep the in-process path
