"""Edits made to a ledger outside tailguard, one class at a time: each must be caught
by the next reservoir read (or, for a rewrite of data *and* digest, by a digest pinned
outside the ledger), and a run must stay on the reservoir it started with."""

from __future__ import annotations

import hashlib

import pytest
from typer.testing import CliRunner

from tailguard.cli import app
from tailguard.errors import InputError, ReservoirError
from tailguard.ledger import Ledger, _content_digest
from tailguard.records import make_records

runner = CliRunner()


def _member(led: Ledger, split: str = "holdout") -> str:
    return (
        led.reservoir().holdout_ids[0].as_py()
        if split == "holdout"
        else (led.reservoir().train_ids[0].as_py())
    )


def _fresh(path) -> Ledger:
    led = Ledger.open(path)
    led._verified.clear()
    return led


#: (name, SQL run against the ledger file behind tailguard's back, with {id} a member)
TAMPERS = [
    ("member deleted", "DELETE FROM reservoir_members WHERE id = '{id}'"),
    (
        "split moved",
        "UPDATE reservoir_members SET split = CASE split WHEN 'train' THEN 'holdout'"
        " ELSE 'train' END WHERE id = '{id}'",
    ),
    ("member label", "UPDATE reservoir_members SET label = 'zzz' WHERE id = '{id}'"),
    ("record label", "UPDATE records SET label = 'zzz' WHERE id = '{id}'"),
    ("content edited", "UPDATE records SET content = 'something else' WHERE id = '{id}'"),
    ("whitespace only", "UPDATE records SET content = content || '  ' WHERE id = '{id}'"),
    ("status", "UPDATE records SET status = 'rejected' WHERE id = '{id}'"),
    ("round", "UPDATE records SET round = 3 WHERE id = '{id}'"),
    ("source", "UPDATE records SET source = 'elsewhere' WHERE id = '{id}'"),
    ("record deleted", "DELETE FROM records WHERE id = '{id}'"),
    (
        "shadow row",
        "INSERT INTO records SELECT id, 'shadow content', origin, 'aaa', generator, generation,"
        " parent_id, label, round, status, created_at, meta FROM records WHERE id = '{id}'",
    ),
    (
        "whitespace twin wins",
        "INSERT INTO records SELECT id, content || ' ', origin, 'aaa', generator, generation,"
        " parent_id, label, round, status, created_at, meta FROM records WHERE id = '{id}'",
    ),
    (  # same id and content: the training pool reads it (first by generation), the
        # digest does not (first by round and source)
        "label twin",
        "INSERT INTO records SELECT id, content, origin, source, generator, -1,"
        " parent_id, 'TAMPERED', 99, status, created_at, meta FROM records WHERE id = '{id}'",
    ),
    (  # a twin without a label: count(DISTINCT label) alone does not see it
        "empty-label twin",
        "INSERT INTO records SELECT id, content, origin, 'aaa', generator, generation,"
        " parent_id, NULL, round, status, created_at, meta FROM records WHERE id = '{id}'",
    ),
    (
        "blank-label twin",
        "INSERT INTO records SELECT id, content, origin, source, generator, -1,"
        " parent_id, '', 99, status, created_at, meta FROM records WHERE id = '{id}'",
    ),
    (
        "status twin",
        "INSERT INTO records SELECT id, content, origin, source, generator, -1,"
        " parent_id, label, 99, 'rejected', created_at, meta FROM records WHERE id = '{id}'",
    ),
    (
        "another reservoir takes over",
        "INSERT INTO reservoirs SELECT 'other', digest, seed, holdout_fraction, n_train,"
        " n_holdout, created_at + INTERVAL 1 DAY, digest_version FROM reservoirs",
    ),
]


@pytest.fixture
def frozen_file(tmp_path, small_human):
    path = tmp_path / "ledger.duckdb"
    with Ledger.open(path) as led:
        led.add_records(small_human)
        led.freeze_reservoir("main", holdout=0.2, seed=7)
        led.pin_reservoir("main")
        led.mark_stage("main", 0, "generate")
    return path


@pytest.mark.parametrize(("name", "sql"), TAMPERS, ids=[t[0] for t in TAMPERS])
@pytest.mark.parametrize("split", ["holdout", "train"])
def test_every_tamper_class_is_detected(frozen_file, name, sql, split):
    with Ledger.open(frozen_file) as led:
        member = _member(led, split)
        led.con.execute(sql.format(id=member))
    with _fresh(frozen_file) as led, pytest.raises(ReservoirError):
        led.pin_reservoir("main")
        led.reservoir_records("holdout")
    shown = runner.invoke(app, ["reservoir", "show", "--ledger", str(frozen_file)])
    if name != "another reservoir takes over":  # unnamed show reads the newest, verified
        assert shown.exit_code == 2 and "altered outside tailguard" in shown.output


def test_rewriting_data_and_digest_is_caught_only_by_a_pinned_digest(frozen_file, tmp_path):
    with Ledger.open(frozen_file) as led:
        pinned = led.reservoir().digest
        member = _member(led)
        led.con.execute(f"UPDATE records SET label = 'zzz' WHERE id = '{member}'")
        led.con.execute("UPDATE reservoir_members SET label = 'zzz' WHERE id = ?", [member])
        forged = _content_digest(led.con, "main")
        led.con.execute("UPDATE reservoirs SET digest = ?", [forged])
        led.con.execute("UPDATE run_reservoirs SET digest = ?", [forged])
    with _fresh(frozen_file) as led:
        assert led.reservoir().digest == forged  # the ledger alone cannot tell
        with pytest.raises(ReservoirError, match="not the expected"):
            led.reservoir(expect=pinned)
    show = runner.invoke(
        app, ["reservoir", "show", "--ledger", str(frozen_file), "--expect", pinned]
    )
    assert show.exit_code == 2 and "not the expected" in show.output
    (tmp_path / "tailguard.toml").write_text(
        f'[project]\nledger = "{frozen_file.name}"\n[reservoir]\ndigest = "{pinned}"\n'
    )
    import os

    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        for cmd in (["reservoir", "show"], ["audit"]):
            out = runner.invoke(app, cmd)
            assert out.exit_code == 2 and "not the expected" in out.output, cmd
    finally:
        os.chdir(here)


def test_a_run_is_pinned_no_refreeze_no_switch(frozen_file):
    with Ledger.open(frozen_file) as led:
        with pytest.raises(ReservoirError, match="already have stages"):
            led.freeze_reservoir("other")
        led.con.execute("DELETE FROM reservoir_members")
        led.con.execute("DELETE FROM reservoirs")
        with pytest.raises(ReservoirError, match="already have stages"):
            led.freeze_reservoir("main", holdout=0.5, seed=1)


def test_a_shadow_row_is_refused_at_ingest(frozen):
    member = frozen.reservoir().holdout_ids[0].as_py()
    shadow = make_records(["other content here"], origin="human", source="aaa")
    shadow = shadow.set_column(0, "id", [[member]])
    before = frozen.count()
    with pytest.raises(InputError, match="does not hash to its id"):
        frozen.add_records(shadow)
    assert frozen.count() == before


def test_a_members_text_bought_again_under_another_label_adds_no_row(frozen):
    """A member's text bought again under another label (data sets file some texts
    twice) is not a second row: the store keeps the member's one row and its reads go on."""
    member = frozen.reservoir().train_ids[0].as_py()
    row = frozen.records(ids=[member])
    text, label = row["content"][0].as_py(), row["label"][0].as_py()
    for other in (label + "x", label, None):
        again = make_records([text], origin="human", source="bought", round=1, label=[other])
        before = frozen.count()
        assert frozen.add_records(again).added == 0
        assert frozen.count() == before
        frozen.reservoir_records("train")  # no twin was left for the reads to refuse


def test_an_old_digest_version_still_reads(frozen):
    """A reservoir frozen before digest version 2 (``split:id`` lines) stays readable."""
    from tailguard.ledger import _reservoir_digest

    members = frozen.con.sql(
        "SELECT id, label, split FROM reservoir_members ORDER BY id"
    ).to_arrow_table()
    frozen.con.execute(
        "UPDATE reservoirs SET digest = ?, digest_version = NULL", [_reservoir_digest(members)]
    )
    frozen._verified.clear()
    assert frozen.reservoir().size == members.num_rows


def test_a_write_while_the_ledger_was_let_go_is_caught_on_reopening(frozen_file):
    """The reservoir is checked once per connection; a release lets another process
    write, so the next connection checks again unless the file is untouched."""
    led = Ledger.open(frozen_file)
    member = _member(led)
    led.release()
    assert led.reservoir().holdout_ids[0].as_py() == member  # untouched: the cached check
    led.release()
    with Ledger.open(frozen_file) as other:
        other.con.execute("UPDATE records SET content = 'forged' WHERE id = ?", [member])
    with pytest.raises(ReservoirError, match="altered outside tailguard"):
        led.reservoir()
    led.close()


def test_the_streamed_digest_equals_the_one_query_form(frozen_file):
    """The digest is hashed batch by batch; it must equal sha256 of every line joined
    by newlines, as one DuckDB query computes it (and as earlier versions stored it)."""
    import tailguard.ledger.digests as ledger_mod

    with Ledger.open(frozen_file) as led:
        one_query = led.con.execute(
            """
            WITH r AS (SELECT DISTINCT ON (id) * FROM records WHERE origin = 'human'
                       ORDER BY id, round, source)
            SELECT sha256(coalesce(string_agg(
                to_json([m.split, m.id, m.label, r.label, r.source, r.round::VARCHAR, r.status,
                         sha256(r.content)]), chr(10) ORDER BY m.id), ''))
            FROM reservoir_members m LEFT JOIN r ON r.id = m.id WHERE m.name = 'main'
            """
        ).fetchall()[0][0]
        assert led.reservoir().digest == one_query
        for batch in (1, 7, 10_000):  # lines split across batches any way
            ledger_mod._DIGEST_BATCH = batch
            try:
                assert _content_digest(led.con, "main") == one_query
            finally:
                ledger_mod._DIGEST_BATCH = 100_000
        assert _content_digest(led.con, "no such reservoir") == hashlib.sha256(b"").hexdigest()


def _evil(path) -> None:
    """A reservoir ``evil`` with every holdout member moved to train and a consistent
    digest, newer than ``main``: unnamed reads would take it."""
    with Ledger.open(path) as led:
        led.con.execute(
            "INSERT INTO reservoir_members SELECT 'evil', id, 'train', label "
            "FROM reservoir_members WHERE name = 'main'"
        )
        led.con.execute(
            "INSERT INTO reservoirs SELECT 'evil', 'x', seed, holdout_fraction, n_train,"
            " n_holdout, created_at + INTERVAL 1 DAY, digest_version FROM reservoirs"
        )
        led.con.execute(
            "UPDATE reservoirs SET digest = ? WHERE name = 'evil'",
            [_content_digest(led.con, "evil")],
        )


@pytest.mark.parametrize(
    "cmd",
    [
        ["mix", "--round", "1", "--policy", "human_only", "--run", "other"],
        ["export", "--round", "0", "-o", "{out}"],
        ["reservoir", "show"],
        ["audit"],
    ],
)
def test_an_added_reservoir_is_refused_by_every_command(frozen_file, tmp_path, cmd):
    from tailguard.mix import HumanOnly, plan

    with Ledger.open(frozen_file) as led:
        led.write_manifest(plan(led.training_pool(0), HumanOnly(), round=0, batch_size=8, seed=0))
    _evil(frozen_file)
    cmd = [c.format(out=tmp_path / "out.jsonl") for c in cmd]
    out = runner.invoke(app, [*cmd, "--ledger", str(frozen_file)])
    assert out.exit_code == 2, out.output
    assert not (tmp_path / "out.jsonl").exists()
    assert "is not the one run 'main' is pinned to" in out.output
    with Ledger.open(frozen_file) as led:  # nothing was planned from it
        assert led.con.execute("SELECT count(*) FROM manifests").fetchone()[0] == 1


def test_a_deleted_pin_is_an_error_not_a_repin(frozen_file):
    with Ledger.open(frozen_file) as led:
        led.con.execute("DELETE FROM run_reservoirs")
    with _fresh(frozen_file) as led:
        with pytest.raises(ReservoirError, match="has stages but no pinned reservoir"):
            led.pin_reservoir("main")
        assert led.con.execute("SELECT count(*) FROM run_reservoirs").fetchone()[0] == 0
    out = runner.invoke(app, ["reservoir", "show", "--ledger", str(frozen_file)])
    assert out.exit_code == 2 and "no pinned reservoir" in out.output


@pytest.mark.parametrize("round_", [0, 4])
def test_a_members_text_ingested_again_adds_no_second_row(frozen_file, tmp_path, round_):
    """One row per fact: the same text from another file, without its label, is not a
    second row under the member's id (it would be read instead of the digested row, or
    break the digest): it counts as already in the ledger, and the project reads on."""
    import json

    import pyarrow.compute as pc

    with Ledger.open(frozen_file) as led:
        member = _member(led, "train")
        text, label = led.con.execute(
            "SELECT content, label FROM records WHERE id = ?", [member]
        ).fetchone()
        before = led.count()
    again = tmp_path / "again.jsonl"  # a source that sorts before the member's own
    again.write_text(json.dumps({"text": text}) + "\n" + json.dumps({"text": "new text"}) + "\n")
    out = runner.invoke(
        app,
        ["ingest", str(again), "--round", str(round_), "--ledger", str(frozen_file)],
    )
    assert out.exit_code == 0, out.output
    with _fresh(frozen_file) as led:
        assert led.count() == before + 1  # only the new text
        assert (
            led.con.execute("SELECT count(*) FROM records WHERE id = ?", [member]).fetchone()[0]
            == 1
        )
        pool = led.training_pool(0)
        assert pool.filter(pc.equal(pool["id"], member))["label"].to_pylist() == [label]
    shown = runner.invoke(app, ["reservoir", "show", "--ledger", str(frozen_file)])
    assert shown.exit_code == 0, shown.output


def test_an_unlabelled_twin_sorting_last_is_read_by_no_one(frozen_file):
    """A second human row without a label that sorts after the member's own (a later
    round, another generation) is read neither by the digest nor by the training pool:
    both take a human id's first row by round and source."""
    import pyarrow.compute as pc

    with Ledger.open(frozen_file) as led:
        member = _member(led, "train")
        label = led.con.execute("SELECT label FROM records WHERE id = ?", [member]).fetchone()[0]
        led.con.execute(
            "INSERT INTO records SELECT id, content, origin, source, generator, -1, parent_id,"
            f" NULL, 99, status, created_at, meta FROM records WHERE id = '{member}'"
        )
    with _fresh(frozen_file) as led:
        pool = led.training_pool(0)
        row = pool.filter(pc.equal(pool["id"], member)).to_pylist()
        assert [(r["label"], r["generation"]) for r in row] == [(label, 0)]


def test_a_pin_checked_without_recording_writes_no_pin(tmp_path, small_human):
    """The loop checks the pin before it may still refuse, and records it only after."""
    with Ledger.open(tmp_path / "ledger.duckdb") as led:
        led.add_records(small_human)
        led.freeze_reservoir("main", holdout=0.2, seed=7)
        res = led.pin_reservoir("main", record=False)
        assert led.con.execute("SELECT count(*) FROM run_reservoirs").fetchone() == (0,)
        assert led.pin_reservoir("main") == res
        assert led.con.execute("SELECT run FROM run_reservoirs").fetchall() == [("main",)]
