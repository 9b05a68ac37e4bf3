"""Rollback to a clean round: quarantine, never delete; the loop resumes from the clean state."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
import pytest
from test_ledger import slots  # the manifest slots builder the ledger tests use

from tailguard.errors import ConfigError
from tailguard.lab.models import NGram
from tailguard.ledger import Ledger
from tailguard.loop import Loop
from tailguard.mix import Anchored
from tailguard.records import Manifest, make_records
from tailguard.rollback import ROLLED_BACK_CODE, Rollback


@pytest.fixture
def rounds(frozen: Ledger) -> dict[int, list[str]]:
    """Rounds 0..3 of run main: generation r has 6 synthetic records (4 accepted, 1
    rejected, 1 left a candidate), each round's manifest mixes 2 human and its accepted."""
    human = frozen.reservoir().train_ids.to_pylist()[:2]
    frozen.write_manifest(Manifest(round=0, slots=slots(human, ["human"] * 2, [0, 0]), policy="x"))
    syn = {}
    for r in (1, 2, 3):
        recs = make_records(
            [f"synthetic text {r} {i}" for i in range(6)],
            origin="synthetic",
            source="m",
            generator=f"m@round{r - 1}",
            generation=r,
            round=r,
        )
        frozen.add_records(recs)
        ids = recs["id"].to_pylist()
        frozen.set_status(ids[:4], "accepted", round=r)
        frozen.set_status(ids[4:5], "rejected", round=r)
        syn[r] = ids
        frozen.write_manifest(
            Manifest(
                round=r,
                slots=slots(human + ids[:4], ["human"] * 2 + ["synthetic"] * 4, [0, 0] + [r] * 4),
                policy="x",
            )
        )
        frozen.mark_stage("main", r, "evaluate")
    return syn


def _table_counts(led: Ledger) -> dict[str, int]:
    names = ["records", "manifests", "manifest_slots", "verdicts", "metrics", "decisions"]
    return {n: led.con.execute(f"SELECT count(*) FROM {n}").fetchall()[0][0] for n in names}


def test_rollback_quarantines_exactly_the_later_generations_and_deletes_nothing(frozen, rounds):
    before = _table_counts(frozen)
    statuses = {
        (r["id"], r["generation"]): r["status"]
        for r in frozen.records(origin="synthetic").to_pylist()
    }
    done = frozen.rollback(1, reason="tail recall fell")
    assert done == Rollback(
        to_round=1, rounds=(2, 3), quarantined=12, run="main", reason="tail recall fell"
    )
    assert _table_counts(frozen) == before  # nothing deleted, nothing added to records
    now = frozen.records(origin="synthetic").to_pylist()
    quarantined = {r["id"] for r in now if r["status"] == "quarantined"}
    assert quarantined == set(rounds[2]) | set(rounds[3])
    # generation 1 keeps its statuses exactly
    assert all(r["status"] == statuses[(r["id"], 1)] for r in now if r["generation"] == 1)
    # the training pool no longer holds them
    pool = frozen.training_pool(4)
    assert not set(pool["id"].to_pylist()) & quarantined
    assert set(rounds[1][:4]) <= set(pool["id"].to_pylist())
    # the quarantine lists them with the reason code
    q = frozen.quarantined()
    assert set(q["id"].to_pylist()) == quarantined
    assert set(q["code"].to_pylist()) == {ROLLED_BACK_CODE}
    assert set(q["origin"].to_pylist()) == {"synthetic"}
    assert all("tail recall fell" in d for d in q["detail"].to_pylist())
    # history: append-only, rounds marked
    assert frozen.rolled_back_rounds("main") == [2, 3]
    (row,) = frozen.rollbacks().to_pylist()
    assert (row["to_round"], row["rounds"], row["quarantined"]) == (1, [2, 3], 12)


def test_audit_and_round_summary_show_the_rollback(frozen, rounds):
    frozen.rollback(2)
    summary = frozen.round_summary("main")
    assert summary["rolled_back"].to_pylist() == [False, False, False, True]
    audit = frozen.audit(run="main", floor=0.5)  # every synthetic round is below 50% human
    assert audit["rolled_back"].to_pylist() == [False, False, False, True]
    # the rolled-back round is shown, not flagged: its model was discarded
    assert audit["flagged"].to_pylist() == [False, True, True, False]


@pytest.mark.parametrize(
    ("to_round", "why"),
    [
        (-1, "whole number >= 0"),
        (True, "whole number >= 0"),
        (7, "no round 7"),
        (3, "latest round"),
    ],
)
def test_bad_targets_are_refused_and_change_nothing(frozen, rounds, to_round, why):
    before = frozen.records().to_pylist()
    with pytest.raises(ConfigError, match=why):
        frozen.rollback(to_round)
    assert frozen.records().to_pylist() == before
    assert frozen.rolled_back_rounds() == []
    assert frozen.rollbacks().num_rows == 0


def test_a_rolled_back_round_cannot_be_gone_back_to_and_release_restores(frozen, rounds):
    frozen.rollback(1)
    with pytest.raises(ConfigError, match="itself rolled back"):
        frozen.rollback(2)
    with pytest.raises(ConfigError, match="latest round"):
        frozen.rollback(1)  # rounds 2 and 3 are already set aside
    # release puts each record back where it was: accepted, rejected or candidate
    assert frozen.release_rolled_back(rounds[3]) == 6
    back = {r["id"]: r["status"] for r in frozen.records(generation=3).to_pylist()}
    assert [back[i] for i in rounds[3]] == ["accepted"] * 4 + ["rejected", "candidate"]
    with pytest.raises(Exception, match="not rolled-back synthetic"):
        frozen.release_rolled_back(rounds[3][:1])  # already released
    log = frozen.quarantine_log().to_pylist()
    assert [e["action"] for e in log].count("release") == 6


def _texts(records: pa.Table) -> tuple[list[str], list[str]]:
    """Texts and labels, so the loop names the generator (``model@roundK``) itself."""
    return records["content"].to_pylist(), records["label"].to_pylist()


def _loop(led: Ledger, trained_on: list[int]) -> Loop:
    def train(manifest, records):
        trained_on.append(manifest.round)
        return NGram(order=2).fit(records)

    return Loop(
        led,
        train=train,
        generate=lambda m, n, r, s: _texts(m.sample(n, s, generation=max(r, 1), round=r)),
        policy=Anchored(real_fraction=0.3),
        n_generate=120,
        batch_size=32,
    )


def test_run_rollback_resume_plans_from_the_clean_state(fortunes_records):
    with Ledger.open(":memory:") as led:
        led.add_records(fortunes_records.slice(0, 600))
        led.freeze_reservoir("main", holdout=0.1, seed=0)
        trained: list[int] = []
        _loop(led, trained).run(3)
        gone = {
            (r["id"], r["generation"])
            for r in led.records(origin="synthetic").to_pylist()
            if r["generation"] > 1
        }
        assert gone
        done = led.rollback(1, reason="degraded")
        assert done.rounds == (2, 3)
        trained.clear()
        loop = _loop(led, trained)
        assert loop.final_round(3) == 5
        results = loop.run(3, resume=True)
        # new rounds get new numbers after the latest; the model is round 1's, retrained
        assert [r.round for r in results] == [4, 5]
        assert trained[0] == 1
        manifest = led.manifest(4)
        syn = manifest.slots.filter(pa.compute.equal(manifest.slots["origin"], "synthetic"))
        assert syn.num_rows > 0
        planned = set(zip(syn["id"].to_pylist(), syn["generation"].to_pylist(), strict=True))
        assert not planned & gone
        assert set(syn["generation"].to_pylist()) <= {1, 4}
        gen4 = led.records(generation=4, origin="synthetic")
        assert set(gen4["generator"].to_pylist()) == {"model@round1"}
        # the candidates of round 4 are what round 1's model writes with round 4's seed
        again = (
            NGram(order=2)
            .fit(led.manifest_records(1))
            .sample(120, loop._seed(4, 1), generation=4, round=4)
        )
        assert set(gen4["id"].to_pylist()) == set(again["id"].to_pylist())
        assert led.rolled_back_rounds() == [2, 3]
        assert led.round_summary("main")["rolled_back"].to_pylist() == [
            False,
            False,
            True,
            True,
            False,
            False,
        ]
        assert led.audit(run="main")["round"].to_pylist() == [0, 1, 2, 3, 4, 5]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tailguard.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_rollback_and_audit(tmp_path, frozen, rounds):
    path = tmp_path / "l.duckdb"
    frozen.con.execute(f"ATTACH '{path}' AS f; COPY FROM DATABASE memory TO f; DETACH f")
    bad = _cli("rollback", "--to-round", "3", "--ledger", str(path))
    assert bad.returncode == 2 and "latest round" in bad.stderr and "Traceback" not in bad.stderr
    bad = _cli("rollback", "--to-round", "-2", "--ledger", str(path))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    ok = _cli("rollback", "--to-round", "1", "--reason", "drift", "--ledger", str(path))
    assert ok.returncode == 0, ok.stderr
    assert "12 synthetic record(s)" in ok.stdout
    audit = _cli("audit", "--json", "--floor", "0", "--ledger", str(path))
    data = json.loads(audit.stdout)
    assert [r["rolled_back"] for r in data["rounds"]] == [False, False, True, True]
    assert data["rollbacks"][0]["reason"] == "drift"
    text = _cli("audit", "--floor", "0", "--ledger", str(path))
    assert "rolled back" in text.stdout and "drift" in text.stdout


def test_without_a_run_name_the_ledgers_one_run_is_rolled_back(frozen, rounds):
    human = frozen.reservoir().train_ids.to_pylist()[:2]
    assert frozen.rollback(2).run == "main"  # the only run
    frozen.write_manifest(Manifest(round=0, slots=slots(human, ["human"] * 2, [0, 0]),
                                   policy="x", run="other"))  # fmt: skip
    with pytest.raises(ConfigError, match="several runs"):
        frozen.rollback(1)
    assert frozen.rolled_back_rounds("main") == [3]
