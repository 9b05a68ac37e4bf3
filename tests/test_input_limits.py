"""Every bad input a careless user or an adversary gives gets a named error with its
location, exit 2, no traceback, and leaves the store as it was."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tailguard.cli import app
from tailguard.ledger import Ledger
from tailguard.readers import MAX_JSON_DEPTH

runner = CliRunner()
GOOD = '{"text": "a good line of text", "label": "a"}\n'


def _fail(args, *, where=None):
    out = runner.invoke(app, args)
    assert out.exit_code == 2, out.output
    assert not isinstance(out.exception, Exception) or isinstance(out.exception, SystemExit)
    assert "Traceback" not in out.output
    if where is not None:
        assert where in out.output, out.output
    return out.output


@pytest.fixture
def led(tmp_path):
    path = tmp_path / "ledger.duckdb"
    good = tmp_path / "good.jsonl"
    good.write_text(GOOD)
    assert runner.invoke(app, ["init", "--ledger", str(path)]).exit_code == 0
    assert runner.invoke(app, ["ingest", str(good), "--ledger", str(path)]).exit_code == 0
    return path


def _count(path) -> int:
    with Ledger.open(path, read_only=True) as led:
        return led.count()


BAD_FILES = {
    "label_utf8.jsonl": (b'{"text": "abc def", "label": "\xff"}\n', "line 1"),
    "key_utf8.jsonl": (b'{"text": "abc def", "\xffk": "x"}\n', "line 1"),
    "struct_label.jsonl": (b'{"text": "abc def", "label": {"a": 1}}\n', "field 'label'"),
    "list_label.jsonl": (b'{"text": "abc def", "label": [1]}\n', "field 'label'"),
    "dup.csv": (b"text,text\nabc,def\n", "appears more than once"),
    "blank.jsonl": (
        b'{"text": "ok text", "label": "a"}\n{"text": "   ", "label": "a"}\n',
        "line 2",
    ),
    "empty_text.jsonl": (b'{"text": "", "label": "a"}\n', "empty text"),
    "deep.jsonl": (
        b'{"text": "x", "a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
        "nested 100,001 deep",
    ),
    "deepish.jsonl": (
        GOOD.encode() + b'{"text": "x", "a": ' + b"[" * 3000 + b"]" * 3000 + b"}\n",
        "line 2",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_are_named_and_change_nothing(led, tmp_path, name):
    data, where = BAD_FILES[name]
    f = tmp_path / name
    f.write_bytes(data)
    _fail(["ingest", str(f), "--label-field", "label", "--ledger", str(led)], where=where)
    assert _count(led) == 1


def test_depth_at_the_limit_is_fine_and_brackets_in_strings_do_not_count(led, tmp_path):
    n = MAX_JSON_DEPTH - 1
    f = tmp_path / "ok.jsonl"
    f.write_text(
        '{"text": "brackets [[[[ \\" {{{{ in text'
        + "[" * 200
        + '", "a": '
        + "[" * n
        + "]" * n
        + "}\n"
    )
    out = runner.invoke(app, ["ingest", str(f), "--ledger", str(led)])
    assert out.exit_code == 0, out.output


def test_a_deep_line_does_not_crash_a_real_process(tmp_path):
    """The SIGSEGV case, in a subprocess so a crash would show as a signal."""
    f = tmp_path / "deep.jsonl"
    f.write_bytes(b'{"text": "x", "a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n")
    Ledger.open(tmp_path / "l.duckdb").close()
    r = subprocess.run(
        [sys.executable, "-m", "tailguard.cli", "ingest", str(f), "--ledger",
         str(tmp_path / "l.duckdb")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2 and "nested" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--origin", "humn"],
        ["--round", "-3"],
        ["--generation", "-1"],
    ],
)
def test_bad_options(led, tmp_path, args):
    f = tmp_path / "x.jsonl"
    f.write_text('{"text": "another line"}\n')
    _fail(["ingest", str(f), "--ledger", str(led), *args])
    assert _count(led) == 1


def test_foreign_and_broken_ledgers_are_refused_with_what_they_are(led, tmp_path):
    good = tmp_path / "good.jsonl"
    text = tmp_path / "text.duckdb"
    text.write_text("not a database at all")
    _fail(["audit", "--ledger", str(text)], where="not a DuckDB database")
    lite = tmp_path / "x.sqlite"
    con = sqlite3.connect(lite)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    _fail(["audit", "--ledger", str(lite)], where="SQLite database")
    cut = tmp_path / "cut.duckdb"
    cut.write_bytes(led.read_bytes()[:100_000])
    _fail(["ingest", str(good), "--ledger", str(cut)], where="truncated")
    _fail(["ingest", str(good), "--ledger", str(good / "sub.duckdb")], where="no ledger at")
    # No extension was fetched or installed for the SQLite file.
    home = os.path.expanduser("~/.duckdb/extensions")
    assert not any("sqlite" in n for _, _, names in os.walk(home) for n in names)


def test_outputs_that_cannot_be_written(led, tmp_path):
    _fail(["export", "--round", "0", "-o", str(tmp_path), "--ledger", str(led)], where="directory")
    _fail(
        ["export", "--round", "0", "-o", str(tmp_path / "no" / "x.jsonl"), "--ledger", str(led)],
        where="does not exist",
    )
    _fail(["report", "-o", str(tmp_path / "no" / "r.html"), "--ledger", str(led)])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through read-only modes")
def test_read_only_output(led, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    _fail(["report", "-o", str(ro / "r.html"), "--ledger", str(led)])


def test_full_filesystem(led):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    _fail(["report", "-o", "/dev/full", "--ledger", str(led)])


def test_unknown_runs_exit_non_zero_listing_the_runs(led):
    for cmd in (["monitor"], ["audit"], ["dial", "show"]):
        out = _fail([*cmd, "--run", "nosuchrun", "--ledger", str(led)], where="nosuchrun")
        assert "runs:" in out


@pytest.mark.parametrize("cmd", [["audit"], ["gate", "--round", "1"], ["run"]])
@pytest.mark.parametrize(
    "content",
    [b"\xff\xfe[project]\n", b"[project\nledger = 1\n", b"[gate]\nshingle = 748673022273\n"],
)
def test_broken_config_files(tmp_path, cmd, content, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tailguard.toml").write_bytes(content)
    _fail(cmd, where="tailguard.toml")


def test_gate_parameters_are_typed_and_bounded(tmp_path):
    from tailguard.config import load_config
    from tailguard.errors import TailguardError

    for body in (
        'kind = "near_duplicate"\nshingle = 748673022273',
        'kind = "near_duplicate"\nthreshold = "high"',
        'kind = "near_duplicate"\nnum_perm = 10000000',
        'kind = "quality"\nngram = 100000',
    ):
        f = tmp_path / "t.toml"
        f.write_text(f"[[gate.verifiers]]\n{body}\n")
        with pytest.raises(TailguardError, match="gate.verifiers.0"):
            load_config(f)
