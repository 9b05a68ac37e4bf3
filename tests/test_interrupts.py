"""Ctrl-C (and a kill) at several moments of real `tailguard` processes: exit 130 with
one line and no traceback, promptly; `reservoir freeze` all or nothing; one run at once."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest
from test_concurrent import LONG, stages

from tailguard.errors import TailguardError
from tailguard.ledger import FINGERPRINT_TABLE, holder, run_lock

CLI = [sys.executable, "-m", "tailguard.cli"]
#: Loose on purpose (the machine is shared): the measured figure is well under a second.
PROMPT = 5.0


class Proc:
    """A CLI process whose output is read as it comes, so a test can wait for it."""

    def __init__(self, *args: str, cwd: Path) -> None:
        self.p = subprocess.Popen(
            [*CLI, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, into in ((self.p.stdout, self.out), (self.p.stderr, self.err)):
            threading.Thread(target=lambda s=stream, i=into: i.extend(s), daemon=True).start()

    def wait_for_output(self, timeout: float = 120) -> None:
        end = time.monotonic() + timeout
        while not (self.out or self.err) and time.monotonic() < end:
            assert self.p.poll() is None, "ended before it could be interrupted"
            time.sleep(0.05)

    def interrupt(self) -> tuple[int, str, float]:
        """Send Ctrl-C; returns the exit code, stderr and seconds to exit."""
        assert self.p.poll() is None, "ended before it could be interrupted"
        sent = time.monotonic()
        self.p.send_signal(signal.SIGINT)
        code = self.p.wait(timeout=60)
        took = time.monotonic() - sent
        time.sleep(0.1)  # the reader threads drain the pipes
        return code, "".join(self.err), took


def assert_one_line(code: int, err: str, took: float) -> None:
    if code == -signal.SIGINT:  # it had finished and was exiting: a shell reports 130 too
        assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
        return
    assert code == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted: "), err
    assert took < PROMPT, took


@pytest.mark.parametrize("delay", [0.4, 0.9, 1.6])
def test_ctrl_c_during_start_up_imports(tmp_path, delay):
    proc = Proc("audit", cwd=tmp_path)
    time.sleep(delay)  # nothing to poll: start-up prints nothing
    if proc.p.poll() is not None:
        pytest.skip("start-up finished before the signal")
    assert_one_line(*proc.interrupt())


def test_entry_point_installs_its_handler_before_the_heavy_imports():
    code = (
        "import sys, tailguard.cli\n"
        "print(sorted(m for m in ('duckdb', 'numpy', 'pyarrow', 'typer') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("wait_more", [0.0, 2.0])
def test_ctrl_c_during_demo(tmp_path, wait_more):
    proc = Proc("demo", cwd=tmp_path)
    proc.wait_for_output()
    time.sleep(wait_more)
    assert_one_line(*proc.interrupt())


def test_ctrl_c_during_lab_run_ends_its_workers(tmp_path):
    proc = Proc("lab", "run", "--out", str(tmp_path / "lab"), cwd=tmp_path)
    time.sleep(4)  # lab run prints when it is done; by now its pools are working
    assert_one_line(*proc.interrupt())
    time.sleep(0.5)
    children = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(proc.p.pid)], capture_output=True, text=True
    )
    assert children.stdout.strip() == ""


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    """A project with the fortunes ingested, not yet frozen."""
    root = tmp_path_factory.mktemp("project")
    subprocess.run([*CLI, "init"], cwd=root, check=True, capture_output=True)
    subprocess.run(
        [*CLI, "ingest", "--builtin", "fortunes"], cwd=root, check=True, capture_output=True
    )
    return root


def frozen_state(ledger: Path) -> tuple[int, int, int]:
    """(reservoirs, members, reference fingerprints) in the ledger."""
    con = duckdb.connect(str(ledger), read_only=True)
    try:
        counts = [
            con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("reservoirs", "reservoir_members")
        ]
        has_fp = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [FINGERPRINT_TABLE]
        ).fetchone()[0]
        fps = has_fp and con.execute(f"SELECT count(*) FROM {FINGERPRINT_TABLE}").fetchone()[0]
    finally:
        con.close()
    return counts[0], counts[1], fps


@pytest.mark.parametrize(
    ("how", "delay"),
    [("int", 0.5), ("int", 2.5), ("int", 4.0), ("kill", 2.5), ("kill", 4.0)],
)
def test_freeze_is_all_or_nothing(ingested, tmp_path, how, delay):
    project = tmp_path / "p"
    shutil.copytree(ingested, project)
    proc = Proc("reservoir", "freeze", cwd=project)
    time.sleep(delay)
    if proc.p.poll() is not None:
        pytest.skip("the freeze finished before the signal")
    if how == "int":
        assert_one_line(*proc.interrupt())
    else:
        proc.p.kill()
        proc.p.wait(timeout=60)
    reservoirs, members, fps = frozen_state(project / ".tailguard" / "ledger.duckdb")
    assert (reservoirs, members, fps) == (0, 0, 0) or (reservoirs == 1 and members and fps), (
        reservoirs,
        members,
        fps,
    )
    if reservoirs == 0:
        again = subprocess.run(
            [*CLI, "reservoir", "freeze"], cwd=project, capture_output=True, text=True
        )
        assert again.returncode == 0, again.stderr
        reservoirs, members, fps = frozen_state(project / ".tailguard" / "ledger.duckdb")
        assert reservoirs == 1 and members and fps


def test_a_second_run_is_refused_while_one_holds_the_project(tmp_path):
    cfg = tmp_path / "tailguard.toml"
    cfg.write_text(LONG)
    ledger = tmp_path / "ledger.duckdb"
    first = Proc("run", str(cfg), "--ledger", str(ledger), cwd=tmp_path)
    while first.p.poll() is None and stages(ledger) < 1:
        time.sleep(0.1)
    second = subprocess.run(
        [*CLI, "run", str(cfg), "--ledger", str(ledger), "--resume"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    running = first.p.poll() is None
    first.p.kill()
    first.p.wait(timeout=60)
    if not running:
        pytest.skip("the first run ended before the second started")
    assert second.returncode == 2, second.stderr
    assert f"another run holds this project (pid {first.p.pid}, since" in second.stderr
    assert "Traceback" not in second.stderr
    assert holder(ledger) is None  # killed: its marker is stale


def test_run_lock_refuses_a_live_holder_and_takes_over_a_dead_ones(tmp_path):
    ledger = tmp_path / "l.duckdb"
    with run_lock(ledger):
        assert holder(ledger).startswith(f"pid {os.getpid()}, since ")
        with (
            pytest.raises(TailguardError, match="another run holds this project"),
            run_lock(ledger),
        ):
            pass
    assert holder(ledger) is None and not Path(f"{ledger}.run").exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    Path(f"{ledger}.run").write_text(f"{dead.pid} 2026-01-01T00:00:00+00:00\n")
    assert holder(ledger) is None
    with run_lock(ledger):
        assert holder(ledger).startswith(f"pid {os.getpid()}")


_SLEEPER = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(600)"
#: A child deaf to Ctrl-C that starts a grandchild in a session of its own, deaf too: the
#: shape of a local Ray cluster (a raylet, then agents that outlive it).
_CHILD = (
    "import signal, subprocess, sys, time\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
    f"g = subprocess.Popen([sys.executable, '-c', {_SLEEPER!r}], start_new_session=True, **quiet)\n"
    "print(g.pid, flush=True)\n"
    "time.sleep(600)\n"
)
_TREE = (
    "import subprocess, sys, time\n"
    "from tailguard.cli import interrupt\n"
    "interrupt.install()\n"
    "interrupt.set_hint('test')\n"
    "quiet = dict(stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)\n"
    f"child = subprocess.Popen([sys.executable, '-c', {_CHILD!r}], stdout=subprocess.PIPE,"
    " text=True, **quiet)\n"
    "print(child.pid, child.stdout.readline().strip(), flush=True)\n"
    "time.sleep(600)\n"
)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_ctrl_c_ends_the_process_tree_it_started(tmp_path):
    """Ctrl-C ends what the command started, its children's children too (a local Ray
    cluster's agents outlive the raylet that started them): exit 130, one line."""
    p = subprocess.Popen(
        [sys.executable, "-c", _TREE], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    pids: list[int] = []
    try:
        pids = [int(x) for x in p.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(x) for x in pids)
        sent = time.monotonic()
        p.send_signal(signal.SIGINT)
        code = p.wait(timeout=60)
        err = p.stderr.read()
        assert_one_line(code, err, time.monotonic() - sent)
        deadline = time.monotonic() + 5
        while any(_alive(x) for x in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(x) for x in pids), [x for x in pids if _alive(x)]
    finally:
        for x in pids:
            if _alive(x):
                os.kill(x, signal.SIGKILL)
        p.kill()


_RAY = """
import time
from tailguard.cli import interrupt
interrupt.install()
interrupt.set_hint("test")
from tailguard.engines import RayEngine
RayEngine(num_cpus=1).ray()
print("ready", flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_ctrl_c_stops_the_local_ray_cluster_it_started():
    pytest.importorskip("ray")
    p = subprocess.Popen(
        [sys.executable, "-c", _RAY], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    tree: list[int] = []
    try:
        ready = p.stdout.readline().strip()
        if ready != "ready":
            p.wait(timeout=60)
            pytest.fail(f"Ray did not start: {p.stderr.read()[-2000:]}")
        tree = _tree(p.pid)
        assert tree  # raylet, GCS, agents, workers
        sent = time.monotonic()
        p.send_signal(signal.SIGINT)
        code = p.wait(timeout=60)
        took = time.monotonic() - sent
        err = p.stderr.read().strip().splitlines()
        assert code == 130 and err[-1].startswith("interrupted: ") and took < PROMPT, err
        assert not any("Traceback" in line for line in err)
        deadline = time.monotonic() + 5
        while any(_alive(x) for x in tree) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [x for x in tree if _alive(x)]
    finally:
        for x in tree:
            if _alive(x):
                os.kill(x, signal.SIGKILL)
        p.kill()


def _tree(root: int) -> list[int]:
    """Every process below ``root`` (read from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        for c in parents.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out
