"""A real `tailguard run` in a subprocess: readers poll it while it runs, and Ctrl-C
ends it with one line, exit 130, and a run that `--resume` finishes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from test_resume import CONFIG as FULL
from test_resume import fingerprint

from tailguard.ledger import Ledger

CLI = [sys.executable, "-m", "tailguard.cli"]
CONFIG = FULL.replace("rounds = 3", "rounds = 2")
#: Long enough that a Ctrl-C sent once the reader sees round 1 lands mid-run: the run
#: holds its file between quick stages, so a reader gets in only now and then.
LONG = FULL.replace("rounds = 3", "rounds = 8")
READERS = (
    ["monitor"],
    ["audit"],
    ["dial", "show"],
    ["report", "-o", "{out}"],
)


def start(cfg: Path, ledger: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*CLI, "run", str(cfg), "--ledger", str(ledger), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stages(ledger: Path) -> int:
    """Finished stages, read while the run may hold the file (0 until it exists)."""
    if not ledger.exists():
        return 0
    try:
        with Ledger.open(ledger, read_only=True, wait=30) as led:
            return led.stages("main").num_rows
    except Exception:  # the file may be mid-creation: DuckDB writes its header first
        return 0


def test_readers_work_while_a_run_writes(tmp_path):
    cfg = tmp_path / "tailguard.toml"
    cfg.write_text(CONFIG)
    ledger = tmp_path / "ledger.duckdb"
    proc = start(cfg, ledger)
    results = []
    while proc.poll() is None:
        if stages(ledger) >= 1:
            for cmd in READERS:
                argv = [a.format(out=tmp_path / "r.html") for a in cmd]
                results.append(
                    subprocess.run(
                        [*CLI, *argv, "--ledger", str(ledger)],
                        capture_output=True,
                        text=True,
                        timeout=120,
                    )
                )
        time.sleep(0.2)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert len(results) >= len(READERS)
    for r in results:
        # monitor exits 1 on an alert and audit on a flagged round: both are answers.
        assert r.returncode in (0, 1), r.args + [r.stderr]
        assert "Traceback" not in r.stderr and "lock" not in r.stderr.lower(), r.stderr


def test_ctrl_c_ends_a_run_with_130_and_resume_finishes(tmp_path):
    cfg = tmp_path / "tailguard.toml"
    cfg.write_text(LONG)
    ledger = tmp_path / "ledger.duckdb"
    proc = start(cfg, ledger)
    while proc.poll() is None and stages(ledger) < 8:
        time.sleep(0.1)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.startswith("interrupted: ") and "run again with --resume" in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    resumed = subprocess.run(
        [*CLI, "run", str(cfg), "--ledger", str(ledger), "--resume"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    whole = tmp_path / "whole.duckdb"
    subprocess.run([*CLI, "run", str(cfg), "--ledger", str(whole)], check=True, capture_output=True)
    assert fingerprint(ledger) == fingerprint(whole)
