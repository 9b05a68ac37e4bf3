"""One writer at a time: a run holds its project; rollback, freeze, relabel and release
are refused while it does, and a second run is refused; a dead run's lock is stale."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tailguard.ledger import Ledger, RunInProgress, run_holder, run_lock
from tailguard.records import make_records

_HOLDER = """
import sys
from tailguard.ledger import run_lock
with run_lock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def held(tmp_path: Path):
    """A ledger with a frozen reservoir and a quarantined record, held by another live run."""
    path = tmp_path / "l.duckdb"
    with Ledger.open(path) as led:
        human = [f"human text {i}" for i in range(20)]
        led.add_records(make_records(human, origin="human", source="h", label=["a"] * 20))
        led.freeze_reservoir("main", holdout=0.2)
        syn = make_records(["flagged text"], origin="human", source="h", status="quarantined")
        led.add_records(syn)
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "held"
    yield path, proc, syn["id"][0].as_py()
    proc.kill()
    proc.wait()


def test_writers_refused_while_a_run_holds_the_project(held) -> None:
    path, proc, syn_id = held
    pid, since = run_holder(path)
    assert pid == proc.pid and since
    with Ledger.open(path) as led:
        before = led.con.execute("SELECT count(*), count(DISTINCT status) FROM records").fetchall()
        member = led.reservoir().train_ids[0].as_py()
        for attempt in (
            lambda: led.rollback(0),
            lambda: led.freeze_reservoir("second"),
            lambda: led.relabel(member, "b"),
            lambda: led.release_quarantined([syn_id]),
            lambda: led.release_rolled_back([syn_id]),
        ):
            with pytest.raises(
                RunInProgress, match=rf"a run is in progress \(pid {proc.pid}, since"
            ):
                attempt()
        assert (
            led.con.execute("SELECT count(*), count(DISTINCT status) FROM records").fetchall()
            == before
        )
        assert led.con.execute("SELECT count(*) FROM reservoirs").fetchone()[0] == 1
    with pytest.raises(RunInProgress, match="another run holds this project"), run_lock(path):
        pass


def test_a_dead_runs_lock_is_stale(held) -> None:
    path, proc, syn_id = held
    proc.kill()
    proc.wait()
    assert run_holder(path) is None
    with run_lock(path):
        assert Path(str(path) + ".run").read_text().split()[0] != str(proc.pid)
        with Ledger.open(path) as led:  # the holder itself may write
            assert led.release_quarantined([syn_id]) == 1
    assert not Path(str(path) + ".run").exists()


def test_the_cli_refuses_a_rollback_during_a_run(held) -> None:
    path, proc, _ = held
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tailguard.cli",
            "rollback",
            "--to-round",
            "0",
            "--ledger",
            str(path),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert f"a run is in progress (pid {proc.pid}" in out.stdout + out.stderr
    assert "Traceback" not in out.stderr
