"""Kill a real `tailguard run` with SIGKILL at random points; `--resume` must finish it
with no record lost or duplicated and the same manifest digests as an uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tailguard.ledger import Ledger

CONFIG = """
[data]
builtin = "fortunes"
holdout = 0.1
seed = 0

[model]
kind = "ngram"

[gate]
[[gate.verifiers]]
kind = "quality"
min_words = 3

[[gate.verifiers]]
kind = "near_duplicate"
threshold = 0.8

[policy]
name = "anchored"
real_fraction = 0.2

[dial]
enabled = true
watch = ["tail_recall", "distinct_2"]

[loop]
rounds = 3
n_generate = 400
batch_size = 64
seed = 5
"""

CLI = [sys.executable, "-m", "tailguard.cli"]


def run(cfg: Path, ledger: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, "run", str(cfg), "--ledger", str(ledger), *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )


def fingerprint(path: Path) -> dict:
    with Ledger.open(path, read_only=True) as led:
        con = led.con
        return {
            "digests": con.execute("SELECT round, digest FROM manifests ORDER BY round").fetchall(),
            "records": con.execute(
                "SELECT origin, generation, status, count(*) FROM records GROUP BY ALL ORDER BY ALL"
            ).fetchall(),
            "verdicts": con.execute(
                "SELECT verifier, passed, count(*) FROM verdicts GROUP BY ALL ORDER BY ALL"
            ).fetchall(),
            "decisions": con.execute(
                "SELECT round, real_fraction FROM decisions ORDER BY round"
            ).fetchall(),
            "metric_rows": con.execute("SELECT count(*) FROM metrics").fetchall(),
        }


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reference")
    cfg = tmp / "tailguard.toml"
    cfg.write_text(CONFIG)
    start = time.monotonic()
    done = run(cfg, tmp / "ref.duckdb")
    assert done.returncode == 0, done.stderr
    return cfg, fingerprint(tmp / "ref.duckdb"), time.monotonic() - start


@pytest.mark.slow
@pytest.mark.parametrize("attempt", range(3))
def test_sigkill_then_resume_matches_an_uninterrupted_run(reference, tmp_path, attempt):
    cfg, expected, duration = reference
    assert len(expected["digests"]) == 4
    ledger = tmp_path / "killed.duckdb"
    rng = random.Random(1000 + attempt)
    kills = 0
    for _ in range(2):  # kill it twice, at random points of the run
        proc = subprocess.Popen(
            [
                *CLI,
                "run",
                str(cfg),
                "--ledger",
                str(ledger),
                *(["--resume"] if ledger.exists() else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.3, max(0.6, duration * 0.8)))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
    finished = run(cfg, ledger, "--resume")
    assert finished.returncode == 0, finished.stderr
    assert fingerprint(ledger) == expected
    assert kills >= 1


def test_a_second_run_without_resume_is_refused(reference, tmp_path):
    cfg, _, _ = reference
    ledger = tmp_path / "l.duckdb"
    assert run(cfg, ledger, "--rounds", "1").returncode == 0
    again = run(cfg, ledger, "--rounds", "1")
    assert again.returncode != 0 and "resume" in again.stderr
