"""What runs inside the sandbox before the program: limits, then (process backend) LSM layers.

The sandboxed interpreter is started as ``python -S -s -B -c PRELUDE``. The prelude

1. sets the resource limits (soft = hard, so the program cannot raise them again);
2. on the process backend only: sets ``no_new_privs``, restricts the filesystem and TCP with
   Landlock and installs the seccomp filter (bubblewrap installs the same filter itself from
   ``--seccomp FD``, and its mount and network namespaces replace Landlock);
3. writes one byte to the *ready* pipe and closes it. The supervisor treats a run that never
   sent this byte as a sandbox failure (``SandboxError``); once it is sent, every failure
   belongs to the program. A program cannot fake the byte: it only runs after it was sent;
4. runs ``main.py`` from the working directory as ``__main__``.

Functions whose source is copied into the prelude (``_setup``, ``_landlock``, ``_seccomp``)
must run on any Python >= 3.10 with only the standard library, and import what they use.
"""

from __future__ import annotations

import errno
import functools
import inspect
import os
import tempfile
from collections.abc import Sequence

MAIN = "main.py"
"""File name of the program inside the working directory."""

# Syscalls refused with EPERM. socket(): no network, no abstract Unix sockets (socketpair stays
# allowed); the rest is kernel attack surface or a way to look into other processes.
_DENIED_SYSCALLS = (
    "socket",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "unshare",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "io_uring_setup",
)
# clone() flags that create namespaces: CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER,
# NEWPID, NEWNET, NEWTIME. Refused one by one (a masked-equal rule tests one bit pattern).
_NAMESPACE_FLAGS = (
    0x00020000,
    0x02000000,
    0x04000000,
    0x08000000,
    0x10000000,
    0x20000000,
    0x40000000,
    0x00000080,
)


@functools.lru_cache(maxsize=1)
def seccomp_bpf() -> bytes | None:
    """The compiled seccomp filter (classic BPF), or None where pyseccomp/libseccomp is missing.

    Compiled once in the grader with pyseccomp; clone3 answers ENOSYS so libc falls back to
    clone(), whose flags the filter can inspect.
    """
    try:
        import pyseccomp as sc
    except (ImportError, OSError, RuntimeError):
        return None
    try:
        filt = sc.SyscallFilter(sc.ALLOW)
        for name in _DENIED_SYSCALLS:
            filt.add_rule(sc.ERRNO(errno.EPERM), name)
        filt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
        for flag in _NAMESPACE_FLAGS:
            filt.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
        with tempfile.TemporaryFile() as f:
            filt.export_bpf(f)
            f.seek(0)
            return f.read()
    except (OSError, ValueError, RuntimeError):
        return None


@functools.lru_cache(maxsize=1)
def landlock_abi() -> int:
    """The kernel's Landlock ABI version (0 where Landlock is unavailable)."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        abi = libc.syscall(ctypes.c_long(444), None, ctypes.c_long(0), ctypes.c_long(1))
    except (OSError, AttributeError):
        return 0
    return max(int(abi), 0)


def _landlock(libc, ctypes, rules):  # type: ignore[no-untyped-def]  # copied into the prelude
    """Allow only ``rules`` ((path, writable) pairs) on the filesystem; deny TCP; scope signals.

    Landlock ABI bits (linux/landlock.h): filesystem rights 0..15 by ABI version, TCP
    bind/connect from ABI 4, abstract-socket and signal scoping from ABI 6.
    """
    import os
    import stat
    import struct

    def call(nr, *args):  # type: ignore[no-untyped-def]
        res = libc.syscall(ctypes.c_long(nr), *args)
        if res < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"landlock syscall {nr}: {os.strerror(err)}")
        return res

    abi = call(444, None, ctypes.c_long(0), ctypes.c_long(1))
    fs = (1 << 13) - 1
    for version, bit in ((2, 13), (3, 14), (5, 15)):
        if abi >= version:
            fs |= 1 << bit
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    attr = ctypes.create_string_buffer(struct.pack("QQQ", fs, 3, 3)[:size], size)
    ruleset = call(444, attr, ctypes.c_long(size), ctypes.c_long(0))
    read = 1 | 4 | 8  # EXECUTE | READ_FILE | READ_DIR
    file_rights = fs & (1 | 2 | 4 | (1 << 14) | (1 << 15))
    for path, writable in rules:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        access = fs if writable else read
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            access &= file_rights
        rule = ctypes.create_string_buffer(struct.pack("=Qi", access, fd), 12)
        call(445, ctypes.c_long(ruleset), ctypes.c_long(1), rule, ctypes.c_long(0))
        os.close(fd)
    call(446, ctypes.c_long(ruleset), ctypes.c_long(0))
    os.close(ruleset)


def _seccomp(libc, ctypes, bpf):  # type: ignore[no-untyped-def]  # copied into the prelude
    """Install a classic-BPF seccomp filter (PR_SET_SECCOMP, SECCOMP_MODE_FILTER)."""

    class Prog(ctypes.Structure):
        _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))

    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = Prog(len(bpf) // 8, ctypes.cast(buf, ctypes.c_void_p))
    if libc.prctl(22, 2, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")


def _setup(limits, ready_fd, landlock_rules, bpf):  # type: ignore[no-untyped-def]  # prelude
    """Set limits and LSM layers, then tell the supervisor that the program may start."""
    import os
    import resource

    for name, soft, hard in limits:
        resource.setrlimit(getattr(resource, name), (soft, hard))
    if landlock_rules is not None or bpf is not None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if landlock_rules is not None:
            _landlock(libc, ctypes, landlock_rules)
        if bpf is not None:
            _seccomp(libc, ctypes, bpf)
    os.write(ready_fd, b"1")
    os.close(ready_fd)


@functools.lru_cache(maxsize=2)
def _functions_source(with_lsm: bool) -> str:
    functions = (_landlock, _seccomp, _setup) if with_lsm else (_setup,)
    return "\n".join(inspect.getsource(f) for f in functions)


def prelude(
    limits: Sequence[tuple[str, int, int]],
    ready_fd: int,
    landlock_rules: Sequence[tuple[str, bool]] | None,
    bpf: bytes | None,
) -> str:
    """Source of the ``-c`` program that sets everything up and then runs ``main.py``.

    Names the prelude defines are deleted before the program starts, so ``main.py`` sees the
    usual ``__main__`` globals (plus ``__file__``).
    """
    rules = None if landlock_rules is None else [(os.fspath(p), w) for p, w in landlock_rules]
    with_lsm = rules is not None or bpf is not None
    return (
        # The working directory leaves the import path while the prelude imports resource
        # and ctypes, so that no file there can stand in for them.
        "_path0 = __import__('sys').path.pop(0)\n"
        + _functions_source(with_lsm)
        + f"\n_setup({list(limits)!r}, {ready_fd!r}, {rules!r}, {bpf!r})\n"
        + "__import__('sys').path.insert(0, _path0)\n"
        + ("del _landlock, _seccomp, _setup, _path0\n" if with_lsm else "del _setup, _path0\n")
        + f"__file__ = {MAIN!r}\n"
        + f"__import__('sys').argv[:] = [{MAIN!r}]\n"
        + f"exec(compile(open({MAIN!r}, 'rb').read(), {MAIN!r}, 'exec'))\n"
    )
