"""Reference fingerprints kept in the ledger: computed once, read back by every later run."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailguard.gate import ExactDuplicate, NearDuplicate, gate_from_config
from tailguard.gate import dedup as dedup_mod
from tailguard.ledger import Ledger
from tailguard.records import make_records

RNG = np.random.default_rng(7)
VOCAB = [f"w{i}" for i in range(3000)]
HUMAN = [" ".join(RNG.choice(VOCAB, 40)) for _ in range(200)]


def candidates() -> pa.Table:
    words = HUMAN[3].split()
    words[10] = "changed"
    texts = [" ".join(words), HUMAN[5].upper(), " ".join(RNG.choice(VOCAB, 40)), ""]
    return pa.table({"id": [f"c{i}" for i in range(len(texts))], "content": texts})


@pytest.fixture
def ledger(tmp_path):
    path = tmp_path / "ledger.duckdb"
    with Ledger.open(path) as led:
        led.add_records(make_records(HUMAN, origin="human", source="h", round=0))
        led.freeze_reservoir()
    return path


def test_signatures_are_stored_once_and_read_back_by_a_later_run(ledger, monkeypatch):
    with Ledger.open(ledger) as led:
        ref = led.reservoir_records("all")
        plain = NearDuplicate(reference=ref).verify(candidates())
        first = NearDuplicate(reference=ref).keep_fingerprints_in(led)
        assert first.verify(candidates()).equals(plain)
        stored = led.con.sql(
            "SELECT kind, count(*) FROM fingerprint_words GROUP BY kind"
        ).fetchall()
        assert len(stored) == 1 and stored[0][1] == 200 and "near_duplicate/3/" in stored[0][0]
        assert (first._ref_sig == NearDuplicate(reference=ref)._ref_sig).all()
    with Ledger.open(ledger) as led:  # a later run: nothing recomputed for the reference
        ref = led.reservoir_records("all")
        again = NearDuplicate(reference=ref).keep_fingerprints_in(led)
        sig = again._ref_sig  # read, not computed
        monkeypatch.setattr(again, "signatures", lambda texts: pytest.fail("recomputed"))
        assert (sig == first._ref_sig).all()
        # other parameters are another kind: computed and stored beside the first
        other = NearDuplicate(reference=ref, num_perm=64).keep_fingerprints_in(led)
        assert other._ref_sig.shape == (200, 64)
        assert (
            led.con.sql("SELECT count(DISTINCT kind) FROM fingerprint_words").fetchall()[0][0] == 2
        )


def test_only_missing_records_are_computed_and_values_align_with_the_reference(ledger):
    with Ledger.open(ledger) as led:
        ref = led.reservoir_records("all")
        half = ref.slice(0, 100)
        NearDuplicate(reference=half).keep_fingerprints_in(led)._ref_sig  # noqa: B018
        seen = []
        v = NearDuplicate(reference=ref.take(np.arange(199, -1, -1))).keep_fingerprints_in(led)
        original = v.signatures
        v.signatures = lambda texts: seen.append(len(texts)) or original(texts)
        expected = NearDuplicate(reference=ref.take(np.arange(199, -1, -1)))._ref_sig
        assert (v._ref_sig == expected).all() and seen == [100]


def test_exact_keys_are_stored_and_the_verdicts_do_not_change(ledger):
    with Ledger.open(ledger) as led:
        ref = led.reservoir_records("all")
        plain = ExactDuplicate(reference=ref).verify(candidates())
        kept = ExactDuplicate(reference=ref).keep_fingerprints_in(led).verify(candidates())
        assert kept.equals(plain) and not kept["passed"][1].as_py()
        again = ExactDuplicate(reference=ref).keep_fingerprints_in(led)
        assert (again._ref_keys == dedup_mod.exact_keys(ref.column("content"))).all()


def test_a_read_only_ledger_is_read_but_never_written(ledger):
    with Ledger.open(ledger, read_only=True) as led:
        ref = led.reservoir_records("all")
        v = NearDuplicate(reference=ref).keep_fingerprints_in(led)
        assert (v._ref_sig == NearDuplicate(reference=ref)._ref_sig).all()
        assert led.con.sql("SELECT count(*) FROM fingerprint_words").fetchall()[0][0] == 0


def test_the_gate_from_a_config_keeps_the_reservoir_fingerprints(ledger):
    config = {"verifiers": [{"kind": "exact_duplicate"}, {"kind": "near_duplicate"}]}
    with Ledger.open(ledger) as led:
        gate = gate_from_config(
            config, reference=led.reservoir_records("all"), fingerprints=led, progress=False
        )
        result = gate.run(candidates())
        assert result.accepted.tolist() == [False, False, True, True]
        kinds = led.con.sql("SELECT DISTINCT kind FROM fingerprint_words ORDER BY 1").fetchall()
        assert [k[0].split("/")[0] for k in kinds] == ["exact_duplicate", "near_duplicate"]


def test_freeze_fingerprints_the_project_gate_once_and_rounds_read_them(tmp_path, monkeypatch):
    """`reservoir freeze` in a project computes the gate's reference fingerprints; the
    gate of a later run reads every one of them and computes none."""
    from typer.testing import CliRunner

    from tailguard.cli import app
    from tailguard.project import load_config

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["init"]).exit_code == 0
    with Ledger.open(tmp_path / ".tailguard" / "ledger.duckdb") as led:
        led.add_records(make_records(HUMAN, origin="human", source="h", round=0))
    out = runner.invoke(app, ["reservoir", "freeze"])
    assert out.exit_code == 0, out.output
    assert "fingerprinted 200 reference records" in " ".join(out.output.split())
    config = load_config(tmp_path / "tailguard.toml")
    computed = []
    real = dedup_mod.stored_fingerprints

    def counting(store, kind, ref, compute, *args):
        return real(store, kind, ref, lambda t: computed.append(len(t)) or compute(t), *args)

    monkeypatch.setattr(dedup_mod, "stored_fingerprints", counting)
    with Ledger.open(tmp_path / ".tailguard" / "ledger.duckdb") as led:
        stored = led.con.sql("SELECT kind, count(*) FROM fingerprint_words GROUP BY 1").fetchall()
        assert sorted(n for _, n in stored) == [200, 200]  # both duplicate verifiers
        gate = gate_from_config(
            config, reference=led.reservoir_records("all"), fingerprints=led, progress=False
        )
        assert gate.prepare() == 200 and computed == []  # each of 200 records, by both
        passed = gate.run(candidates()).verdicts.filter(pc.equal(pc.field("passed"), False))
        assert computed == []  # a round computes no reference fingerprint either
        assert {"exact_duplicate", "near_duplicate"} <= set(passed["code"].to_pylist())


@given(
    width=st.integers(1, 40),
    rows=st.lists(st.binary(min_size=40, max_size=40), min_size=1, max_size=12, unique=True),
)
@settings(max_examples=40, deadline=None)
def test_stored_fingerprints_read_back_byte_for_byte_at_any_width(width, rows):
    values = np.frombuffer(b"".join(rows), np.uint8).reshape(len(rows), 40)[:, :width]
    ids = pa.array([f"id{i}" for i in range(len(rows))])
    with Ledger.open(":memory:") as led:
        assert led.store_fingerprints("k", ids, values) == len(rows)
        assert led.store_fingerprints("k", ids, values) == 0  # kept once
        found, back = led.fingerprints("k", pa.array(["nope", *ids.to_pylist()]), width)
    assert found.tolist() == [False] + [True] * len(rows)
    assert (back[1:] == values).all() and not back[0].any()
