"""A control group per sandboxed run: memory and process count over its whole tree.

rlimits count one process at a time, so four processes may each hold the
per-process limit. A cgroup counts them together. cgroup v2 (``memory.max``,
``pids.max``) is used where this process's cgroup can delegate both controllers;
otherwise the v1 ``memory`` and ``pids`` hierarchies; otherwise there is none and
the sandbox says so (its limits are then per process). The run's cgroup is a
child of the caller's own, so whatever bounds the caller also bounds the run.
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


@dataclass
class RunGroup:
    """The cgroup(s) of one run: join by writing to ``procs``, then kill and remove."""

    version: int
    memory: Path
    pids: Path | None

    @property
    def dirs(self) -> list[Path]:
        return [d for d in dict.fromkeys([self.memory, self.pids]) if d is not None]

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


def create(version: int, memory_bytes: int, processes: int) -> RunGroup:
    """A fresh cgroup under this process's own with the given limits (OSError if refused)."""
    name = PREFIX + uuid.uuid4().hex
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
    return group


def probe() -> int | None:
    """Which cgroup version this process can give a run (2, 1) or None."""
    for version in (2, 1):
        try:
            group = create(version, 64 << 20, 4)
        except OSError:
            continue
        if not group.remove():
            return version
    return None
