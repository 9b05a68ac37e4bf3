"""A killable worker process for verifier code that may never return.

A thread cannot be stopped and a signal handler never runs while C code holds
the interpreter (``10**10**9``, sympy evaluating ``9^{9^{9}}``), so user-influenced
work -- math answers, judges, user functions -- runs in a forked child process.
The child is reused across items, so the normal path costs one pipe round trip
per batch; an item that overruns its wall-clock limit gets a ``timeout``
outcome, the child is killed (SIGKILL) and a fresh one is forked for the items
that follow. Forking needs no pickling, so lambdas and closures work.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import traceback
import weakref
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

#: How long a fresh child may take to say it is ready (a loaded machine forks slowly).
START_SECONDS = 60.0


def check_seconds(value: Any, field: str = "timeout") -> float:
    """A wall-clock limit as a positive finite number of seconds, or a named error."""
    from tailguard.errors import InputError

    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not 0 < value < float("inf"):
        raise InputError(f"{field} must be a number of seconds > 0, got {value!r}", field=field)
    return float(value)


def error_detail(exc: BaseException) -> str:
    """An exception as an ``error`` verdict's detail: its type, message and where it was raised."""
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {frame.filename.rsplit('/', 1)[-1]}:{frame.lineno})" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"


class Outcome(NamedTuple):
    """One item's result: ``kind`` is ``ok`` (``value`` is fn's answer), ``error``
    (``value`` names the exception and where), ``timeout`` or ``died`` (``value`` says why)."""

    kind: str
    value: Any


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this child when the gate dies (best effort elsewhere)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _serve(fn: Callable[[Any], Any], conn: Any) -> None:
    """The child's loop: answer each list of items, one message per item, in order."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the gate's to handle
    os.setpgid(0, 0)  # its own process group: the kill takes whatever it started too
    _die_with_parent()
    conn.send(("ready", None))
    while True:
        try:
            items = conn.recv()
        except (EOFError, OSError):
            return
        for item in items:
            try:
                reply: tuple[str, Any] = ("ok", fn(item))
            except Exception as exc:  # noqa: BLE001 - the item's failure is its outcome
                reply = ("error", error_detail(exc))
            try:
                conn.send(reply)
            except Exception as exc:  # noqa: BLE001 - an answer that does not pickle
                conn.send(("error", f"the answer cannot be sent back: {error_detail(exc)}"))


class Worker:
    """Run ``fn(item)`` in a child process, each item within a wall-clock limit.

    ``prepare`` runs once in this process before the first child is forked (e.g. to
    import a heavy library so that every child, restarted or not, starts warm).
    Thread-safe: concurrent :meth:`map` calls take turns. :meth:`close` (or garbage
    collection, or the interpreter's exit) kills the child.
    """

    def __init__(
        self, fn: Callable[[Any], Any], *, prepare: Callable[[], Any] | None = None
    ) -> None:
        self.fn = fn
        self.prepare = prepare
        self.restarts = 0  # children killed for a timeout or lost (for tests and reports)
        self._lock = threading.Lock()
        self._proc: Any = None
        self._conn: Any = None
        self._finalizer: Any = None
        self._owner = os.getpid()
        self._forker: threading.Thread | None = None

    def _start(self) -> None:
        if self.prepare is not None:
            self.prepare()
            self.prepare = None
        ctx = multiprocessing.get_context("fork")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_serve, args=(self.fn, child), daemon=True)
        proc.start()
        child.close()
        if not parent.poll(START_SECONDS):
            _kill(proc, parent, os.getpid())
            raise RuntimeError(f"the verifier's worker process did not start in {START_SECONDS}s")
        parent.recv()
        self._proc, self._conn, self._owner = proc, parent, os.getpid()
        self._forker = threading.current_thread()  # the parent-death signal follows this thread
        self._finalizer = weakref.finalize(self, _kill, proc, parent, self._owner)

    def _stop(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self._proc = self._conn = self._finalizer = None

    def close(self) -> None:
        """Kill the child (a later call forks a new one)."""
        with self._lock:
            self._stop()

    def map(self, items: Sequence[Any], timeout: float) -> list[Outcome]:
        """``fn`` of each item, in order; an item gets ``timeout`` seconds of wall clock."""
        if self._owner != os.getpid():  # inherited by a fork: that child is not ours
            self._lock, self._proc, self._conn, self._finalizer = threading.Lock(), None, None, None
            self._forker = None
            self._owner = os.getpid()
        with self._lock:
            out: list[Outcome] = []
            while len(out) < len(items):
                if self._proc is None or not self._proc.is_alive() or not self._forker_alive():
                    self._stop()
                    self._start()
                try:
                    self._conn.send(list(items[len(out) :]))
                except (BrokenPipeError, OSError) as exc:
                    out.append(Outcome("died", f"worker process lost: {exc}"))
                    self._lost()
                    continue
                while len(out) < len(items):
                    if not self._conn.poll(timeout):
                        out.append(Outcome("timeout", f"no answer within {timeout:g}s"))
                        self._lost()
                        break
                    try:
                        kind, value = self._conn.recv()
                    except (EOFError, OSError):
                        self._proc.join(1)  # EOF: it is exiting; reap it for its status
                        code = self._proc.exitcode
                        self._lost()
                        out.append(Outcome("died", _death(code)))
                        break
                    out.append(Outcome(kind, value))
            return out

    def _forker_alive(self) -> bool:
        """Whether the thread that forked the child still runs: Linux kills the child
        (its parent-death signal) when that thread ends, so a new one is forked first."""
        return self._forker is not None and self._forker.is_alive()

    def call(self, item: Any, timeout: float) -> Outcome:
        """``fn(item)`` within ``timeout`` seconds."""
        return self.map([item], timeout)[0]

    def _lost(self) -> None:
        self.restarts += 1
        self._stop()

    def __getstate__(self) -> dict[str, Any]:
        return {"fn": self.fn, "prepare": self.prepare}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["fn"], prepare=state["prepare"])  # type: ignore[misc]


def _death(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"worker process killed by {signal.Signals(-code).name}"
    return f"worker process exited (status {code})"


def _kill(proc: Any, conn: Any, owner: int) -> None:
    """SIGKILL the child and its process group (C code ignores gentler signals) and reap
    it: from its parent only."""
    if os.getpid() != owner:
        return
    with contextlib.suppress(Exception):
        conn.close()
    with contextlib.suppress(ProcessLookupError, OSError, AttributeError):
        if proc.pid is not None and proc.exitcode is None:
            os.kill(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, OSError, AttributeError):
        if proc.pid is not None:
            os.killpg(proc.pid, signal.SIGKILL)  # what the child started, if any is left
    with contextlib.suppress(Exception):
        proc.join(5)
