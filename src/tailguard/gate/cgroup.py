"""A control group per sandboxed run: memory, process count and CPU over its whole tree.

rlimits count one process at a time, so four processes may each hold the
per-process limit, and 32 busy processes may each use a core. A cgroup counts
them together. cgroup v2 (``memory.max``, ``pids.max``, ``cpu.max``) is used
where this process's cgroup can delegate memory and pids; otherwise the v1
``memory``, ``pids`` and ``cpu`` hierarchies; otherwise there is none and the
sandbox says so (its limits are then per process). Without a writable ``cpu``
controller the CPU share is not bounded, and the sandbox says that too. The
run's cgroup is a child of the caller's own, so whatever bounds the caller also
bounds the run.

A run's cgroup is named after the process that made it (pid and start time):
``sweep`` removes those whose owner is dead (a gate killed mid-run cannot remove
its own), never one whose owner still runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

PREFIX = "tailguard-sandbox-"
PERIOD_US = 100_000  # the CFS period; the quota is cpu_cores of it


def _mounts() -> list[tuple[str, str, str, set[str]]]:
    """(mount point, root inside the hierarchy, fs type, super options) of cgroup mounts."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if rfields and rfields[0] in ("cgroup", "cgroup2"):
                opts = set(rfields[2].split(",")) if len(rfields) > 2 else set()
                out.append((fields[4], fields[3], rfields[0], opts))
    return out


def _own() -> dict[str, str]:
    """This process's cgroup per controller ('' for v2) from /proc/self/cgroup."""
    own = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for c in controllers.split(",") if controllers else [""]:
                own[c] = path
    return own


def _join(mount: str, root: str, path: str) -> Path:
    rel = os.path.relpath(path, root) if root != "/" else path.lstrip("/")
    return Path(mount) / ("" if rel == "." else rel)


def _v2_parent() -> Path | None:
    own = _own()
    for mount, root, fstype, _ in _mounts():
        if fstype != "cgroup2" or "" not in own:
            continue
        parent = _join(mount, root, own[""])
        try:
            enabled = (parent / "cgroup.subtree_control").read_text().split()
            if not {"memory", "pids"} <= set(enabled):
                (parent / "cgroup.subtree_control").write_text("+memory +pids")
        except OSError:
            return None
        with contextlib.suppress(OSError):  # optional: without it the run says so
            if "cpu" not in enabled:
                (parent / "cgroup.subtree_control").write_text("+cpu")
        return parent
    return None


def _v1_parents() -> tuple[Path, Path | None] | None:
    own = _own()
    found: dict[str, Path] = {}
    for mount, root, fstype, opts in _mounts():
        for c in ("memory", "pids"):
            if fstype == "cgroup" and c in opts and c in own:
                found[c] = _join(mount, root, own[c])
    if "memory" not in found:
        return None
    return found["memory"], found.get("pids")


def _v1_cpu_parent() -> Path | None:
    own = _own()
    for mount, root, fstype, opts in _mounts():
        if fstype == "cgroup" and "cpu" in opts and "cpu" in own:
            return _join(mount, root, own["cpu"])
    return None


@dataclass
class RunGroup:
    """The cgroup(s) of one run: join by writing to ``procs``, then kill and remove."""

    version: int
    memory: Path
    pids: Path | None
    cpu: Path | None = None  # None: the CPU share is not bounded

    @property
    def dirs(self) -> list[Path]:
        return [d for d in dict.fromkeys([self.memory, self.pids, self.cpu]) if d is not None]

    @property
    def procs(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def _read(self, name: str, key: str) -> int:
        try:
            for line in (self.memory / name).read_text().splitlines():
                k, _, v = line.partition(" ")
                if k == key:
                    return int(v)
        except (OSError, ValueError):
            pass
        return 0

    def oom_kills(self) -> int:
        """Processes the kernel killed for exceeding the tree's memory."""
        if self.version == 2:
            return self._read("memory.events", "oom_kill")
        return self._read("memory.oom_control", "oom_kill")

    def peak_bytes(self) -> int | None:
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        try:
            return int((self.memory / name).read_text())
        except (OSError, ValueError):
            return None

    def members(self) -> list[int]:
        pids: set[int] = set()
        for d in self.dirs:
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in (d / "cgroup.procs").read_text().split())
        return sorted(pids)

    def kill(self) -> None:
        """SIGKILL every member until none is left (bounded; see ``remove``)."""
        if self.version == 2:
            with contextlib.suppress(OSError):
                (self.memory / "cgroup.kill").write_text("1")
        for _ in range(200):
            members = self.members()
            if not members:
                return
            for pid in members:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)

    def remove(self) -> list[str]:
        """Kill what is left, remove the directories; return what could not be removed."""
        self.kill()
        errors = []
        for d in self.dirs:
            for attempt in range(100):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if attempt == 99:
                        errors.append(f"cgroup {d}: {exc.strerror}")
                    time.sleep(0.01)
        return errors


def _start_time(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot): a pid reused later differs."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


def _name() -> str:
    pid = os.getpid()
    return f"{PREFIX}{pid}-{_start_time(pid)}-{uuid.uuid4().hex}"


def _owner_alive(name: str) -> bool:
    """Whether the process that made the cgroup ``name`` still runs (unknown: yes)."""
    pid, _, rest = name[len(PREFIX) :].partition("-")
    start = rest.partition("-")[0]
    if not (pid.isdigit() and start.isdigit()):
        return True  # not named by this version: whose it is cannot be told, keep it
    return _start_time(int(pid)) == start


def _set_cpu(group: RunGroup, cores: float) -> None:
    """Bound the tree to ``cores`` CPUs' worth of time; without a writable cpu
    controller leave ``group.cpu`` None (the run reports it)."""
    quota = max(1000, round(cores * PERIOD_US))
    if group.version == 2:
        try:
            (group.memory / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        except OSError:
            return
        group.cpu = group.memory
        return
    parent = _v1_cpu_parent()
    if parent is None:
        return
    path = parent / group.memory.name
    try:
        path.mkdir()
    except OSError:
        return
    group.cpu = path
    try:
        (path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (path / "cpu.cfs_quota_us").write_text(str(quota))
    except OSError:
        group.cpu = None
        with contextlib.suppress(OSError):
            path.rmdir()


def sweep() -> list[str]:
    """Remove the run cgroups left by gates that died (killed mid-run); return them.

    Only this version's cgroups under this process's own are looked at, and only
    those whose owning process is dead are killed and removed.
    """
    parents = [*(_v1_parents() or ()), _v1_cpu_parent(), _v2_parent()]
    removed = []
    for parent in dict.fromkeys(p for p in parents if p is not None):
        with contextlib.suppress(OSError):
            for path in sorted(parent.glob(PREFIX + "*")):
                dead = path.is_dir() and not _owner_alive(path.name)
                if dead and not RunGroup(1, path, None).remove():
                    removed.append(str(path))
    return removed


def create(
    version: int, memory_bytes: int, processes: int, cpu_cores: float | None = None
) -> RunGroup:
    """A fresh cgroup under this process's own with the given limits (OSError if refused).

    ``cpu_cores`` bounds the tree's CPU share where the cpu controller is writable
    (``RunGroup.cpu`` says whether it is)."""
    name = _name()
    if version == 2:
        parent = _v2_parent()
        if parent is None:
            raise OSError("no delegated cgroup v2 memory and pids controllers")
        group = RunGroup(2, parent / name, None)
        group.memory.mkdir()
        try:
            (group.memory / "memory.max").write_text(str(memory_bytes))
            with contextlib.suppress(FileNotFoundError):
                (group.memory / "memory.swap.max").write_text("0")
            (group.memory / "pids.max").write_text(str(processes))
        except OSError:
            group.remove()
            raise
        if cpu_cores is not None:
            _set_cpu(group, cpu_cores)
        return group
    parents = _v1_parents()
    if parents is None:
        raise OSError("no cgroup v1 memory controller")
    group = RunGroup(1, parents[0] / name, parents[1] / name if parents[1] else None)
    for d in group.dirs:
        d.mkdir()
    try:
        (group.memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
        with contextlib.suppress(OSError):  # swap accounting may be off
            (group.memory / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
        if group.pids is not None:
            (group.pids / "pids.max").write_text(str(processes))
    except OSError:
        group.remove()
        raise
    if cpu_cores is not None:
        _set_cpu(group, cpu_cores)
    return group


def probe() -> tuple[int, bool] | None:
    """Which cgroup version this process can give a run (2, 1) or None, and whether
    it bounds the CPU share too."""
    for version in (2, 1):
        try:
            group = create(version, 64 << 20, 4, cpu_cores=1.0)
        except OSError:
            continue
        cpu = group.cpu is not None
        if not group.remove():
            return version, cpu
    return None
