"""No crash locks the ledger: a checkpoint killed midway opens with every record; only
what DuckDB itself cannot read is refused, and named."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tailguard.errors import TailguardError
from tailguard.ledger import Ledger
from tailguard.records import make_records

HERE = Path(__file__).parent
N = 3000


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ledger") / "l.duckdb"
    with Ledger.open(path) as led:
        texts = [f"human text number {i} " * 4 for i in range(N)]
        led.add_records(make_records(texts, origin="human", source="h", label=["a"] * N))
    return path


def _copy(whole: Path, tmp_path: Path) -> Path:
    p = tmp_path / "p.duckdb"
    shutil.copy(whole, p)
    return p


def _count(p: Path) -> int:
    with Ledger.open(p, read_only=True) as led:
        return led.con.execute("SELECT count(*) FROM records").fetchone()[0]


@pytest.mark.parametrize("extra", [4096, 8192, 256 * 1024, 256 * 1024 + 4096])
def test_a_file_grown_by_a_killed_checkpoint_opens_with_every_record(whole, tmp_path, extra):
    p = _copy(whole, tmp_path)
    with p.open("ab") as fh:  # a checkpoint killed while writing its new blocks
        fh.truncate(p.stat().st_size + extra)
    assert (p.stat().st_size - 3 * 4096) % (256 * 1024) == (extra % (256 * 1024))
    assert _count(p) == N


@pytest.mark.parametrize("cut", [4096, 256 * 1024, 256 * 1024 + 4096])
def test_a_file_cut_short_is_refused_as_truncated(whole, tmp_path, cut):
    p = _copy(whole, tmp_path)
    before = p.stat().st_size
    with p.open("ab") as fh:
        fh.truncate(before - cut)
    with pytest.raises(TailguardError, match="truncated DuckDB database.*restore"):
        _count(p)
    assert p.stat().st_size == before - cut  # left as it was


def test_an_overwritten_database_header_is_damaged_not_busy(whole, tmp_path):
    p = _copy(whole, tmp_path)
    with p.open("r+b") as fh:
        fh.seek(4096)
        fh.write(os.urandom(2 * 4096))
    started = time.monotonic()
    with pytest.raises(TailguardError, match="damaged DuckDB database") as err:
        Ledger.open(p, wait=30)
    assert "busy" not in str(err.value)
    assert time.monotonic() - started < 30  # not the lock wait: it was never busy


def test_a_header_that_is_not_duckdbs_is_not_a_ledger(whole, tmp_path):
    p = _copy(whole, tmp_path)
    with p.open("r+b") as fh:
        fh.write(b"\0" * 4096)
    with pytest.raises(TailguardError, match="not a DuckDB database.*not a tailguard ledger"):
        Ledger.open(p)


def test_the_cli_audits_a_ledger_killed_mid_checkpoint(whole, tmp_path):
    p = _copy(whole, tmp_path)
    with p.open("ab") as fh:  # the reproduction: cp L p.duckdb; truncate -s +4096 p.duckdb
        fh.truncate(p.stat().st_size + 4096)
    out = subprocess.run(
        [sys.executable, "-m", "tailguard.cli", "audit", "--ledger", str(p)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "truncated" not in out.stdout + out.stderr


KILLS = 100


def test_a_hundred_kills_inside_the_checkpoint_never_lock_the_ledger(tmp_path):
    """A writer SIGKILLed a random moment into letting go of the file (DuckDB's
    checkpoint), 100 times: every kill leaves a ledger that opens with every record
    committed before it."""
    out = subprocess.run(
        [
            sys.executable,
            str(HERE / "crash_checkpoint.py"),
            str(tmp_path / "c.duckdb"),
            str(KILLS),
            "26",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), str(HERE)])},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.splitlines()[-1])
    assert got["failures"] == []
    assert got["held"] == got["tried"] == KILLS
    assert got["inside_checkpoint"] >= KILLS // 2  # deliberately inside, not by chance
