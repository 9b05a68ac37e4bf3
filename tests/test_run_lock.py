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


# --------------------------------------------------------------- the stage boundary guard
_WRITER = """
import sys
from tailguard.ledger import Ledger
from tailguard.records import make_records
with Ledger.open(sys.argv[1]) as led:
    led.add_records(make_records(["written behind the run's back"], origin="human", source="x"))
"""

_READER = """
import sys
from tailguard.ledger import Ledger
with Ledger.open(sys.argv[1], read_only=True) as led:
    print(led.count())
"""


def _loop(path: Path):
    from tailguard.loop import Loop
    from tailguard.mix import Anchored

    led = Ledger.open(path)
    human = [f"human text number {i} for the loop" for i in range(40)]
    led.add_records(make_records(human, origin="human", source="h", label=["a", "b"] * 20))
    led.freeze_reservoir("main", holdout=0.2)

    def generate(model, n, r, seed):
        return [f"synthetic text {r} {seed} {i}" for i in range(n)]

    loop = Loop(
        led,
        train=lambda manifest, records: manifest.round,
        generate=generate,
        policy=Anchored(real_fraction=0.5),
        n_generate=8,
        batch_size=4,
    )
    return led, loop


def _between(at: tuple[int, str], script: str, path: Path, led: Ledger):
    """An ``on_stage`` hook: after stage ``at``, let go of the file and run ``script``."""

    def hook(r: int, stage: str) -> None:
        if (r, stage) == at:
            led.release()  # (the loop lets go by itself when its hold is over)
            subprocess.run([sys.executable, "-c", script, str(path)], check=True)

    return hook


def test_a_write_between_stages_stops_the_run_with_a_named_error(tmp_path: Path) -> None:
    from tailguard.ledger import ProjectChanged

    path = tmp_path / "l.duckdb"
    led, loop = _loop(path)
    with pytest.raises(ProjectChanged) as caught:
        loop.run(2, on_stage=_between((1, "plan"), _WRITER, path, led))
    message = str(caught.value)
    assert message.startswith("round 1, train: the project changed under the run")
    assert "(since round 1, plan)" in message and "records 48 -> 49 rows" in message
    assert "tailguard run --resume" in message
    # nothing was written after the foreign write: round 1 stops at its plan
    assert led.last_stage("main") == (1, "plan")
    assert led.count() == 40 + 8 + 1 and led.manifests("main") == [0, 1]
    assert not Path(str(path) + ".run").exists()  # the lock went with the run
    # resuming reads the new state and finishes
    assert [r.round for r in loop.run(2, resume=True)] == [1, 2]
    assert led.last_stage("main") == (2, "evaluate")
    led.close()


def test_a_reader_between_stages_does_not_stop_the_run(tmp_path: Path) -> None:
    path = tmp_path / "l.duckdb"
    led, loop = _loop(path)
    results = loop.run(2, on_stage=_between((1, "plan"), _READER, path, led))
    assert [r.round for r in results] == [0, 1, 2]
    led.close()


def test_the_loop_takes_the_run_lock(tmp_path: Path) -> None:
    path = tmp_path / "l.duckdb"
    led, loop = _loop(path)
    seen: list[tuple[int, str] | None] = []

    def hook(r: int, stage: str) -> None:
        seen.append(run_holder(path))  # this process: not another run
        with pytest.raises(RunInProgress, match="another run holds this project"):
            out = subprocess.run(
                [sys.executable, "-c", _HOLDER, str(path)],
                capture_output=True, text=True, input="", timeout=120,
            )  # fmt: skip
            raise RunInProgress(out.stderr.strip().splitlines()[-1])

    loop.run(0, on_stage=lambda r, s: hook(r, s) if s == "plan" else None)
    assert seen == [None]
    assert not Path(str(path) + ".run").exists()
    with run_lock(path):  # the CLI holds it around the loop: the loop joins it
        loop.run(1, resume=True)
        assert Path(str(path) + ".run").exists()
    assert not Path(str(path) + ".run").exists()
    led.close()
