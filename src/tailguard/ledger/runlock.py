"""The run lock beside a ledger: which live process holds the project, refusing a second
run (or a rollback, freeze, relabel or release) while it does.

A file ``<ledger>.run`` holding ``pid started-at``; stale, and taken over, once that pid
is dead. Reentrant within one thread when asked (the CLI's run and the loop it starts).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from tailguard.errors import TailguardError


class RunInProgress(TailguardError):
    """Another live process holds the project's run lock."""


#: The run lock beside a ledger: one line ``pid started-at (ISO)`` written by the run
#: that holds the project. Stale (and taken over) once that pid is dead.
RUN_LOCK_SUFFIX = ".run"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _lock_owner(ledger: str | Path) -> tuple[int, str] | None:
    """``(pid, since)`` written in the run lock, if one is there and its pid is alive."""
    if str(ledger) == ":memory:":
        return None
    try:
        text = Path(str(ledger) + RUN_LOCK_SUFFIX).read_text(encoding="utf-8")
        pid_s, since = text.split(maxsplit=1)
        pid = int(pid_s)
    except (OSError, ValueError):
        return None  # no lock, or a torn one (its writer died while writing it)
    if pid != os.getpid() and not _pid_alive(pid):
        return None
    return pid, since.strip()


def run_holder(ledger: str | Path) -> tuple[int, str] | None:
    """``(pid, since)`` of the live run holding this ledger's project, or ``None`` (also
    when this process holds it: the run itself may write)."""
    held = _lock_owner(ledger)
    return None if held is None or held[0] == os.getpid() else held


def holder(ledger: str | Path) -> str | None:
    """Who holds the project for a run, in words (``"pid N, since T"``), or ``None``."""
    held = _lock_owner(ledger)
    return None if held is None else f"pid {held[0]}, since {held[1]}"


def refuse_during_run(ledger: str | Path, doing: str) -> None:
    """Refuse ``doing`` (a rollback, freeze, relabel, release) while a run holds the project."""
    held = run_holder(ledger)
    if held is not None:
        raise RunInProgress(
            f"a run is in progress (pid {held[0]}, since {held[1]}): {doing} refused; "
            "wait for it to finish or stop it first"
        )


#: Run locks this process holds: lock path -> (the holding thread, how deeply taken).
_HELD: dict[str, tuple[int, int]] = {}


@contextlib.contextmanager
def run_lock(ledger: str | Path, *, reentrant: bool = False) -> Iterator[None]:
    """Hold the project for one run: a second run, or a writer that must not change the
    project under a run (see :func:`refuse_during_run`), is refused while it is held.

    The lock file is created whole (written aside, then hard-linked into place, which
    fails if it exists), so two runs starting together cannot both take it. With
    ``reentrant``, the thread holding it may take it again (``tailguard run`` holds it
    around the loop, and :meth:`Loop.run <tailguard.loop.Loop.run>` takes it too); any
    other taker is refused.
    """
    if str(ledger) == ":memory:":
        yield
        return
    lock = Path(str(ledger) + RUN_LOCK_SUFFIX)
    key = os.path.abspath(lock)
    mine = _HELD.get(key) if reentrant else None
    owner = _lock_owner(ledger) if mine is not None else None
    if mine is not None and mine[0] == threading.get_ident() and owner and owner[0] == os.getpid():
        _HELD[key] = (mine[0], mine[1] + 1)
        try:
            yield
        finally:
            _HELD[key] = mine
        return
    since = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    tmp = lock.with_name(f"{lock.name}.{os.getpid()}")
    lock.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(f"{os.getpid()} {since}\n", encoding="utf-8")
    try:
        for _ in range(3):
            try:
                os.link(tmp, lock)
                break
            except FileExistsError:
                held = _lock_owner(ledger)  # (this process's own run holds it, too)
                if held is not None:
                    raise RunInProgress(
                        f"another run holds this project (pid {held[0]}, since {held[1]}): "
                        "wait for it to finish or stop it first"
                    ) from None
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()  # stale: its run is dead
        else:
            raise RunInProgress(f"could not take the run lock {lock}: try again")
    finally:
        tmp.unlink(missing_ok=True)
    _HELD[key] = (threading.get_ident(), 1)
    try:
        yield
    finally:
        _HELD.pop(key, None)
        with contextlib.suppress(OSError):
            if lock.read_text(encoding="utf-8").split()[0] == str(os.getpid()):
                lock.unlink()
