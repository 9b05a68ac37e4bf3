"""Ctrl-C ends any command within a second: one line, exit 130, no traceback.

Installed by the entry point before the heavy modules are imported, so an interrupt
during start-up is handled too. Standard library only, for the same reason.

Two paths end the process. The signal handler raises :class:`SystemExit` in the
main thread, so ``with`` blocks unwind and an open transaction rolls back. A
watchdog thread, woken by the signal itself (``signal.set_wakeup_fd``, which fires
even while the main thread is inside DuckDB or waiting on a worker pool), ends the
process with ``os._exit`` if that has not happened within :data:`GRACE` seconds.
Both first end every process the command started and what those started (worker
pools, a local Ray cluster with its agents). Either way every write is one
transaction, so what was committed before the signal is kept and nothing half-done is.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Any

#: The exit code of a command ended by Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130

#: Seconds the main thread has to unwind before the watchdog ends the process.
GRACE = 0.2

#: What was kept and how to continue; a command that knows better sets its own.
DEFAULT_HINT = "every finished write is kept, nothing half-done is; run the command again"

_state: dict[str, Any] = {"hint": DEFAULT_HINT, "seen": False, "said": False}
_said_lock = threading.Lock()


def set_hint(hint: str) -> None:
    """The rest of the line printed on Ctrl-C: what was kept and how to continue."""
    _state["hint"] = hint


def interrupted() -> bool:
    """Whether Ctrl-C was pressed (DuckDB reports it as its own error, not as one)."""
    return bool(_state["seen"])


def _say() -> None:
    with _said_lock:
        if _state["said"]:
            return
        _state["said"] = True
    with contextlib.suppress(OSError):
        os.write(2, f"interrupted: {_state['hint']}\n".encode())


def exit_interrupted() -> None:
    """Print the one line (once) and leave with :data:`INTERRUPTED`, unwinding."""
    _say()
    raise SystemExit(INTERRUPTED)


def _on_sigint(signum: int, frame: object) -> None:
    if _state["seen"]:  # a second Ctrl-C: do not wait for anything
        _hard_exit()
    _state["seen"] = True
    _end_children()  # now, while the tree is whole: unwinding may orphan a grandchild
    exit_interrupted()


def _end_children() -> None:
    """End every process this process started and what they started in turn: worker
    pools (which would be joined otherwise), and a local Ray cluster (``[engine] kind =
    "ray"``), whose agents outlive its raylet and would be left running."""
    tree = _descendants()
    mp = sys.modules.get("multiprocessing")
    try:
        children = mp.active_children() if mp is not None else []
    except Exception:  # noqa: BLE001 - best effort while the process is ending
        children = []
    for child in children:
        with contextlib.suppress(Exception):
            child.kill()
    for pid in tree:  # the whole tree was read first: a killed parent orphans its children
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _descendants() -> list[int]:
    """Every live process below this one (Linux ``/proc``; none elsewhere)."""
    parents: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()  # after "pid (name) "
        if len(fields) > 1:
            parents.setdefault(int(fields[1]), []).append(int(entry))
    out: list[int] = []
    todo = [os.getpid()]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _hard_exit() -> None:
    _say()
    _end_children()
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    os._exit(INTERRUPTED)


def _watch(fd: int) -> None:
    while True:
        try:
            data = os.read(fd, 64)
        except OSError:
            return
        if not data:
            return
        if signal.SIGINT in data:
            _state["seen"] = True
            threading.Event().wait(GRACE)
            _hard_exit()


def install() -> None:
    """Handle Ctrl-C from now on (call from the main thread, before heavy imports)."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGINT, _on_sigint)
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    try:
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except ValueError:
        return
    threading.Thread(target=_watch, args=(read_fd,), name="tailguard-ctrl-c", daemon=True).start()
