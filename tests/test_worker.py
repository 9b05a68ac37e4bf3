"""The killable worker: user-influenced verifier code cannot hang the gate (issue #26)."""

from __future__ import annotations

import os
import re
import time

import pyarrow as pa
import pytest

from tailguard.errors import InputError
from tailguard.gate import FunctionVerifier, Gate, Reason
from tailguard.gate.worker import Worker


def backtrack(text: str) -> bool:
    """Catastrophic backtracking: minutes inside the C regex engine, deaf to signals."""
    return re.match(r"(a+)+$", text) is None


def test_c_code_that_ignores_signals_is_killed_and_the_next_items_run():
    worker = Worker(backtrack)
    items = ["aaa!", "a" * 40 + "!", "b"]
    start = time.monotonic()
    out = worker.map(items, timeout=1.0)
    assert [o.kind for o in out] == ["ok", "timeout", "ok"]
    assert [o.value for o in out[::2]] == [True, True]
    assert time.monotonic() - start < 15
    assert worker.restarts == 1
    worker.close()


def test_an_exception_or_a_dying_worker_is_an_outcome_not_a_crash():
    def explode(x):
        if x == "exit":
            os._exit(3)
        if x == "unpicklable":
            return lambda: None
        raise ValueError(f"bad {x}")

    out = Worker(explode).map(["a", "exit", "unpicklable", "b"], timeout=5)
    assert [o.kind for o in out] == ["error", "died", "error", "error"]
    assert out[0].value.startswith("ValueError: bad a (at test_worker.py:")
    assert out[1].value == "worker process exited (status 3)"
    assert "cannot be sent back" in out[2].value


def slow_on_sleep(text: str):
    if "sleep" in text:
        time.sleep(30)
    return ("x" not in text, Reason("has_x", "contains an x"))


def test_a_function_verifier_times_out_per_record_in_a_gate():
    table = pa.table({"id": ["a", "b", "c"], "content": ["fine", "sleep now", "xx"]})
    start = time.monotonic()
    gate = Gate([FunctionVerifier(slow_on_sleep, timeout=1)], progress=False)
    result = gate.run(table)
    assert result.verdicts["code"].to_pylist() == ["ok", "timeout", "has_x"]
    assert result.verdicts["detail"][1].as_py() == "no answer within 1s"
    assert time.monotonic() - start < 15


def test_a_vectorised_function_that_hangs_fails_its_batch_with_timeout():
    def hang(batch):
        time.sleep(30)

    out = FunctionVerifier(hang, vectorised=True, timeout=1).verify(
        pa.table({"content": ["a", "b"]})
    )
    assert out["code"].to_pylist() == ["timeout", "timeout"]


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan"), "2", True])
def test_a_bad_timeout_is_refused_by_name(bad):
    with pytest.raises(InputError, match="timeout must be a number of seconds > 0"):
        FunctionVerifier(slow_on_sleep, timeout=bad)


def spawns_a_sleeper(path: str) -> None:
    """Start a grandchild that would outlive the worker, note its pid, then hang."""
    import subprocess

    child = subprocess.Popen(["sleep", "300"])
    with open(path, "w") as f:
        f.write(str(child.pid))
    time.sleep(300)


def test_the_kill_takes_the_processes_the_function_started(tmp_path):
    path = str(tmp_path / "pid")
    out = Worker(spawns_a_sleeper).call(path, timeout=2.0)
    assert out.kind == "timeout"
    pid = int((tmp_path / "pid").read_text())
    for _ in range(50):  # reaped by init once killed; allow it a moment
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        with open(f"/proc/{pid}/stat") as f:
            if f.read().split(") ")[1].startswith("Z"):
                break  # killed, not yet reaped
        time.sleep(0.1)
    else:
        pytest.fail(f"process {pid} the function started still runs")
