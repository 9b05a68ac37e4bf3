"""Run untrusted Python in a sandbox: its own processes, files, user, memory and network.

As root (how CI runs) every run gets, and :attr:`SandboxResult.isolation` reports:

* a fresh unprivileged uid used by nothing else (``RLIMIT_NPROC`` counts only the
  run's processes; ``kill(-1)`` from that uid reaches exactly them);
* a cgroup (v2, else v1) bounding memory, process count and CPU share
  (``Limits.cpu_cores``) over the whole tree, so processes cannot add up their
  per-process limits (``tailguard.gate.cgroup``); the cgroups of a gate killed
  mid-run are removed when the next gate starts;
* new mount, PID, network, IPC and UTS namespaces: a minimal read-only root
  holding only the interpreter, its libraries and a few devices (a project's
  ledger, the host's ``/tmp`` or ``/work`` do not exist inside), a fresh ``/proc``
  showing only the run's processes, no network interface;
* the working directory ``/sandbox``: a tmpfs with ``size=`` and ``nr_inodes=``
  (``Limits.disk_mb``, ``Limits.inodes``), entered after it is mounted, so nothing
  the code writes reaches the host's disk; it lives in the run's mount namespace
  and is freed by the kernel with the run's last process, however deep the tree;
* new time namespace where the kernel has one: its clocks start near zero, so
  the host's uptime does not show;
* an empty environment, ``python -I``, ``no_new_privs`` and a seccomp filter that
  refuses namespace creation (``unshare``, ``setns``, ``clone(CLONE_NEW*)``),
  mounting, ``sysinfo`` (host RAM, uptime, load) and every socket family but
  ``AF_UNIX`` (``AF_VSOCK`` is not network-namespaced);
* rlimits on CPU time, address space, file size, open files and processes, and
  a wall-clock timeout enforced from outside.

Without root only the rlimits, a host directory (removed afterwards, at any
depth), the environment, seccomp, the timeout and, where unprivileged user
namespaces are allowed, a network namespace apply; without a cgroup the memory
limit is per process and the process count is capped at ``FALLBACK_PROCESSES``.
The launcher that sets all this up is ``sandbox_init.py``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import selectors
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from tailguard.errors import InputError
from tailguard.gate import cgroup

UID_BASE, UID_SPAN = 1_900_000_000, 200_000_000  # uids no account uses
SUPERVISOR_MB = 32  # the sandbox's PID 1, counted in its cgroup
FALLBACK_PROCESSES = 4  # without a cgroup, memory_mb holds per process: keep few
INIT = str(Path(__file__).with_name("sandbox_init.py"))
TAIL = 4000

log = logging.getLogger(__name__)


class SandboxError(RuntimeError):
    """The sandbox could not be set up (not the code's fault)."""


@dataclass(frozen=True)
class Limits:
    """What a sandboxed run may use. Sizes in MiB, times in seconds.

    ``memory_mb`` bounds each process (address space) and, with a cgroup, the whole
    tree together; ``disk_mb`` and ``inodes`` bound the working directory;
    ``cpu_cores`` is the tree's CPU share (a cgroup quota), however many processes.
    """

    wall_seconds: float = 10.0
    cpu_seconds: int = 10
    memory_mb: int = 1024
    file_size_mb: int = 16
    open_files: int = 64
    processes: int = 32
    disk_mb: int = 64
    inodes: int = 8192
    cpu_cores: float = 1.0

    def __post_init__(self) -> None:
        # A zero would not mean "nothing": tmpfs reads size=0 and nr_inodes=0 as unlimited.
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise InputError(f"must be a positive number, not {value!r}", field=name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SandboxResult:
    """How a sandboxed run ended.

    ``status``: ``"exited"`` (it ended by itself; see ``returncode`` and
    ``report``), ``"timeout"`` (wall clock), ``"killed"`` (a signal, e.g. the CPU
    limit's SIGKILL/SIGXCPU or a crash). ``report`` is the last JSON line the main
    process (``pid``, as the code sees it) wrote, if any: a line with another or no
    ``"pid"`` comes from a forked child and is ignored, so a child cannot finish
    the harness for a main process that was killed. ``isolation`` lists what
    protection was in force. ``oom_kills`` counts processes the kernel killed for
    the tree's memory; ``memory_peak_mb`` is the tree's peak (with a cgroup).
    ``cleanup_errors`` lists anything the run left that could not be removed
    (empty: nothing is left).
    """

    status: str
    returncode: int | None
    signal: str | None
    seconds: float
    stdout: str
    stderr: str
    report: dict[str, Any] | None
    pid: int | None = None
    isolation: dict[str, bool] = field(default_factory=dict)
    oom_kills: int = 0
    memory_peak_mb: float | None = None
    cleanup_errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Plan:
    """What this machine lets the sandbox do, decided once per process."""

    root: bool
    mode: str  # "full" (namespaces, minimal root) or "basic"
    user_net_ns: bool
    cgroup: int | None  # 2, 1 or None
    seccomp: bool
    expose: tuple[str, ...] = ()
    links: tuple[tuple[str, str], ...] = ()
    cpu_limit: bool = False  # the cgroup bounds the tree's CPU share

    def isolation(self) -> dict[str, bool]:
        full = self.mode == "full"
        return {
            "separate_user": self.root,
            "network_namespace": full or self.user_net_ns,
            "private_root": full,
            "private_proc": full,
            "disk_quota": full,
            "tree_memory_limit": self.cgroup is not None,
            "tree_cpu_limit": self.cgroup is not None and self.cpu_limit,
            "seccomp": self.seccomp,
        }


def base_interpreter() -> str:
    """The real interpreter behind this one (a virtualenv's python is a link to it).

    Generated code needs the standard library only, and a virtualenv may live in a
    directory the sandbox hides.
    """
    return os.path.realpath(sys.executable)


def _libraries(python: str) -> list[str]:
    """Shared objects the interpreter and its extension modules load (from ``ldd``)."""
    dynload = Path(sysconfig.get_path("stdlib", vars={"installed_base": _prefix(python)}))
    files = [python, *map(str, sorted((dynload / "lib-dynload").glob("*.so")))]
    try:
        out = subprocess.run(
            ["ldd", *files], capture_output=True, text=True, timeout=60, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    libs = []
    for line in out.splitlines():
        words = line.split()
        if "=>" in words and len(words) > words.index("=>") + 1:
            libs.append(words[words.index("=>") + 1])
        elif words and words[0].startswith("/"):
            libs.append(words[0])  # the ELF interpreter
    return [lib for lib in libs if lib.startswith("/")]


def _prefix(python: str) -> str:
    return os.path.dirname(os.path.dirname(os.path.realpath(python)))


def _view(python: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """The directories to bind read-only and the symlinks leading to them."""
    dirs = {_prefix(python)}  # its standard library; a system Python's prefix is /usr
    links: dict[str, str] = {}
    for path in [python, *_libraries(python)]:
        cur = "/"
        for part in Path(path).parts[1:]:
            nxt = os.path.join(cur, part)
            if os.path.islink(nxt):
                links[nxt] = os.readlink(nxt)
                nxt = os.path.realpath(nxt)
            cur = nxt
        dirs.add(os.path.dirname(cur))
    kept = sorted(d for d in dirs if not any(d.startswith(o + "/") for o in dirs if o != d))
    inside = [p for p in links if any(p.startswith(d + "/") for d in kept)]
    for p in inside:
        del links[p]
    return tuple(kept), tuple(sorted(links.items()))


def _seccomp_available() -> bool:
    try:
        from tailguard.gate.sandbox_init import seccomp_filter

        seccomp_filter()
    except Exception:  # noqa: BLE001 - no libseccomp, no pyseccomp: reported, not fatal
        return False
    return True


@lru_cache(maxsize=4)
def _plan(python: str) -> _Plan:
    root = os.geteuid() == 0
    seccomp = _seccomp_available()
    candidates = []
    if root:
        for path in cgroup.sweep():
            log.warning("removed the sandbox cgroup %s of a gate that died", path)
        expose, links = _view(python)
        version, cpu = cgroup.probe() or (None, False)
        candidates.append(_Plan(True, "full", False, version, seccomp, expose, links, cpu))
        if version is not None:
            candidates.append(_Plan(True, "full", False, None, seccomp, expose, links))
    else:
        candidates.append(_Plan(False, "basic", True, None, seccomp))
    candidates += [
        _Plan(root, "basic", False, None, seccomp),
        _Plan(root, "basic", False, None, False),
    ]
    # Try each once: a kernel or container may refuse namespaces even to root.
    for plan in candidates:
        try:
            res = _run(plan, python, {}, ["-c", "pass"], Limits(wall_seconds=20))
        except (OSError, SandboxError, subprocess.SubprocessError) as exc:
            log.info("sandbox plan %s refused: %s", plan, exc)
            continue
        if res.returncode == 0:
            return plan
        log.info("sandbox plan %s failed: %s", plan, res.stderr.strip()[-300:])
    return candidates[-1]


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


def _kill_uid(uid: int) -> list[int]:
    """Kill every process of ``uid``: from that uid, ``kill(-1)`` reaches exactly them.

    Returns the processes still alive after 50 rounds (none, in practice)."""
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
            return []
        time.sleep(0.01)
    return _processes_of(uid)


def remove_tree(path: str | os.PathLike[str]) -> list[str]:
    """Delete a directory tree of any depth; return what could not be deleted.

    Iterative and descriptor-relative (one open directory at a time, no recursion,
    no path length limit), so a tree 100,000 levels deep is removed like a flat one;
    directories the code made unreadable are made readable first.
    """
    errors: list[str] = []
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return errors
    names: list[str] = []  # the path from ``path`` to the current directory
    stuck: set[tuple[int, int]] = set()  # entries that refused deletion
    while True:
        sub = None
        with os.scandir(fd) as it:
            entries = list(it)
        for e in entries:
            st = e.stat(follow_symlinks=False)
            if (st.st_dev, st.st_ino) in stuck:
                continue
            if e.is_dir(follow_symlinks=False):
                sub = e.name
                break
            try:
                os.unlink(e.name, dir_fd=fd)
            except OSError as exc:
                stuck.add((st.st_dev, st.st_ino))
                errors.append(f"{os.path.join(path, *names, e.name)}: {exc.strerror}")
        if sub is not None:
            try:
                child = os.open(sub, flags, dir_fd=fd)
            except PermissionError:
                os.chmod(sub, 0o700, dir_fd=fd, follow_symlinks=False)
                child = os.open(sub, flags, dir_fd=fd)
            with contextlib.suppress(OSError):
                os.fchmod(child, 0o700)  # so its entries can be unlinked
            os.close(fd)
            fd, names = child, [*names, sub]
            continue
        if not names:
            os.close(fd)
            try:
                os.rmdir(path)
            except OSError as exc:
                errors.append(f"{path}: {exc.strerror}")
            return errors
        parent = os.open("..", flags & ~os.O_NOFOLLOW, dir_fd=fd)
        st = os.fstat(fd)
        os.close(fd)
        name, names = names[-1], names[:-1]
        try:
            os.rmdir(name, dir_fd=parent)
        except OSError as exc:
            stuck.add((st.st_dev, st.st_ino))
            errors.append(f"{os.path.join(path, *names, name)}: {exc.strerror}")
        fd = parent


class _Tail:
    """The last ``limit`` bytes written to a pipe (the code may print gigabytes)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.data = limit, bytearray()

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > 2 * self.limit:
            del self.data[: len(self.data) - self.limit]

    def text(self) -> str:
        return bytes(self.data[-self.limit :]).decode("utf-8", "replace")


def _collect(proc: subprocess.Popen, pipes: dict[int, _Tail], deadline: float) -> bool:
    """Read the pipes until the launcher exits or the deadline; True if it timed out."""
    sel = selectors.DefaultSelector()
    for fd in pipes:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    try:
        while True:
            if proc.poll() is not None:
                _drain(sel, pipes)
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            for key, _ in sel.select(timeout=min(left, 0.05)):
                _read(sel, key.fd, pipes)
    finally:
        sel.close()


def _read(sel: selectors.BaseSelector, fd: int, pipes: dict[int, _Tail]) -> bool:
    try:
        chunk = os.read(fd, 1 << 16)
    except BlockingIOError:
        return False
    if not chunk:
        sel.unregister(fd)
        return False
    pipes[fd].add(chunk)
    return True


def _drain(sel: selectors.BaseSelector, pipes: dict[int, _Tail]) -> None:
    """What is already in the pipes (a leftover writer cannot keep us here)."""
    for fd in list(sel.get_map()):
        for _ in range(64):
            if not _read(sel, fd, pipes):
                break


def _run(
    plan: _Plan, python: str, files: dict[str, str], args: list[str], limits: Limits
) -> SandboxResult:
    """One sandboxed run under ``plan``; everything it started is gone when this returns."""
    uid = UID_BASE + secrets.randbelow(UID_SPAN) if plan.root else None
    group = None
    if plan.cgroup is not None:
        tree_mb = limits.memory_mb + limits.disk_mb + SUPERVISOR_MB
        cores = limits.cpu_cores if plan.cpu_limit else None
        group = cgroup.create(plan.cgroup, tree_mb << 20, limits.processes + 1, cores)
    processes = limits.processes if group else min(limits.processes, FALLBACK_PROCESSES)
    workdir = None
    opened: list[int] = []
    errors: list[str] = []
    proc = None
    try:
        if plan.mode == "basic":
            workdir = tempfile.mkdtemp(prefix="tailguard-sandbox-")
            if uid is not None:
                os.chmod(workdir, 0o700)
                os.chown(workdir, uid, uid)
        files_fd = os.memfd_create("tailguard-sandbox-files")
        opened.append(files_fd)
        os.write(files_fd, json.dumps(files).encode("utf-8"))
        pipes = [os.pipe() for _ in range(4)]  # stdout, stderr, report, status
        opened += [fd for pair in pipes for fd in pair]
        (out_r, out_w), (err_r, err_w), (rep_r, rep_w), (st_r, st_w) = pipes
        cfg = {
            "mode": plan.mode,
            "parent": os.getpid(),
            "python": python,
            "args": [a.replace("{report_fd}", str(rep_w)) for a in args],
            "uid": uid,
            "limits": limits.to_dict(),
            "processes": processes,
            "cgroups": group.procs if group else [],
            "expose": list(plan.expose),
            "links": dict(plan.links),
            "files_fd": files_fd,
            "status_fd": st_w if plan.mode == "full" else None,
            "workdir": workdir,
            "user_net_ns": plan.user_net_ns,
            "seccomp": plan.seccomp,
        }
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-I", INIT, json.dumps(cfg)],
            cwd="/",
            env={},
            stdin=subprocess.DEVNULL,
            stdout=out_w,
            stderr=err_w,
            pass_fds=(rep_w, st_w, files_fd),
            start_new_session=True,
            close_fds=True,
        )
        for fd in (out_w, err_w, rep_w, st_w, files_fd):
            os.close(fd)
            opened.remove(fd)
        tails = {out_r: _Tail(TAIL), err_r: _Tail(TAIL), rep_r: _Tail(1 << 16), st_r: _Tail(4096)}
        timed_out = _collect(proc, tails, t0 + limits.wall_seconds)
        # Whatever happened, nothing of the run may survive it: the launcher's death
        # takes PID 1 (parent-death signal) and with it the whole PID namespace.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        seconds = time.monotonic() - t0
        if group is not None:
            group.kill()
        if uid is not None and _processes_of(uid):
            errors += [f"process {p} of uid {uid} survived SIGKILL" for p in _kill_uid(uid)]
        sel = selectors.DefaultSelector()
        for fd in tails:
            sel.register(fd, selectors.EVENT_READ)
        _drain(sel, tails)
        sel.close()
        status = _status(tails[st_r].text()) if plan.mode == "full" else None
        if status and status.get("error"):
            raise SandboxError(f"sandbox setup failed: {status['error']}")
        rc = proc.returncode
        pid = status.get("pid") if status else (proc.pid if plan.mode == "basic" else None)
        if status and not timed_out:
            rc = -status["signal"] if status.get("signal") else status.get("returncode")
        sig = signal.Signals(-rc).name if rc is not None and rc < 0 else None
        result = SandboxResult(
            status="timeout" if timed_out else ("killed" if sig else "exited"),
            returncode=rc,
            signal=sig,
            seconds=seconds,
            stdout=tails[out_r].text(),
            stderr=tails[err_r].text(),
            report=_main_report(tails[rep_r].text(), pid),
            pid=pid,
            isolation=plan.isolation(),
            oom_kills=group.oom_kills() if group else 0,
            memory_peak_mb=_mb(group.peak_bytes()) if group else None,
        )
    finally:
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for fd in opened:
            os.close(fd)
        if group is not None:
            errors += group.remove()
        if workdir is not None:
            errors += remove_tree(workdir)
        if errors:
            log.error("sandbox cleanup left: %s", "; ".join(errors))
    return replace(result, cleanup_errors=tuple(errors))


def _status(text: str) -> dict[str, Any] | None:
    try:
        return json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        return None


def _main_report(text: str, pid: int | None) -> dict[str, Any] | None:
    """The last JSON object written by the main process ``pid`` (the line's ``"pid"``)."""
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and pid is not None and value.get("pid") == pid:
            return {k: v for k, v in value.items() if k != "pid"}
    return None


def _mb(n: int | None) -> float | None:
    return None if n is None else round(n / (1 << 20), 1)


def run_python(
    files: dict[str, str],
    args: list[str],
    *,
    limits: Limits | None = None,
    python: str | None = None,
) -> SandboxResult:
    """Write ``files`` into a fresh directory and run ``python -I *args`` there, sandboxed.

    The harness may write a JSON report to the file descriptor whose number is
    substituted for ``{report_fd}`` in ``args``, one object a line carrying
    ``"pid": os.getpid()`` of the process that started (see ``SandboxResult``).
    Cleanup problems are logged and listed in ``SandboxResult.cleanup_errors``; a
    sandbox that cannot be set up raises :class:`SandboxError`.
    """
    limits = limits or Limits()
    python = python or base_interpreter()
    return _run(_plan(python), python, files, args, limits)


#: The harness: run the code, then the tests (top-level asserts, then each test_*
#: function in order), and report the first failure. It runs before any untrusted
#: line, so it can set SIGXFSZ to raise instead of kill.
HARNESS = r"""
import json, os, signal, sys, traceback
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
_out = os.fdopen(int(sys.argv[1]), "w")
def _report(**kw):
    _out.write(json.dumps({**kw, "pid": os.getpid()}) + "\n"); _out.flush()
def _where(exc, name):
    tb = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == name]
    return tb[-1].lineno if tb else None
def _fail(stage, exc, name, test=None):
    kind = type(exc).__name__
    if isinstance(exc, MemoryError):
        outcome = "memory"
    elif isinstance(exc, OSError) and exc.errno == 27:
        outcome = "file_size"
    elif isinstance(exc, OSError) and exc.errno in (28, 122):
        outcome = "disk"
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
    return _plan(base_interpreter()).isolation()
