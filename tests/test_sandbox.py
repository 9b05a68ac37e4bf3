"""Security tests: hostile generated code is contained, reported, and harms nothing.

CI runs these as root on a fresh machine, where the sandbox uses a fresh uid,
private /tmp, and a new network namespace; the assertions that need those
protections say so and are skipped elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid

import pyarrow as pa
import pytest

from tailguard.gate import CodeTests, Gate, Limits, run_tests
from tailguard.gate.sandbox import _processes_of, isolation
from tailguard.ledger import Ledger
from tailguard.records import make_records

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="full isolation needs root (as in CI)")
FAST = Limits(wall_seconds=3, cpu_seconds=2, memory_mb=512, processes=16)


def verdict(code: str, tests: str = "", **limits) -> dict:
    v = CodeTests(**{**FAST.to_dict(), **limits})
    content = json.dumps({"code": code, "tests": tests})
    return v.verify(pa.table({"id": ["x"], "content": [content]})).to_pylist()[0]


def test_correct_code_passes_and_a_failing_test_is_named():
    code = "def add(a, b):\n    return a + b\n"
    ok = verdict(code, "assert add(1, 2) == 3\ndef test_neg():\n    assert add(-1, 1) == 0\n")
    assert ok["passed"] and "passed 1 test function" in ok["detail"]
    bad = verdict(
        code,
        "def test_one():\n    assert add(1, 1) == 2\n"
        "def test_two():\n    assert add(2, 2) == 5, 'arithmetic'\n",
    )
    assert not bad["passed"] and "failing test in test_two" in bad["detail"]
    assert "arithmetic" in bad["detail"] and bad["code"] == "tests_failed" and ok["code"] == "ok"


def test_an_exception_in_the_code_is_reported_with_its_line():
    v = verdict("x = 1\ny = x / 0\n")
    assert not v["passed"] and "ZeroDivisionError" in v["detail"] and "solution.py:2" in v["detail"]
    assert v["code"] == "exception"


def test_malformed_content_is_a_failed_verdict():
    v = CodeTests().verify(pa.table({"content": ['{"code": "x=1"}', "not json"]})).to_pylist()
    assert "lacks key(s) ['tests']" in v[0]["detail"] and "not JSON" in v[1]["detail"]
    assert [x["code"] for x in v] == ["bad_content", "bad_content"]


def test_infinite_loop_times_out():
    t0 = time.monotonic()
    v = verdict("while True:\n    pass\n", wall_seconds=1.5, cpu_seconds=5)
    assert not v["passed"] and v["code"] == "timeout"
    assert v["detail"].startswith("still running after 1.5s")
    assert time.monotonic() - t0 < 5


def test_cpu_limit_stops_a_busy_loop_before_the_wall_clock():
    v = verdict("while True:\n    pass\n", wall_seconds=10, cpu_seconds=1)
    assert not v["passed"] and v["code"] == "cpu_limit" and "CPU time" in v["detail"]


def test_allocating_10_gb_hits_the_memory_limit():
    v = verdict("block = bytearray(10 * 1024 ** 3)\n")
    assert not v["passed"] and v["code"] == "memory_limit"
    assert v["detail"].startswith("memory (")


def test_writing_a_huge_file_hits_the_file_size_limit():
    v = verdict("with open('big', 'wb') as f:\n    f.write(b'x' * (8 << 20))\n", file_size_mb=1)
    assert not v["passed"] and v["code"] == "file_size_limit" and "file size" in v["detail"]


def test_too_many_open_files_is_contained():
    v = verdict("fs = [open('f%d' % i, 'w') for i in range(500)]\n", open_files=32)
    assert not v["passed"] and "Too many open files" in v["detail"]


@needs_root
def test_fork_bomb_is_contained_and_leaves_nothing_behind():
    before = len(os.listdir("/proc"))
    code = (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )
    r = run_tests(code, "", limits=Limits(wall_seconds=2, cpu_seconds=2, processes=8))
    assert r.status == "timeout"
    uid_procs = [p for p in os.listdir("/proc") if p.isdigit()]
    assert len(uid_procs) < before + 50  # the host's process table is not flooded
    # a child that escapes into its own session is killed too
    escape = run_tests(
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n",
        "",
        limits=FAST,
    )
    assert escape.report == {"outcome": "passed", "tests": 0}
    assert not [p for p in _processes_of_sandbox_uids()]


def _processes_of_sandbox_uids() -> list[int]:
    from tailguard.gate.sandbox import UID_BASE, UID_SPAN

    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                status = f.read()
        except OSError:
            continue
        uid = int(status.split("Uid:")[1].split()[0])
        zombie = "State:\tZ" in status
        if UID_BASE <= uid < UID_BASE + UID_SPAN and not zombie and _processes_of(uid):
            out.append(int(entry))
    return out


@needs_root
def test_writes_outside_its_directory_do_not_reach_the_host(tmp_path):
    os.chmod(tmp_path, 0o777)  # even a world-writable target must stay untouched
    name = f"tailguard-escape-{uuid.uuid4().hex}"
    targets = [
        f"/tmp/{name}",
        f"{tmp_path}/{name}",
        f"/var/tmp/{name}",
        f"../../{name}",
        f"/dev/shm/{name}",
        f"/work/{name}",
    ]
    code = "import os\nerrors = []\n"
    for t in targets:
        code += (
            f"try:\n    open({t!r}, 'w').write('x')\nexcept OSError as e:\n    errors.append(e)\n"
        )
    code += f"assert len(errors) == {len(targets)}, errors\n"
    v = verdict(code)
    assert v["passed"], v["detail"]
    for t in targets:
        assert not os.path.exists(t.replace("../../", "/tmp/"))
    assert not (tmp_path / name).exists()


@needs_root
def test_parent_environment_secrets_are_unreadable(monkeypatch):
    secret = f"s3cret-{uuid.uuid4().hex}"
    monkeypatch.setenv("TAILGUARD_TEST_SECRET", secret)
    code = (
        "import os\nfound = dict(os.environ)\n"
        "try:\n    found['proc'] = open(f'/proc/{os.getppid()}/environ').read()\n"
        "except OSError as e:\n    found['proc'] = str(e)\n"
        "raise RuntimeError(repr(found))\n"
    )
    v = verdict(code)
    assert not v["passed"] and secret not in v["detail"]
    assert "TAILGUARD_TEST_SECRET" not in v["detail"]  # the environment is empty
    assert "Permission denied" in v["detail"]  # and the parent's is out of reach


@needs_root
def test_network_connections_fail_and_reach_nothing():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(1)
    port = server.getsockname()[1]
    accepted = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            accepted.append(server.accept())

    thread = threading.Thread(target=serve)
    thread.start()
    code = (
        f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        "s.sendall(b'stolen')\n"
    )
    v = verdict(code)
    thread.join()
    server.close()
    assert not v["passed"] and ("Connection refused" in v["detail"] or "unreachable" in v["detail"])
    assert accepted == []
    assert isolation()["network_namespace"]


def test_killing_its_parent_does_not_kill_the_gate():
    code = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nimport time\ntime.sleep(1)\n"
    v = verdict(code)
    assert not v["passed"]  # reached here: this process is alive
    if ROOT:
        assert "PermissionError" in v["detail"] or "Operation not permitted" in v["detail"]


def test_hostile_code_through_the_gate_leaves_the_ledger_intact():
    hostile = [
        {"code": "while True: pass", "tests": ""},
        {"code": "import os\nos.kill(os.getppid(), 9)", "tests": ""},
        {"code": "x = bytearray(10 * 1024 ** 3)", "tests": ""},
        {"code": "def f():\n    return 1", "tests": "assert f() == 1"},
    ]
    with Ledger.open(":memory:") as led:
        records = make_records(
            [json.dumps(h) for h in hostile],
            origin="synthetic",
            source="gen",
            generator="m",
            generation=1,
            round=1,
        )
        led.add_records(records)
        limits = {**FAST.to_dict(), "wall_seconds": 1.5}
        result = Gate([CodeTests(**limits)], progress=False).run_round(led, 1)
        assert len(result.accepted_ids) == 1 and len(result.rejected_ids) == 3
        assert led.count(round=1) == 4  # nothing deleted
        assert led.verdicts(round=1).num_rows == 4
