"""Start a sandboxed program and watch it to the end: capped streams, deadline, cleanup.

The supervisor reads stdout and stderr as they come, keeping at most ``max_output_bytes`` of
each, and kills the run's whole process tree at the first of: the main process exiting, the
deadline, a stream overflowing. Only then is the main process reaped, so its process group
id cannot have been reused when it is signalled.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trustgrpo.errors import SandboxError
from trustgrpo.sandbox import _backends as backends
from trustgrpo.sandbox._prelude import prelude

if TYPE_CHECKING:
    from trustgrpo.sandbox._core import Limits

_GRACE_S = 0.5
"""After the main process exits or is killed, how long to wait for the streams to close."""


@dataclass
class Watch:
    """What the supervisor saw of one run."""

    stdout: bytearray
    stderr: bytearray
    started: bool = False
    timed_out: bool = False
    overflow: bool = False
    truncated: bool = False

    @staticmethod
    def text(data: bytearray) -> str:
        """Decode a captured stream (UTF-8, invalid bytes replaced)."""
        return bytes(data).decode("utf-8", "replace")


def _stdin_fd(data: bytes) -> int:
    if not data:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    fd = os.memfd_create("trustgrpo-stdin", os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def execute(
    plan: backends.Plan, uid: int | None, workdir: str, stdin: bytes, limits: Limits
) -> tuple[Watch, int | None]:
    """Start the program, supervise it to the end, and return what was seen and the exit code."""
    ours: list[int] = []  # descriptors to close in this process once the child has them
    keep: list[int] = []
    try:
        in_fd = _stdin_fd(stdin)
        ours.append(in_fd)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        ready_r, ready_w = os.pipe()
        keep += [out_r, err_r, ready_r]
        ours += [out_w, err_w, ready_w]
        bpf_fd = info_fd = None
        pass_fds = [ready_w]
        if plan.backend == "bwrap":
            info_r, info_fd = os.pipe()
            keep.append(info_r)
            ours.append(info_fd)
            pass_fds.append(info_fd)
        if plan.backend == "bwrap" and plan.bpf is not None:
            bpf_fd, bpf_w = os.pipe()
            os.write(bpf_w, plan.bpf)
            os.close(bpf_w)
            ours.append(bpf_fd)
            pass_fds.append(bpf_fd)
        rules = backends.landlock_rules(plan, workdir)
        bpf = plan.bpf if plan.backend == "process" else None
        src = prelude(limits.rlimits(), ready_w, rules, bpf)
        argv = backends.command(plan, uid, workdir, src, bpf_fd, info_fd)
        user = backends.popen_user(plan, uid)
        try:
            proc = subprocess.Popen(
                argv,
                stdin=in_fd,
                stdout=out_w,
                stderr=err_w,
                pass_fds=pass_fds,
                cwd=workdir,
                env=backends.environment(plan, workdir),
                start_new_session=True,
                user=user,
                group=user,
                extra_groups=None if user is None else [],
            )
        except OSError as e:
            raise SandboxError(f"could not start the sandbox ({argv[0]}): {e}") from e
        for fd in ours:
            os.close(fd)
        ours.clear()
        deadline = time.monotonic() + limits.timeout_s
        killer = _Killer(plan, uid, proc.pid)
        if plan.backend == "bwrap":
            keep.remove(info_r)
            killer.watch_info(info_r)
        try:
            watch = _supervise(proc, out_r, err_r, ready_r, deadline, limits, killer)
        finally:
            killer.finish(proc)
        return watch, proc.returncode
    finally:
        for fd in ours + keep:
            with contextlib.suppress(OSError):
                os.close(fd)


class _Killer:
    """Kills the run's whole process tree, once, before its leader is reaped.

    bubblewrap: SIGKILL to the PID namespace's init (its pid comes from ``--info-fd``), so
    the kernel kills every process in the namespace and bubblewrap exits only once they are
    all gone. Process backend: SIGKILL to the process group, then to everything the run's uid
    still has (daemons that left the group).
    """

    def __init__(self, plan: backends.Plan, uid: int | None, pid: int) -> None:
        self.plan, self.uid, self.pid = plan, uid, pid
        self.done = False
        self.init_pidfd: int | None = None
        self._info: int | None = None
        self._info_data = b""

    def watch_info(self, info_fd: int) -> None:
        """Remember the pipe on which bubblewrap reports the namespace init's pid."""
        os.set_blocking(info_fd, False)
        self._info = info_fd

    def _pin_init(self) -> None:
        """Read bubblewrap's ``{"child-pid": N, ...}`` (written at start-up, so already in the
        pipe) and pin that process with a pidfd. Only needed to kill a run early: read then,
        not on every run (every wake-up costs time on a busy machine)."""
        if self._info is None:
            return
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self._info, 4096):
                self._info_data += chunk
        match = re.search(rb'"child-pid":\s*(\d+)', self._info_data)
        if match:
            with contextlib.suppress(OSError):
                self.init_pidfd = os.pidfd_open(int(match.group(1)))

    def __call__(self, *, exited: bool = False) -> None:
        """Kill everything; ``exited``: the leader has exited on its own (with bubblewrap,
        that means the namespace is already empty)."""
        if self.done:
            return
        self.done = True
        if self.plan.backend == "bwrap" and not exited:
            self._pin_init()
        if self.init_pidfd is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self.init_pidfd, signal.SIGKILL)
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        if self.uid is not None and self.plan.backend == "process":
            backends.sweep(self.plan, self.uid)

    def finish(self, proc: subprocess.Popen[bytes]) -> None:
        """Make sure everything is dead, then reap the leader and release descriptors."""
        self()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired as e:
                raise SandboxError(f"sandbox process {proc.pid} did not die after SIGKILL") from e
        finally:
            for fd in (self.init_pidfd, self._info):
                if fd is not None:
                    os.close(fd)
            self.init_pidfd = self._info = None


def _supervise(
    proc: subprocess.Popen[bytes],
    out_r: int,
    err_r: int,
    ready_r: int,
    deadline: float,
    limits: Limits,
    kill: _Killer,
) -> Watch:
    """Read both streams with caps until they close, killing the tree at the first of: the
    main process exiting, the deadline, an overflowing stream."""
    watch = Watch(bytearray(), bytearray())
    buffers = {out_r: watch.stdout, err_r: watch.stderr}
    cap = limits.max_output_bytes
    pidfd = os.pidfd_open(proc.pid)
    os.set_blocking(ready_r, False)
    sel = selectors.DefaultSelector()
    try:
        for fd in (out_r, err_r, pidfd):
            sel.register(fd, selectors.EVENT_READ)
        streams = {out_r, err_r}
        running = True
        stop_at = deadline
        while streams or running:
            left = stop_at - time.monotonic()
            if left <= 0:
                if stop_at != deadline:  # the grace period after a kill is over
                    break
                watch.timed_out = True
                kill()
                stop_at = time.monotonic() + _GRACE_S
                continue
            for key, _ in sel.select(left):
                fd = int(key.fd)
                if fd == pidfd:
                    sel.unregister(pidfd)
                    running = False
                    kill(exited=True)
                    stop_at = min(stop_at, time.monotonic() + _GRACE_S)
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    sel.unregister(fd)
                    streams.discard(fd)
                    continue
                buf = buffers[fd]
                room = cap - len(buf)
                buf += chunk[: max(room, 0)]
                if len(chunk) > room and not watch.overflow:
                    watch.overflow = watch.truncated = True
                    kill()
                    for other in list(streams):
                        sel.unregister(other)
                    streams.clear()
                    stop_at = min(stop_at, time.monotonic() + _GRACE_S)
        with contextlib.suppress(OSError):  # the prelude's byte waits in the pipe
            watch.started = bool(os.read(ready_r, 1))
    finally:
        sel.close()
        os.close(pidfd)
    return watch
