"""Fuzzing: arbitrary bytes as an ingest file and as tailguard.toml. Every outcome is
either success or a named error (exit 2); never a traceback, and a refused ingest
leaves the ledger unchanged. The budget is fixed (examples, not time)."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tailguard.cli import app
from tailguard.config import load_config
from tailguard.errors import TailguardError
from tailguard.ledger import Ledger

runner = CliRunner()
BUDGET = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: JSONL-ish pieces, so the fuzzer reaches the parser's corners, not just byte noise.
PIECES = st.sampled_from(
    [b"{", b"}", b"[", b"]", b'"text"', b'"label"', b":", b",", b'"', b"\\", b"\n", b" ",
     b"null", b"1", b"-3", b"true", b'"a b c"', b"\xff", b"\xc3", b"\x00", b"\r\n", b"\xe2\x80\xa8",
     b'{"text": "x y z", "label": ', b"[" * 80, b"]" * 80]
)  # fmt: skip
INGEST_BYTES = st.one_of(
    st.binary(max_size=400),
    st.lists(PIECES, max_size=60).map(b"".join),
)


def _state(path) -> str:
    with Ledger.open(path, read_only=True) as led:
        rows = led.con.execute(
            "SELECT id, origin, source, label, round, status FROM records ORDER BY ALL"
        ).fetchall()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    path = d / "ledger.duckdb"
    seed = d / "seed.jsonl"
    seed.write_text('{"text": "a line that is already there", "label": "a"}\n')
    assert runner.invoke(app, ["init", "--ledger", str(path)]).exit_code == 0
    assert (
        runner.invoke(
            app, ["ingest", str(seed), "--label-field", "label", "--ledger", str(path)]
        ).exit_code
        == 0
    )
    return d, path


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
@BUDGET
@given(data=INGEST_BYTES)
def test_ingest_never_tracebacks_and_refusals_change_nothing(base, suffix, data):
    d, path = base
    f = d / f"input{suffix}"
    f.write_bytes(data)
    before = _state(path)
    args = ["ingest", str(f), "--ledger", str(path)]
    for extra in ([], ["--label-field", "label"]):
        out = runner.invoke(app, args + extra)
        assert out.exit_code in (0, 2), (data, out.output, out.exception)
        assert not (out.exception and not isinstance(out.exception, SystemExit)), out.exception
        if out.exit_code == 2:
            assert _state(path) == before
        before = _state(path)


TOML_PIECES = st.sampled_from(
    ["[project]", "[gate]", "[[gate.verifiers]]", 'kind = "near_duplicate"', 'kind = "quality"',
     "shingle = 748673022273", "shingle = 3", "num_perm = -1", "threshold = 2.5",
     'threshold = "x"', "[policy]", 'name = "anchored"', "real_fraction = 1.5", "[dial]",
     "enabled = 1", "[loop]", "rounds = -1", "[reservoir]", 'digest = "abc"', "[data]",
     'builtin = "fortunes"', "holdout = 0.1", "[audit]", "human_floor = nan", "=", "[", "]",
     "\n", '"', "\\", "\udcff", "ledger = 3", "[[gate.verifiers]]\nkind = 5"]
)  # fmt: skip


@settings(BUDGET, max_examples=300)
@given(
    text=st.one_of(
        st.lists(TOML_PIECES, max_size=30).map("\n".join),
        st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    )
)
def test_config_loading_never_tracebacks(tmp_path_factory, text):
    f = tmp_path_factory.getbasetemp() / "fuzz.toml"
    f.write_bytes(text.encode("utf-8", "surrogateescape"))
    with contextlib.suppress(TailguardError):
        load_config(f)


def test_a_broken_config_through_the_cli_is_exit_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tailguard.toml").write_bytes(b"[gate]\n[[gate.verifiers]]\nkind = 5\n\xff")
    out = runner.invoke(app, ["audit"])
    assert out.exit_code == 2 and "tailguard.toml" in out.output
