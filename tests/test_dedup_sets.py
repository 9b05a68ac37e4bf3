"""Duplicates of earlier generations and of named reference sets (evaluation sets)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from conftest import ledger_with_candidates
from typer.testing import CliRunner

from tailguard.cli import app
from tailguard.config import load_config
from tailguard.errors import ConfigError, InputError
from tailguard.gate import ExactDuplicate, Gate, NearDuplicate, gate_from_config
from tailguard.ledger import Ledger
from tailguard.records import make_records

RNG = np.random.default_rng(5)
VOCAB = [f"w{i}" for i in range(4000)]


def _text() -> str:
    return " ".join(RNG.choice(VOCAB, 40))


def _near(text: str) -> str:
    words = text.split()
    words[20] = "changed"
    return " ".join(words)


@pytest.mark.parametrize("cls", [ExactDuplicate, NearDuplicate])
def test_a_copy_of_a_named_set_names_the_set_and_the_id(cls):
    reservoir = pa.table({"id": ["h1"], "content": [_text()]})
    eval_texts = [_text() for _ in range(5)]
    v = cls(reference=reservoir, references={"eval": eval_texts})
    copy_of = eval_texts[3] if cls is ExactDuplicate else _near(eval_texts[3])
    batch = pa.table(
        {
            "id": ["a", "b", "c"],
            "content": [copy_of, reservoir["content"][0].as_py(), _text()],
        }
    )
    out = v.verify(batch)
    eval_ids = ExactDuplicate(references={"eval": eval_texts}).params()["references"]
    assert eval_ids["eval"]["records"] == 5
    assert out["passed"].to_pylist() == [False, False, True]
    from tailguard.records import content_id

    assert out["matched_id"].to_pylist()[:2] == [content_id(eval_texts[3]), "h1"]
    assert " eval record " in out["detail"][0].as_py()
    assert " reservoir record h1" in out["detail"][1].as_py()
    with pytest.raises(InputError, match="taken by the reservoir"):
        cls(references={"reservoir": ["x y z"]})


@pytest.mark.parametrize("cls", [ExactDuplicate, NearDuplicate])
def test_earlier_generations_are_compared_and_named(cls):
    old = [_text() for _ in range(6)]
    earlier = pa.table(
        {"id": [f"s{i}" for i in range(6)], "content": old, "generation": [1, 1, 1, 2, 2, 2]}
    )
    base = cls()
    v = base.with_earlier(earlier)
    assert base.with_earlier(earlier.slice(0, 0)) is base
    batch = pa.table(
        {"id": ["a", "b"], "content": [old[4] if cls is ExactDuplicate else _near(old[4]), _text()]}
    )
    out = v.verify(batch)
    assert out["passed"].to_pylist() == [False, True]
    assert out["matched_id"][0].as_py() == "s4"
    assert "generation 2 synthetic record s4" in out["detail"][0].as_py()
    # the original is untouched: it still passes the copy
    assert base.verify(batch)["passed"].to_pylist() == [True, True]


def test_a_gate_round_rejects_copies_of_earlier_accepted_generations(frozen):
    texts = [_text() for _ in range(4)]
    frozen.add_records(
        make_records(
            texts[:2], origin="synthetic", source="m", generator="m", generation=1, round=1
        )
    )
    gate = Gate([ExactDuplicate()], progress=False)
    assert len(gate.run_round(frozen, 1).accepted_ids) == 2
    # round 2 writes one old text again and one new one
    frozen.add_records(
        make_records(
            [texts[0], texts[2]],
            origin="synthetic",
            source="m",
            generator="m",
            generation=2,
            round=2,
        )
    )
    result = gate.run_round(frozen, 2)
    verdicts = {r["id"]: r for r in frozen.verdicts(round=2).to_pylist()}
    from tailguard.records import content_id

    copied = content_id(texts[0])
    assert list(result.rejected_ids.to_pylist()) == [copied]
    assert verdicts[copied]["matched_id"] == copied
    assert "generation 1 synthetic record" in verdicts[copied]["detail"]
    # switched off, the same round 2 candidate passes
    frozen.add_records(
        make_records(
            [texts[1]], origin="synthetic", source="m", generator="m", generation=3, round=3
        )
    )
    off = Gate([ExactDuplicate()], progress=False, earlier_generations=False)
    assert len(off.run_round(frozen, 3).accepted_ids) == 1


def test_reference_sets_come_from_tailguard_toml(tmp_path):
    eval_texts = [_text() for _ in range(3)]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "eval.jsonl").write_text(
        "".join(json.dumps({"question": t}) + "\n" for t in eval_texts)
    )
    (tmp_path / "tailguard.toml").write_text(
        '[gate]\nearlier_generations = false\n\n[[gate.verifiers]]\nkind = "exact_duplicate"\n'
        '\n[gate.references]\neval = {path = "data/eval.jsonl", text_field = "question"}\n'
    )
    cfg = load_config(tmp_path / "tailguard.toml")
    gate = gate_from_config(cfg, progress=False)
    assert gate.earlier_generations is False
    out = gate.run(pa.table({"id": ["a", "b"], "content": [eval_texts[1], _text()]}))
    assert out.accepted.tolist() == [False, True]
    assert "eval record" in out.verdicts["detail"][0].as_py()
    with pytest.raises(ConfigError, match="reference set name"):
        gate_from_config(
            {
                "gate": {
                    "verifiers": [{"kind": "exact_duplicate"}],
                    "references": {"reservoir": "x.jsonl"},
                }
            }
        )
    with pytest.raises(ConfigError, match="unknown key"):
        gate_from_config(
            {
                "gate": {
                    "verifiers": [{"kind": "exact_duplicate"}],
                    "references": {"eval": {"path": "x", "field": "q"}},
                }
            }
        )
    with pytest.raises(InputError, match="gate.references.eval") as exc:
        gate_from_config(
            {
                "gate": {
                    "verifiers": [{"kind": "exact_duplicate"}],
                    "references": {"eval": "missing.jsonl"},
                }
            },
            base_dir=tmp_path,
        )
    assert "missing.jsonl" in str(exc.value)


def test_cli_gate_decontaminates_against_the_configured_set(tmp_path):
    human = [_text() for _ in range(20)]
    eval_texts = [_text() for _ in range(3)]
    path = ledger_with_candidates(tmp_path / "ledger.duckdb", human, [eval_texts[0], _text()])
    (tmp_path / "eval.jsonl").write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in eval_texts)
    )
    (tmp_path / "tailguard.toml").write_text(
        '[gate]\n[[gate.verifiers]]\nkind = "near_duplicate"\n\n'
        '[gate.references]\neval = "eval.jsonl"\n'
    )
    cfg = tmp_path / "tailguard.toml"
    out = CliRunner().invoke(app, f"gate --round 1 --config {cfg} --ledger {path} --quiet".split())
    assert out.exit_code == 0, out.output
    with Ledger.open(path, read_only=True) as led:
        v = led.verdicts(round=1).to_pylist()
    failed = [r for r in v if not r["passed"]]
    assert len(failed) == 1 and "eval record" in failed[0]["detail"]


def test_a_verifier_may_pick_which_named_sets_it_checks(tmp_path):
    a, b = _text(), _text()
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": a}) + "\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": b}) + "\n")
    gate = {
        "verifiers": [{"kind": "exact_duplicate", "references": ["a"]}],
        "references": {"a": "a.jsonl", "b": "b.jsonl"},
    }
    g = gate_from_config({"gate": gate}, base_dir=tmp_path, progress=False)
    out = g.run(pa.table({"id": ["x", "y"], "content": [a, b]}))
    assert out.accepted.tolist() == [False, True]
    gate["verifiers"][0]["references"] = ["c"]
    with pytest.raises(ConfigError, match="not a set of"):
        gate_from_config({"gate": gate}, base_dir=tmp_path)
