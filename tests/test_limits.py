"""Every number a user gives is checked against what it would cost before anything is
allocated or written: a named error saying the limit, exit 2, the store unchanged."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tailguard import limits
from tailguard.cli import app
from tailguard.config import parse_toml
from tailguard.errors import ConfigError, InputError
from tailguard.ledger import Ledger, check_round
from tailguard.mix import plan
from tailguard.mix.policies import Anchored, HumanOnly
from tailguard.records import make_records

runner = CliRunner()


def _refused(args: list[str], *, says: str) -> str:
    out = runner.invoke(app, args)
    assert out.exit_code == 2, out.output
    assert "Traceback" not in out.output
    assert not out.exception or isinstance(out.exception, SystemExit), out.exception
    assert says in out.output, out.output
    return out.output


def _state(path) -> tuple:
    with Ledger.open(path, read_only=True) as led:
        return led.count(), len(led.manifests())


@pytest.fixture
def frozen(tmp_path):
    path = tmp_path / "l.duckdb"
    with Ledger.open(path) as led:
        led.add_records(
            make_records([f"human text {i}" for i in range(40)], origin="human", source="people")
        )
        led.freeze_reservoir()
    return path


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--batch-size", "2147483648"], "1048576"),
        (["--batch-size", "10000000000"], "1048576"),
        (["--epochs", "1000000000"], "10000"),
        (["--seed", str(2**63)], str(2**63 - 1)),
        (["--round", "99999999999"], "2147483647"),
    ],
)
def test_mix_numbers_are_bounded_before_anything_is_planned(frozen, args, says):
    before = _state(frozen)
    base = ["mix", "--ledger", str(frozen)]
    _refused(base + (["--round", "0"] if "--round" not in args else []) + args, says=says)
    assert _state(frozen) == before


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """Enough examples that 10,000 epochs of them pass the slot cap."""
    path = tmp_path_factory.mktemp("big") / "l.duckdb"
    n = limits.SLOTS_MAX // limits.EPOCHS_MAX + 200
    with Ledger.open(path) as led:
        led.add_records(make_records([f"text {i}" for i in range(n)], origin="human", source="p"))
        led.freeze_reservoir(holdout=0.0)
    return path


def test_a_plan_larger_than_the_slot_cap_is_refused_from_counts(big):
    """~6,900 examples x 10,000 epochs: 69M slots are refused, none allocated."""
    frozen = big
    before = _state(frozen)
    out = _refused(
        ["mix", "--round", "0", "--epochs", "10000",
         "--ledger", str(frozen)],
        says=f"{limits.SLOTS_MAX:,}",
    )  # fmt: skip
    assert "slots" in out
    assert _state(frozen) == before


def test_plan_refuses_oversized_plans_for_every_policy(big):
    with Ledger.open(big, read_only=True) as led:
        pool = led.training_pool(0, text=False)
    for policy in (Anchored(), HumanOnly()):
        with pytest.raises(ConfigError, match="slots"):
            plan(pool, policy, round=0, batch_size=32, epochs=limits.EPOCHS_MAX)
        with pytest.raises(ConfigError, match="1,048,576"):
            plan(pool, policy, round=0, batch_size=limits.BATCH_SIZE_MAX + 1)


@functools.cache
def _pool():
    """A frozen 40-example pool, built once for the property below."""
    path = Path(tempfile.mkdtemp()) / "l.duckdb"
    with Ledger.open(path) as led:
        led.add_records(
            make_records([f"human text {i}" for i in range(40)], origin="human", source="people")
        )
        led.freeze_reservoir()
        return led.training_pool(0, text=False)


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 5000), epochs=st.integers(1, 30), anchored=st.booleans())
def test_a_plan_holds_no_more_than_pool_times_epochs_in_whole_batches(batch, epochs, anchored):
    pool = _pool()
    policy = Anchored() if anchored else HumanOnly()
    manifest = plan(pool, policy, round=0, batch_size=batch, epochs=epochs)
    needed = epochs * pool.num_rows
    assert manifest.slots.num_rows <= -(-needed // batch) * batch


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["eval", "--round", "99999999999", "x.jsonl"], "2147483647"),
        (["ingest", "x.jsonl", "--round", "99999999999"], "2147483647"),
        (["ingest", "x.jsonl", "--generation", "99999999999"], "2147483647"),
        (["export", "--round", "99999999999", "-o", "o.jsonl"], "2147483647"),
    ],
)
def test_round_and_generation_numbers_fit_the_store(frozen, tmp_path, monkeypatch, args, says):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.jsonl").write_text('{"text": "a new line of text"}\n')
    before = _state(frozen)
    _refused([*args, "--ledger", str(frozen)], says=says)
    assert _state(frozen) == before


def test_check_round_names_the_stores_limit():
    assert check_round(limits.INT32_MAX) == limits.INT32_MAX
    with pytest.raises(InputError, match="2,147,483,647"):
        check_round(limits.INT32_MAX + 1)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["run", "--rounds", "99999999999"], "10000"),
        (["demo", "--workers", "0"], "1"),
        (["demo", "--workers", "-3"], "1"),
        (["demo", "--volume", "10"], "50"),
        (["demo", "--generations", "1000000000"], "10000"),
        (["lab", "run", "--workers", "0"], "1"),
        (["lab", "frontier", "--batch-size", "10000000000"], "1048576"),
    ],
)
def test_cli_counts_are_bounded(tmp_path, monkeypatch, args, says):
    monkeypatch.chdir(tmp_path)
    _refused(args, says=says)
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ("[loop]\nbatch_size = 10000000000", "1048576"),
        ("[loop]\nrounds = 99999999999", "10000"),
        (f"[loop]\nseed = {2**63}", str(2**63 - 1)),
        (f"[loop]\nn_generate = {10**12}", "10000000"),
    ],
)
def test_config_numbers_are_bounded(tmp_path, extra, says):
    from tailguard.config import load_config

    cfg = tmp_path / "tailguard.toml"
    cfg.write_text(f'[data]\nbuiltin = "fortunes"\n{extra}\n')
    with pytest.raises(ConfigError, match=says):
        load_config(cfg)


@pytest.mark.parametrize("depth", [limits.NESTING_MAX + 1, 500, 5000])
def test_deeply_nested_toml_is_refused_by_name(depth):
    text = "x = " + "[" * depth + "]" * depth + "\n"
    with pytest.raises(InputError, match="nest"):
        parse_toml(text, file="tailguard.toml")


def test_toml_nesting_at_the_limit_is_read():
    depth = limits.NESTING_MAX
    raw = parse_toml("x = " + "[" * depth + "]" * depth + "\n", file="t.toml")
    assert limits.nesting_depth(raw) == depth + 1  # the document's table, then the arrays


@given(st.recursive(st.integers(), lambda c: st.lists(c, max_size=3), max_leaves=20))
def test_nesting_depth_matches_a_recursive_count(value):
    def depth(v):
        return 1 + max((depth(c) for c in v), default=0) if isinstance(v, list) else 0

    assert limits.nesting_depth(value) == depth(value)


def test_a_mistyped_ledger_is_not_created(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["init"]).exit_code == 0  # the project's own ledger and config
    (tmp_path / "x.jsonl").write_text('{"text": "a line"}\n')
    for args in (
        ["ingest", "x.jsonl"],
        ["gate", "--round", "1"],
        ["audit"],
        ["mix", "--round", "0"],
    ):
        _refused([*args, "--ledger", "ledgr.duckdb"], says="no ledger at ledgr.duckdb")
        assert not (tmp_path / "ledgr.duckdb").exists()
    assert runner.invoke(app, ["init", "--ledger", "ledgr.duckdb"]).exit_code == 0
    assert runner.invoke(app, ["ingest", "x.jsonl", "--ledger", "ledgr.duckdb"]).exit_code == 0
    assert _state(tmp_path / "ledgr.duckdb") == (1, 0)


def test_someone_elses_duckdb_file_is_left_alone(tmp_path):
    foreign = tmp_path / "foreign.duckdb"
    con = duckdb.connect(str(foreign))
    con.execute("CREATE TABLE sales (x INTEGER)")
    con.close()
    (tmp_path / "x.jsonl").write_text('{"text": "a line"}\n')
    _refused(
        ["ingest", str(tmp_path / "x.jsonl"), "--ledger", str(foreign)],
        says="not a tailguard ledger",
    )
    con = duckdb.connect(str(foreign), read_only=True)
    tables = {t for (t,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    con.close()
    assert tables == {"sales"}


def test_a_jsonl_file_with_a_byte_order_mark_is_read(tmp_path):
    f = tmp_path / "bom.jsonl"
    f.write_bytes(b'\xef\xbb\xbf{"text": "first line"}\n{"text": "second line"}\n')
    path = tmp_path / "l.duckdb"
    Ledger.open(path).close()
    out = runner.invoke(app, ["ingest", str(f), "--ledger", str(path)])
    assert out.exit_code == 0, out.output
    with Ledger.open(path, read_only=True) as led:
        texts = sorted(t for (t,) in led.con.execute("SELECT content FROM records").fetchall())
    assert texts == ["first line", "second line"]


def test_ingest_tells_duplicates_within_the_file_from_those_in_the_ledger(tmp_path):
    path = tmp_path / "l.duckdb"
    Ledger.open(path).close()
    f = tmp_path / "d.jsonl"
    f.write_text('{"text": "one"}\n{"text": "two"}\n{"text": "one"}\n')
    out = runner.invoke(app, ["ingest", str(f), "--source", "s", "--ledger", str(path)])
    assert out.exit_code == 0, out.output
    assert "2 added, 1 duplicates within the file, 0 already in the ledger" in out.output
    g = tmp_path / "e.jsonl"
    g.write_text('{"text": "two"}\n{"text": "three"}\n')
    out = runner.invoke(app, ["ingest", str(g), "--source", "s", "--ledger", str(path)])
    assert "1 added, 1 already in the ledger" in out.output, out.output


def test_advise_refuses_an_unknown_run(frozen):
    _refused(["advise", "--ledger", str(frozen), "--run", "nosuch"], says="no run 'nosuch'")


@pytest.mark.parametrize(
    "args", [["lab", "run", "--out", "taken"], ["lab", "frontier", "--out", "taken"],
             ["demo", "--out", "taken"]],
)  # fmt: skip
def test_an_output_folder_that_is_a_file_is_refused_before_any_work(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken").write_text("mine")
    _refused(args, says="taken")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    assert (tmp_path / "taken").read_text() == "mine"
