"""The sandbox's launcher: the trusted code between the gate and the untrusted interpreter.

``sandbox.py`` starts it as ``python -I sandbox_init.py CONFIG`` (it imports nothing
of tailguard's, only the standard library and ``pyseccomp``). What it does, in order:

``full`` mode (root):

1. leaves the caller's mount, PID, network, IPC and UTS namespaces (and, for its
   children, the time namespace: their clocks start near zero);
2. forks PID 1 of the new PID namespace, which joins the run's cgroups (memory
   and process count over the whole tree, its own cgroup namespace), builds a
   minimal root on a small
   tmpfs: read-only bind mounts of the interpreter and its libraries, ``/dev/null``
   and friends, a fresh ``/proc`` (only the sandbox's processes), and the working
   directory ``/sandbox``: a tmpfs with ``size=`` and ``nr_inodes=``, owned by the
   run's uid; then ``pivot_root``, the old root detached, the new root read-only;
3. PID 1 forks the worker, which sets the rlimits, drops to the run's uid,
   sets ``no_new_privs``, loads the seccomp filter and execs the interpreter in
   ``/sandbox``. PID 1 reaps orphans and, when the worker ends, writes its exit
   status to the status pipe and exits: the kernel then kills whatever is left
   in the namespace and, with the last process, frees the mounts (the tmpfs
   with everything written to it). Nothing of the run touches the host's disk.

``basic`` mode (no root): the working directory is a host directory, the
launcher optionally enters a new user+network namespace, then becomes the worker.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import resource
import select
import signal
import stat
import sys
import time

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
CLONE_NEWCGROUP, CLONE_NEWTIME = 0x02000000, 0x00000080
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 0x4000, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
#: pivot_root's number; elsewhere the launcher falls back to chroot (the code cannot
#: undo either: it has no capabilities, and seccomp refuses chroot and mounts).
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(os.uname().machine, -1)
WORKDIR = "/sandbox"
#: The devices inside, by name and minor number (major 1, the memory devices).
DEVICES = {"null": 3, "zero": 5, "full": 7, "random": 8, "urandom": 9}

#: Namespace creation and the mount/kernel interfaces a test never needs.
DENIED = (
    "unshare",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "fsopen",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "open_by_handle_at",
    "name_to_handle_at",
    "ptrace",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "kexec_load",
    "init_module",
    "finit_module",
    "delete_module",
    "sysinfo",  # host RAM, uptime, process count and load (also behind getloadavg)
)
#: The one address family Python needs inside (``socketpair``, local pipes between
#: processes); every other, AF_VSOCK and AF_NETLINK included, is refused: some
#: (vsock) are not network-namespaced and would reach the host.
AF_UNIX = 1
NAMESPACE_FLAGS = (
    CLONE_NEWNS,
    CLONE_NEWUTS,
    CLONE_NEWIPC,
    CLONE_NEWUSER,
    CLONE_NEWPID,
    CLONE_NEWNET,
    CLONE_NEWCGROUP,
    CLONE_NEWTIME,
)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(src: str | None, dst: str, fstype: str | None, flags: int, data: str | None) -> None:
    enc = [None if s is None else s.encode() for s in (src, dst, fstype, data)]
    _check(_libc.mount(enc[0], enc[1], enc[2], flags, enc[3]), f"mount {dst}")


def seccomp_filter():  # noqa: ANN201 - pyseccomp's SyscallFilter
    """Deny namespace creation (``unshare``, ``setns``, ``clone`` with ``CLONE_NEW*``),
    the interfaces in ``DENIED`` and every socket family but ``AF_UNIX``.

    ``clone3`` passes its flags in memory a filter cannot read, so it answers
    ``ENOSYS`` and the C library falls back to ``clone``, whose flags are checked.
    """
    import pyseccomp as sc

    f = sc.SyscallFilter(sc.ALLOW)
    for name in DENIED:
        try:
            f.add_rule(sc.ERRNO(errno.EPERM), name)
        except (RuntimeError, OSError, ValueError):  # not a syscall on this architecture
            continue
    for flag in NAMESPACE_FLAGS:
        f.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    for call in ("socket", "socketpair"):
        f.add_rule(sc.ERRNO(errno.EPERM), call, sc.Arg(0, sc.NE, AF_UNIX))
    return f


def _limits(cfg: dict) -> None:
    lim, mib = cfg["limits"], 1 << 20
    for res, value in (
        (resource.RLIMIT_CPU, (lim["cpu_seconds"], lim["cpu_seconds"] + 1)),
        (resource.RLIMIT_AS, (lim["memory_mb"] * mib,) * 2),
        (resource.RLIMIT_FSIZE, (lim["file_size_mb"] * mib,) * 2),
        (resource.RLIMIT_NOFILE, (lim["open_files"],) * 2),
        (resource.RLIMIT_NPROC, (cfg["processes"],) * 2),
        (resource.RLIMIT_CORE, (0, 0)),
    ):
        resource.setrlimit(res, value)


def _exec_worker(cfg: dict, workdir: str, filt: object) -> None:
    """Limits, drop to the run's uid, no_new_privs, seccomp, exec. Never returns."""
    try:
        os.chdir(workdir)
        os.umask(0o077)
        uid = cfg["uid"]
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        _limits(cfg)
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        for fd in (cfg["files_fd"], cfg["status_fd"]):
            if fd is not None:
                os.close(fd)
        if filt is not None:
            filt.load()
        python = cfg["python"]
        os.execve(python, [python, "-I", *cfg["args"]], {})
    except BaseException as exc:  # noqa: BLE001 - fail closed, say why on stderr
        os.write(2, f"sandbox setup failed: {type(exc).__name__}: {exc}\n".encode())
        os._exit(125)


def _write_files(cfg: dict, workdir: str) -> None:
    with os.fdopen(cfg["files_fd"], "rb", closefd=False) as f:
        f.seek(0)
        files = json.loads(f.read().decode("utf-8"))
    for name, text in files.items():
        path = os.path.join(workdir, name)
        with open(path, "w", encoding="utf-8") as out:
            out.write(text)
        if cfg["uid"] is not None:
            os.chown(path, cfg["uid"], cfg["uid"])


def _expose(root: str, cfg: dict, fds: dict[str, int]) -> None:
    """Recreate the interpreter's view under ``root``: its directories bound read-only
    (from descriptors opened before ``/tmp`` was covered), the symlinks leading to them."""
    for path in cfg["expose"]:
        inside = root + path
        os.makedirs(inside, exist_ok=True)
        _mount(f"/proc/self/fd/{fds[path]}", inside, None, MS_BIND, None)
        _mount(None, inside, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, None)
    for path, target in cfg["links"].items():
        inside = root + path
        os.makedirs(os.path.dirname(inside), exist_ok=True)
        if not os.path.lexists(inside):
            os.symlink(target, inside)


def _make_devices(dev: str) -> None:
    """``/dev`` as a tiny tmpfs of its own holding the few devices: binding the host's
    nodes would show the host's devtmpfs (its size is half the host's RAM) in
    ``/proc/self/mountinfo``. Where ``mknod`` is refused, the host's nodes are bound."""
    os.makedirs(dev, exist_ok=True)
    _mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "size=16k,nr_inodes=32,mode=755")
    for name, minor in DEVICES.items():
        target = f"{dev}/{name}"
        try:
            os.mknod(target, stat.S_IFCHR | 0o666, os.makedev(1, minor))
            os.chmod(target, 0o666)  # whatever the umask
        except OSError:
            open(target, "w").close()
            _mount(f"/dev/{name}", target, None, MS_BIND, None)


def _build_root(cfg: dict, exposed: dict) -> str:
    """Mount the minimal root at /tmp (of this private namespace); return its path."""
    root = "/tmp"
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=4096,mode=755")
    _expose(root, cfg, exposed)
    _make_devices(root + "/dev")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0")):
        os.symlink(target, f"{root}/dev/{name}")
    os.symlink("/proc/self/fd/1", f"{root}/dev/stdout")
    os.symlink("/proc/self/fd/2", f"{root}/dev/stderr")
    readonly = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC
    _mount(None, root + "/dev", None, readonly, None)
    os.makedirs(root + "/tmp", exist_ok=True)  # present, read-only: writes fail
    os.makedirs(root + "/proc", exist_ok=True)
    # Only the run's own processes, and of those only the untrusted uid's (not PID 1);
    # no /proc/meminfo, /proc/sys, ... where the kernel allows (5.8+).
    for options in ("hidepid=invisible,subset=pid", "hidepid=2", None):
        try:
            _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, options)
            break
        except OSError:
            if options is None:
                raise
    work = root + WORKDIR
    os.makedirs(work)
    lim = cfg["limits"]
    owner = cfg["uid"] if cfg["uid"] is not None else 0
    _mount(
        "tmpfs",
        work,
        "tmpfs",
        MS_NOSUID | MS_NODEV | MS_NOEXEC,
        f"size={lim['disk_mb']}m,nr_inodes={lim['inodes']},mode=700,uid={owner},gid={owner}",
    )
    _write_files(cfg, work)
    return root


def _enter_root(root: str) -> None:
    os.chdir(root)
    if _libc.syscall(SYS_PIVOT_ROOT, b".", b".") == 0:
        _check(_libc.umount2(b".", MNT_DETACH), "detach the old root")
    else:
        _check(_libc.chroot(b"."), "chroot")
    os.chdir("/")
    _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, None)


def _private_clocks() -> None:
    """A time namespace for the children whose monotonic and boot clocks start near
    zero: the host's uptime does not show (``sysinfo`` is refused by the filter).
    Best effort: a kernel without time namespaces (before 5.6) shows it."""
    if _libc.unshare(CLONE_NEWTIME) != 0:
        return
    offsets = []
    for name, clock in (("monotonic", time.CLOCK_MONOTONIC), ("boottime", time.CLOCK_BOOTTIME)):
        offsets.append(f"{name} {1 - int(time.clock_gettime(clock))} 0\n")
    with open("/proc/self/timens_offsets", "w") as f:
        f.write("".join(offsets))


def _write_oom_adj(value: int) -> None:
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
    except OSError:
        pass


def _init(cfg: dict, filt: object, lifeline: int) -> None:
    """PID 1 of the sandbox: build the root, run the worker, reap, report its status."""
    status = {"returncode": None, "signal": None, "error": None, "pid": None}
    try:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if select.select([lifeline], [], [], 0)[0]:  # the launcher died before the prctl
            os._exit(125)
        os.close(lifeline)
        for procs in cfg["cgroups"]:  # from here on, all the run's processes are counted
            with open(procs, "w") as f:
                f.write("0")
        if cfg["cgroups"]:
            _libc.unshare(CLONE_NEWCGROUP)  # its own cgroup looks like the root inside
        _write_oom_adj(-1000)  # the OOM killer picks the untrusted processes, not PID 1
        exposed = {p: os.open(p, os.O_PATH | os.O_DIRECTORY) for p in cfg["expose"]}
        root = _build_root(cfg, exposed)
        for fd in exposed.values():
            os.close(fd)
        _enter_root(root)
        _libc.sethostname(b"sandbox", 7)
        worker = os.fork()
        if worker == 0:
            _write_oom_adj(0)
            os.setsid()
            _exec_worker(cfg, WORKDIR, filt)
        status["pid"] = worker  # only this process's report can decide the verdict
        while True:
            try:
                pid, st = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            if pid == worker:
                if os.WIFSIGNALED(st):
                    status["signal"] = os.WTERMSIG(st)
                else:
                    status["returncode"] = os.WEXITSTATUS(st)
                break
    except BaseException as exc:  # noqa: BLE001 - report and fail closed
        status["error"] = f"{type(exc).__name__}: {exc}"
    os.write(cfg["status_fd"], json.dumps(status).encode())
    os._exit(0)


def main() -> None:
    cfg = json.loads(sys.argv[1])
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != cfg["parent"]:  # the gate died before we got here
        os._exit(125)
    try:  # built here: inside the new root the library is out of reach
        filt = seccomp_filter() if cfg["seccomp"] else None
    except BaseException as exc:  # noqa: BLE001 - fail closed
        os.write(2, f"sandbox setup failed: seccomp: {type(exc).__name__}: {exc}\n".encode())
        os._exit(125)
    if cfg["mode"] == "basic":
        if cfg["user_net_ns"]:
            _check(_libc.unshare(CLONE_NEWUSER | CLONE_NEWNET), "unshare")
        _write_files(cfg, cfg["workdir"])
        _exec_worker(cfg, cfg["workdir"], filt)
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
    _check(_libc.unshare(flags), "unshare")
    _private_clocks()
    _mount("none", "/", None, MS_REC | MS_PRIVATE, None)
    _write_oom_adj(-1000)
    lifeline, keep = os.pipe()  # PID 1 reads EOF here if this process is gone
    pid = os.fork()
    if pid == 0:
        os.close(keep)
        _init(cfg, filt, lifeline)
    _, st = os.waitpid(pid, 0)
    os._exit(os.waitstatus_to_exitcode(st) & 0xFF if os.WIFEXITED(st) else 125)


if __name__ == "__main__":
    main()
