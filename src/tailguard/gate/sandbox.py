"""Run untrusted Python in a sandbox: its own process, directory, user and network.

What the sandbox does (as root, which is how CI runs; each step is reported):

* a fresh directory, owned by a fresh unprivileged uid used by nothing else, so
  ``RLIMIT_NPROC`` counts only the sandbox's own processes (root would ignore it)
  and every process it leaves behind can be killed at once with ``kill(-1)``
  from that uid;
* an empty environment, ``python -I``, ``no_new_privs`` (setuid binaries do not
  escalate) and its own session, so it cannot signal or read the caller;
* a private mount namespace in which the world-writable directories (``/tmp``,
  ``/var/tmp``, ``/dev/shm``, ``/run/lock``) are empty and read-only, so it can
  write only inside its directory; a directory hiding the interpreter (such as a
  ``/root`` holding pyenv) is replaced by one exposing only the interpreter;
* a new network namespace with no interface up: no network at all;
* rlimits on CPU time, address space, file size, open files and processes,
  plus a wall-clock timeout enforced from outside.

Without root, only the rlimits, the directory, the environment and the timeout
apply (plus a network namespace if unprivileged user namespaces are allowed);
:attr:`SandboxResult.isolation` says what was in force.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWUSER = 0x00020000, 0x40000000, 0x10000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_BIND, MS_REC, MS_PRIVATE = 4096, 0x4000, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/dev/mqueue")
UID_BASE, UID_SPAN = 1_900_000_000, 200_000_000  # uids no account uses

_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Limits:
    """What a sandboxed run may use. Sizes in MiB, times in seconds."""

    wall_seconds: float = 10.0
    cpu_seconds: int = 10
    memory_mb: int = 1024
    file_size_mb: int = 16
    open_files: int = 64
    processes: int = 32

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SandboxResult:
    """How a sandboxed run ended.

    ``status``: ``"exited"`` (it ended by itself; see ``returncode`` and
    ``report``), ``"timeout"`` (wall clock), ``"killed"`` (a signal, e.g. the CPU
    limit's SIGKILL/SIGXCPU or a crash). ``report`` is what the harness wrote, if
    anything. ``isolation`` lists what protection was in force.
    """

    status: str
    returncode: int | None
    signal: str | None
    seconds: float
    stdout: str
    stderr: str
    report: dict[str, Any] | None
    isolation: dict[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class _Plan:
    """What this machine lets the sandbox do, decided once per process."""

    root: bool
    mount_ns: bool
    net_ns: bool
    user_ns: bool
    writable_dirs: tuple[str, ...]
    hidden: tuple[tuple[str, tuple[str, ...]], ...]  # (ancestor to cover, paths to re-expose)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _interpreter_paths(python: str) -> list[str]:
    real = os.path.realpath(python)
    paths = {
        os.path.dirname(os.path.dirname(real)),
        os.path.realpath(sys.base_prefix),
        os.path.realpath(sys.prefix),
        os.path.dirname(os.path.abspath(python)),
    }
    return sorted(paths)


def _hidden_ancestors(paths: list[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Directories that others cannot traverse but that lie above the interpreter."""
    cover: dict[str, set[str]] = {}
    for path in paths:
        parts = Path(path).parts
        for i in range(1, len(parts)):
            anc = str(Path(*parts[:i]))
            if anc == "/":
                continue
            if not os.stat(anc).st_mode & stat.S_IXOTH:
                cover.setdefault(anc, set()).add(str(Path(*parts[: i + 1])))
                break
    return tuple((a, tuple(sorted(p))) for a, p in sorted(cover.items()))


def base_interpreter() -> str:
    """The real interpreter behind this one (a virtualenv's python is a link to it).

    Generated code needs the standard library only, and a virtualenv may live in a
    directory the sandbox hides (``/tmp`` is emptied inside it).
    """
    return os.path.realpath(sys.executable)


@lru_cache(maxsize=4)
def _plan(python: str) -> _Plan:
    root = os.geteuid() == 0
    writable = tuple(
        d for d in WORLD_WRITABLE if os.path.isdir(d) and os.stat(d).st_mode & stat.S_IWOTH
    )
    hidden = _hidden_ancestors(_interpreter_paths(python)) if root else ()
    plan = _Plan(root, root, root, not root, writable, hidden)
    # Try it once: a kernel or container may refuse namespaces even to root.
    for candidate in (
        plan,
        _Plan(root, False, True, not root, writable, ()),
        _Plan(root, False, False, False, writable, ()),
    ):
        try:
            with tempfile.TemporaryDirectory() as d:
                res = _spawn(candidate, python, ["-c", "pass"], Path(d), Limits(wall_seconds=20))
            if res.returncode == 0:
                return candidate
        except (OSError, subprocess.SubprocessError):
            continue
    return _Plan(root, False, False, False, writable, ())


def _preexec(plan: _Plan, limits: Limits, uid: int | None) -> None:
    """In the child between fork and exec: namespaces, mounts, limits, then drop root."""
    flags = (CLONE_NEWNS if plan.mount_ns else 0) | (CLONE_NEWNET if plan.net_ns else 0)
    if plan.user_ns:
        flags |= CLONE_NEWUSER | CLONE_NEWNET
    if flags:
        _check(_libc.unshare(flags), "unshare")
    if plan.mount_ns:
        _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount private")
        for anc, keep in plan.hidden:
            fds = [os.open(p, os.O_RDONLY | os.O_DIRECTORY) for p in keep]
            _check(
                _libc.mount(
                    b"tmpfs", anc.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"size=64k,mode=755"
                ),
                f"cover {anc}",
            )
            for p, fd in zip(keep, fds, strict=True):
                os.makedirs(p, exist_ok=True)
                _check(
                    _libc.mount(
                        f"/proc/self/fd/{fd}".encode(), p.encode(), None, MS_BIND | MS_REC, None
                    ),
                    f"expose {p}",
                )
                os.close(fd)
        for d in plan.writable_dirs:
            _check(
                _libc.mount(
                    b"tmpfs",
                    d.encode(),
                    b"tmpfs",
                    MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                    b"size=4k,mode=755",
                ),
                f"hide {d}",
            )
    mib = 1 << 20
    for res, value in (
        (resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1)),
        (resource.RLIMIT_AS, (limits.memory_mb * mib,) * 2),
        (resource.RLIMIT_FSIZE, (limits.file_size_mb * mib,) * 2),
        (resource.RLIMIT_NOFILE, (limits.open_files,) * 2),
        (resource.RLIMIT_NPROC, (limits.processes,) * 2),
        (resource.RLIMIT_CORE, (0, 0)),
    ):
        resource.setrlimit(res, value)
    os.umask(0o077)
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _processes_of(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as f:
                    for line in f:
                        if line.startswith("State:") and line.split()[1] in ("Z", "X"):
                            break  # a zombie holds nothing; its parent reaps it
                        if line.startswith("Uid:"):
                            if int(line.split()[1]) == uid:
                                pids.append(int(entry))
                            break
            except OSError:
                continue
    return pids


def _kill_uid(uid: int) -> None:
    """Kill every process of ``uid``: from that uid, ``kill(-1)`` reaches exactly them."""
    for _ in range(50):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child only makes syscalls and exits
            try:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        if not _processes_of(uid):
            return
        time.sleep(0.01)


def _spawn(
    plan: _Plan,
    python: str,
    args: list[str],
    workdir: Path,
    limits: Limits,
    uid: int | None = None,
    pass_fds: tuple[int, ...] = (),
    out: Any = subprocess.DEVNULL,
    err: Any = subprocess.DEVNULL,
) -> subprocess.Popen:
    proc = subprocess.Popen(
        [python, "-I", *args],
        cwd=workdir,
        env={},
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=err,
        pass_fds=pass_fds,
        start_new_session=True,
        close_fds=True,
        preexec_fn=lambda: _preexec(plan, limits, uid),
    )
    try:
        proc.wait(timeout=limits.wall_seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return proc


def run_python(
    files: dict[str, str],
    args: list[str],
    *,
    limits: Limits | None = None,
    python: str | None = None,
) -> SandboxResult:
    """Write ``files`` into a fresh directory and run ``python -I *args`` there, sandboxed.

    The harness may write a JSON report to the file descriptor whose number is
    substituted for ``{report_fd}`` in ``args``.
    """
    limits = limits or Limits()
    python = python or base_interpreter()
    plan = _plan(python)
    base = Path(tempfile.mkdtemp(prefix="tailguard-sandbox-"))
    uid = UID_BASE + secrets.randbelow(UID_SPAN) if plan.root else None
    read_fd, write_fd = os.pipe()
    try:
        os.chmod(base, 0o711)
        work = base / "work"
        work.mkdir(mode=0o700)
        for name, text in files.items():
            (work / name).write_text(text, encoding="utf-8")
        if uid is not None:
            for p in [work, *work.iterdir()]:
                os.chown(p, uid, uid)
        out_path, err_path = base / "stdout", base / "stderr"
        args = [a.replace("{report_fd}", str(write_fd)) for a in args]
        t0 = time.monotonic()
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(
                [python, "-I", *args],
                cwd=work,
                env={},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                pass_fds=(write_fd,),
                start_new_session=True,
                close_fds=True,
                preexec_fn=lambda: _preexec(plan, limits, uid),
            )
        os.close(write_fd)
        write_fd = -1
        timed_out = False
        try:
            proc.wait(timeout=limits.wall_seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
        # Whatever happened, nothing of the run may survive it.
        if uid is not None:
            _kill_uid(uid)
        else:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        seconds = time.monotonic() - t0
        os.set_blocking(read_fd, False)
        try:
            raw = os.read(read_fd, 1 << 16)
        except BlockingIOError:
            raw = b""
        report = None
        if raw:
            try:
                report = json.loads(raw.decode("utf-8", "replace").strip().splitlines()[-1])
            except (json.JSONDecodeError, IndexError):
                report = None
        rc = proc.returncode
        sig = signal.Signals(-rc).name if rc is not None and rc < 0 else None
        status = "timeout" if timed_out else ("killed" if sig else "exited")
        return SandboxResult(
            status=status,
            returncode=rc,
            signal=sig,
            seconds=seconds,
            stdout=_tail(out_path),
            stderr=_tail(err_path),
            report=report,
            isolation={
                "separate_user": uid is not None,
                "network_namespace": plan.net_ns or plan.user_ns,
                "private_tmp": plan.mount_ns,
            },
        )
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
        shutil.rmtree(base, ignore_errors=True)


def _tail(path: Path, limit: int = 4000) -> str:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - limit))
        return f.read().decode("utf-8", "replace")


#: The harness: run the code, then the tests (top-level asserts, then each test_*
#: function in order), and report the first failure. It runs before any untrusted
#: line, so it can set SIGXFSZ to raise instead of kill.
HARNESS = r"""
import json, os, signal, sys, traceback
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
_out = os.fdopen(int(sys.argv[1]), "w")
def _report(**kw):
    _out.write(json.dumps(kw) + "\n"); _out.flush()
def _where(exc, name):
    tb = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == name]
    return tb[-1].lineno if tb else None
def _fail(stage, exc, name, test=None):
    kind = type(exc).__name__
    if isinstance(exc, MemoryError):
        outcome = "memory"
    elif isinstance(exc, OSError) and exc.errno == 27:
        outcome = "file_size"
    elif isinstance(exc, AssertionError):
        outcome = "failed"
    else:
        outcome = "exception"
    _report(outcome=outcome, stage=stage, test=test, error=f"{kind}: {exc}"[:500],
            line=_where(exc, name))
    _out.close()
    os._exit(0)
_ns = {"__name__": "__main__"}
with open("solution.py", encoding="utf-8") as f:
    _code = f.read()
with open("tests.py", encoding="utf-8") as f:
    _tests = f.read()
for _stage, _src, _name in (("code", _code, "solution.py"), ("tests", _tests, "tests.py")):
    try:
        exec(compile(_src, _name, "exec"), _ns)
    except SystemExit as e:
        _report(outcome="exit", stage=_stage, error=f"SystemExit: {e.code}")
        os._exit(0)
    except BaseException as e:
        _fail(_stage, e, _name)
_names = [k for k, v in list(_ns.items()) if k.startswith("test") and callable(v)]
for _t in _names:
    try:
        _ns[_t]()
    except SystemExit as e:
        _report(outcome="exit", stage="tests", test=_t, error=f"SystemExit: {e.code}")
        os._exit(0)
    except BaseException as e:
        _fail("tests", e, "tests.py", _t)
_report(outcome="passed", tests=len(_names))
"""


def run_tests(code: str, tests: str, *, limits: Limits | None = None) -> SandboxResult:
    """Run ``code`` then ``tests`` (asserts, ``test_*`` functions) in the sandbox."""
    return run_python(
        {"solution.py": code, "tests.py": tests}, ["-c", HARNESS, "{report_fd}"], limits=limits
    )


def isolation() -> dict[str, bool]:
    """What the sandbox can enforce on this machine (for logs and docs)."""
    plan = _plan(base_interpreter())
    return {
        "separate_user": plan.root,
        "network_namespace": plan.net_ns or plan.user_ns,
        "private_tmp": plan.mount_ns,
    }
