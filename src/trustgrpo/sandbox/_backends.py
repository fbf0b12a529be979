"""The two ways of starting a sandboxed interpreter, and the isolation each one gives.

``bwrap`` (preferred): bubblewrap puts the program in fresh PID, network, IPC, UTS and mount
namespaces whose root holds only ``/usr``, the interpreter, five devices (``/dev/null``...)
and the working directory (at ``/sandbox``, also reached as ``/tmp``); the seccomp filter
comes in through ``--seccomp FD``. There is no ``/proc``: a process cannot reach another
one's descriptors or memory, even within the run (the code verifier's harness relies on
this). When trustgrpo
runs as root, bubblewrap itself runs as root without a user namespace (so it can bind
directories only root may read, such as a pyenv under ``/root``) and ``setpriv`` inside drops
to a per-run unprivileged uid with no capabilities. Otherwise bubblewrap runs unprivileged
with a user namespace.

``process`` (fallback, where bubblewrap is absent or fails): the program runs in its own
session as a per-run unprivileged uid (when root), with Landlock limiting it to the
interpreter, ``/usr`` and the working directory and denying TCP, and the same seccomp
filter. Without root there is no uid change, which makes the isolation *weak*.

Why a per-run uid: ``RLIMIT_NPROC`` counts processes per uid and is not enforced for root,
so a shared uid would let one run's fork bomb starve the others. It also makes cleanup
exact on the process backend: ``kill(-1, SIGKILL)`` sent *as that uid* reaches every process
the run left, including double-forked daemons that left its process group.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from trustgrpo.errors import SandboxError
from trustgrpo.sandbox._prelude import landlock_abi, seccomp_bpf

Backend = Literal["bwrap", "process"]

WORKDIR = "/sandbox"
"""Where the working directory appears inside a bubblewrap sandbox."""
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
"""The only devices inside a bubblewrap sandbox (``/tmp`` there is the working directory)."""
UID_BASE = 1_600_000_000
"""First uid of the per-run range; far above any real account or subordinate-id range."""
UID_SPAN = 1 << 24

#: Layers that must all be present (``user`` or ``userns``) for isolation not to be weak.
REQUIRED = ("process", "user", "rlimit")

LAYER_DOCS = {
    "process": "own session and process group, all of it killed when the run ends",
    "pidns": "own PID namespace: no other process visible; everything dies with the run",
    "user": "a per-run unprivileged uid without capabilities (started as root)",
    "userns": "a user namespace without capabilities (started unprivileged)",
    "rlimit": "CPU time, address space, processes, file size, open files, no core dumps",
    "netns": "own network namespace: only an unconfigured loopback",
    "mountns": "private filesystem view: /usr, the interpreter, the work dir; no /proc, /etc",
    "seccomp": "syscall filter: no socket(), ptrace, namespaces, bpf, keyrings, io_uring",
    "landlock": "filesystem limited to the interpreter, /usr and the work dir; no TCP",
}
"""What each isolation layer name means."""


def isolation_level(layers: tuple[str, ...] | list[str]) -> Literal["strong", "standard", "weak"]:
    """``weak`` without process + user (or userns) + rlimit; ``strong`` with a network and a
    filesystem layer on top; ``standard`` in between."""
    have = set(layers)
    if not {"process", "rlimit"} <= have or not have & {"user", "userns"}:
        return "weak"
    if have & {"netns", "seccomp"} and have & {"mountns", "landlock"}:
        return "strong"
    return "standard"


@dataclass(frozen=True)
class Plan:
    """A backend with everything needed to start runs on it."""

    backend: Backend
    python: str
    """The interpreter for programs (a host path; the same path inside bubblewrap)."""
    prefix: str
    """Its installation prefix, made visible inside bubblewrap."""
    as_root: bool
    """Started as root: each run gets its own unprivileged uid."""
    bpf: bytes | None
    """Compiled seccomp filter, if pyseccomp is available."""
    landlock: bool
    """Apply Landlock in the prelude (process backend)."""
    setpriv: str | None
    """Path of ``setpriv`` used to drop to the run's uid."""
    bwrap: str | None = None
    """Path of ``bwrap`` (bwrap backend)."""

    @property
    def layers(self) -> tuple[str, ...]:
        """The isolation layers in force for every run of this plan."""
        out = ["process"]
        if self.backend == "bwrap":
            out.append("pidns")
        if self.as_root:
            out.append("user")
        elif self.backend == "bwrap":
            out.append("userns")
        out.append("rlimit")
        if self.backend == "bwrap":
            out += ["netns", "mountns"]
        if self.bpf is not None:
            out.append("seccomp")
        if self.landlock:
            out.append("landlock")
        return tuple(out)


# --------------------------------------------------------------------------- interpreter


def _default_python() -> tuple[str, str]:
    exe = getattr(sys, "_base_executable", None) or sys.executable
    return os.path.realpath(exe), os.path.realpath(sys.base_prefix)


def _prefix_of(python: str) -> str:
    return str(Path(os.path.realpath(python)).parent.parent)


def _others_can_use(python: str, prefix: str) -> bool:
    """True when a uid that owns nothing can execute ``python`` and read ``prefix``."""
    exe = Path(os.path.realpath(python))
    try:
        for d in [*exe.parents, Path(prefix)]:
            if not os.stat(d).st_mode & stat.S_IXOTH:
                return False
        return bool(os.stat(exe).st_mode & stat.S_IXOTH) and bool(
            os.stat(prefix).st_mode & stat.S_IROTH
        )
    except OSError:
        return False


def choose_python(python: str | None, *, others_must_use: bool) -> tuple[str, str]:
    """The interpreter for programs and its prefix.

    ``None`` picks this process's base interpreter. On the process backend as root, the
    program runs as a uid that owns nothing, so the interpreter must be usable by others; a
    base interpreter that is not (a pyenv under ``/root``) is replaced by the system one.
    """
    if python:
        path = shutil.which(python) or python
        if not os.path.isfile(path):
            raise SandboxError(f"sandbox python: expected an interpreter, found no file {path!r}")
        exe, prefix = os.path.realpath(path), _prefix_of(path)
        if others_must_use and not _others_can_use(exe, prefix):
            raise SandboxError(
                f"sandbox python: {exe} (or a directory above it) is not usable by an "
                "unprivileged uid; install bubblewrap or pass a world-readable interpreter"
            )
        return exe, prefix
    exe, prefix = _default_python()
    if not others_must_use or _others_can_use(exe, prefix):
        return exe, prefix
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        real = os.path.realpath(candidate)
        if os.path.isfile(real) and _others_can_use(real, _prefix_of(real)):
            return real, _prefix_of(real)
    raise SandboxError(
        f"sandbox python: {exe} is not usable by an unprivileged uid and no system python3 "
        "was found; install bubblewrap (apt-get install -y bubblewrap) or pass python="
    )


# --------------------------------------------------------------------------- plans


def plans(backend: str, python: str | None) -> tuple[list[Plan], list[str]]:
    """Candidate plans in order of preference (``auto``: bubblewrap, then process), and
    notes on the backends left out."""
    if backend not in ("auto", "bwrap", "process"):
        raise ValueError(f"backend: expected 'auto', 'bwrap' or 'process', got {backend!r}")
    as_root = os.geteuid() == 0
    setpriv = shutil.which("setpriv") if as_root else None
    bwrap = shutil.which("bwrap")
    bpf = seccomp_bpf()
    out: list[Plan] = []
    notes: list[str] = []
    if backend in ("auto", "bwrap"):
        if bwrap is None:
            notes.append("bwrap: bubblewrap is not installed (apt-get install -y bubblewrap)")
        elif as_root and setpriv is None:
            notes.append("bwrap: running as root needs setpriv (util-linux) to drop privileges")
        else:
            exe, prefix = choose_python(python, others_must_use=False)
            out.append(Plan("bwrap", exe, prefix, as_root, bpf, False, setpriv, bwrap))
        if backend == "bwrap" and not out:
            raise SandboxError(f"sandbox backend {notes[-1]}")
    if backend in ("auto", "process"):
        exe, prefix = choose_python(python, others_must_use=as_root)
        out.append(Plan("process", exe, prefix, as_root, bpf, landlock_abi() >= 1, setpriv))
    return out, notes


def _host_dirs() -> list[str]:
    """bwrap arguments that recreate ``/bin``, ``/lib``... (symlinks into /usr on Debian 12)."""
    args: list[str] = []
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = "/" + name
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def _prefix_binds(prefix: str) -> list[str]:
    if prefix == "/usr" or prefix.startswith("/usr/"):
        return []
    args: list[str] = []
    for parent in reversed(Path(prefix).parents):
        if str(parent) != "/":
            args += ["--perms", "0755", "--dir", str(parent)]
    return [*args, "--ro-bind", prefix, prefix]


def _drop(plan: Plan, uid: int) -> list[str]:
    assert plan.setpriv is not None
    return [
        plan.setpriv,
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
    ]


def command(
    plan: Plan,
    uid: int | None,
    workdir: str,
    prelude: str,
    bpf_fd: int | None = None,
    info_fd: int | None = None,
) -> list[str]:
    """argv that starts ``prelude`` in the sandbox (``workdir`` is the host directory)."""
    python = [plan.python, "-S", "-s", "-B", "-c", prelude]
    if plan.backend == "process":
        if uid is not None and plan.setpriv is not None:
            return [*_drop(plan, uid), *python]
        return python
    if plan.as_root:
        ns = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts"]
    else:
        ns = ["--unshare-user", "--disable-userns", "--unshare-pid", "--unshare-net"]
        ns += ["--unshare-ipc", "--unshare-uts"]
    assert plan.bwrap is not None
    args = [plan.bwrap, *ns, "--die-with-parent", "--new-session"]
    # As few mounts as will do: each costs time to make and to tear down (measured: --dev and
    # a tmpfs /tmp together cost about 15% of a run). No /proc, /sys or /etc at all.
    args += ["--ro-bind", "/usr", "/usr", *_host_dirs(), *_prefix_binds(plan.prefix)]
    for dev in DEVICES:
        args += ["--dev-bind", dev, dev]
    args += ["--bind", workdir, WORKDIR, "--chdir", WORKDIR, "--symlink", WORKDIR, "/tmp"]
    if bpf_fd is not None:
        args += ["--seccomp", str(bpf_fd)]
    if info_fd is not None:
        args += ["--info-fd", str(info_fd)]
    if uid is not None:
        args += ["--cap-add", "CAP_SETUID,CAP_SETGID,CAP_SETPCAP", *_drop(plan, uid)]
    return [*args, *python]


def environment(plan: Plan, workdir: str) -> dict[str, str]:
    """The whole environment of a program: nothing of the parent's is passed on.

    ``PYTHONHASHSEED=0`` makes set and dict-of-str orders, and so printed output, the same on
    every run: verdicts must be deterministic.
    """
    inside = WORKDIR if plan.backend == "bwrap" else workdir
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": inside,
        "TMPDIR": inside,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONIOENCODING": "utf-8",
        "PYTHONUTF8": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def landlock_rules(plan: Plan, workdir: str) -> list[tuple[str, bool]] | None:
    """(path, writable) pairs the process backend allows; everything else is denied."""
    if not plan.landlock:
        return None
    ro = [plan.prefix, "/usr", "/bin", "/lib", "/lib64", "/etc/ld.so.cache"]
    ro += ["/dev/urandom", "/dev/random"]
    return [*((p, False) for p in ro), ("/dev/null", True), ("/dev/zero", True), (workdir, True)]


# --------------------------------------------------------------------------- uids


class UidPool:
    """Hands out per-run uids, never the same one to two runs at once in this process.

    Random within a 2**24 range so that separate trustgrpo processes rarely collide; a
    collision would only let one run's cleanup kill the other run (which then fails).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._used: set[int] = set()

    def acquire(self) -> int:
        """A uid no other run of this process is using."""
        with self._lock:
            while True:
                uid = UID_BASE + secrets.randbelow(UID_SPAN)
                if uid not in self._used:
                    self._used.add(uid)
                    return uid

    def release(self, uid: int) -> None:
        """Give ``uid`` back once none of its processes is left."""
        with self._lock:
            self._used.discard(uid)


UIDS = UidPool()


def popen_user(plan: Plan, uid: int | None) -> int | None:
    """The uid Popen itself must switch to where ``setpriv`` is missing (this makes it fork
    instead of vfork), else None."""
    if uid is None or plan.setpriv is not None or plan.backend == "bwrap":
        return None
    return uid


def sweep(plan: Plan, uid: int) -> None:
    """Kill every process of ``uid`` (daemons that left the process group included).

    Sent as ``uid`` itself, ``kill(-1, SIGKILL)`` reaches exactly that uid's processes.
    """
    kill = shutil.which("kill")
    tail = [kill, "-9", "-1"] if kill else [plan.python, "-S", "-c", KILL_ALL]
    drop = _drop(plan, uid) if plan.setpriv else []
    user = None if plan.setpriv else uid
    subprocess.run(
        [*drop, *tail],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
        user=user,
        group=user,
        extra_groups=None if user is None else [],
    )


KILL_ALL = "import os, signal; os.kill(-1, signal.SIGKILL)"
