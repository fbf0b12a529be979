"""The attack suite: hostile programs, each contained, recorded with the right status, and
leaving the host unchanged.

Every test runs on both backends (conftest.py), and the ``sandbox`` fixture checks after each
one that no run directory and no process of a sandbox uid is left. Network tests only ever
talk to a listener of the test's own on 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from trustgrpo.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]


def _py(src: str) -> str:
    return textwrap.dedent(src).strip() + "\n"


def _require(box: Sandbox, *any_of: str) -> None:
    """Skip unless ``box`` has one of the isolation layers ``any_of`` (e.g. not as root)."""
    if not set(any_of) & set(box.isolation):
        pytest.skip(f"needs one of {any_of}; this sandbox has {box.isolation}")


# --------------------------------------------------------------------------- resources


def test_fork_bomb(sandbox: Sandbox) -> None:
    _require(sandbox, "user", "userns")
    code = _py(
        """
        import os, sys, time
        me, n, t0 = os.getpid(), 0, time.time()
        while True:
            try:
                if os.fork() == 0:
                    continue  # every child forks too
                n += 1
            except OSError:
                pass
            if os.getpid() == me and time.time() - t0 > 0.3:
                print(n, flush=True)
                t0 = time.time() + 1000
        """
    )
    t0 = time.monotonic()
    r = sandbox.run(code, timeout_s=1.5, max_processes=32)
    assert r.status == "timeout"
    assert time.monotonic() - t0 < 5.0
    assert r.stdout and 0 < int(r.stdout.split()[0]) < 32  # capped by RLIMIT_NPROC
    assert os.fork  # and the host can still fork: this test process goes on


def test_thread_bomb(sandbox: Sandbox) -> None:
    _require(sandbox, "user", "userns")
    code = _py(
        """
        import threading, time
        n = 0
        try:
            while True:
                threading.Thread(target=time.sleep, args=(5,), daemon=True).start()
                n += 1
        except RuntimeError as e:
            print(n, e)
        """
    )
    r = sandbox.run(code, max_processes=16)
    assert r.status == "ok" and int(r.stdout.split()[0]) < 16
    assert "can't start new thread" in r.stdout


def test_memory_balloon(sandbox: Sandbox) -> None:
    code = _py(
        """
        chunks = []
        while True:
            chunks.append(bytearray(16 * 2**20))
        """
    )
    r = sandbox.run(code, memory_mb=256)
    assert (r.status, r.exit_code) == ("memory", 1)


@pytest.mark.parametrize(
    "code",
    [
        "while True: pass",
        "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nsignal.alarm(1)\n"
        "while True: pass",
        "import signal\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGXCPU, signal.SIGHUP):\n"
        "    signal.signal(s, signal.SIG_IGN)\nwhile True: pass",
        "import time\nwhile True: time.sleep(0.01)",
    ],
    ids=["busy", "sigalrm-ignored", "signals-ignored", "sleeping"],
)
def test_infinite_loops(sandbox: Sandbox, code: str) -> None:
    t0 = time.monotonic()
    r = sandbox.run(code, timeout_s=0.7)
    assert r.status == "timeout"
    assert time.monotonic() - t0 < 4.0


def test_resource_limits_are_in_force(sandbox: Sandbox) -> None:
    """CPU time (soft: SIGXCPU; hard a second later: SIGKILL) also stops busy threads that
    use CPU faster than wall time; the others cap memory, processes, files, descriptors."""
    code = _py(
        """
        import resource as r
        for name in ("CPU", "AS", "NPROC", "FSIZE", "NOFILE", "CORE"):
            print(name, *r.getrlimit(getattr(r, "RLIMIT_" + name)))
        """
    )
    res = sandbox.run(code, timeout_s=2.5, memory_mb=300, max_processes=20)
    assert res.stdout.splitlines() == [
        "CPU 4 5",
        f"AS {300 << 20} {300 << 20}",
        "NPROC 20 20",
        f"FSIZE {16 << 20} {16 << 20}",
        "NOFILE 128 128",
        "CORE 0 0",
    ]
    r = sandbox.run("import os, signal\nos.kill(os.getpid(), signal.SIGXCPU)")
    assert (r.status, r.exit_code) == ("timeout", -signal.SIGXCPU)


@pytest.mark.parametrize(
    ("code", "status", "exit_code"),
    [
        ("import os\nprint('partial', flush=True)\nos._exit(0)", "ok", 0),
        ("import sys\nprint('partial')\nsys.exit(0)", "ok", 0),
        ("import os\nos._exit(7)", "error", 7),
        ("raise SystemExit('bye')", "error", 1),
    ],
)
def test_early_exits(sandbox: Sandbox, code: str, status: str, exit_code: int) -> None:
    r = sandbox.run(code)
    assert (r.status, r.exit_code) == (status, exit_code)


# --------------------------------------------------------------------------- output


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_huge_output(sandbox: Sandbox, stream: str) -> None:
    t0 = time.monotonic()
    r = sandbox.run(f"import sys\nsys.{stream}.write('y' * 10**8)", max_output_bytes=50_000)
    assert (r.status, r.truncated) == ("output_limit", True)
    assert getattr(r, stream) == "y" * 50_000
    assert time.monotonic() - t0 < 4.0


def test_output_from_a_child_is_capped_too(sandbox: Sandbox) -> None:
    code = _py(
        """
        import os, sys
        if os.fork() == 0:
            while True:
                os.write(1, b'z' * 65536)
        os.wait()
        """
    )
    r = sandbox.run(code, max_output_bytes=100_000)
    assert (r.status, len(r.stdout)) == ("output_limit", 100_000)


def test_closed_streams_do_not_escape_the_deadline(sandbox: Sandbox) -> None:
    r = sandbox.run("import os, time\nos.close(1)\nos.close(2)\ntime.sleep(30)", timeout_s=0.7)
    assert r.status == "timeout"


# --------------------------------------------------------------------------- processes


def _spawn(token: str, body: str, *, daemon: bool) -> str:
    """Program text that starts a child running ``body`` (with ``token`` in its command line)
    and returns once the child has reported that it runs; ``daemon``: double fork + setsid."""
    return _py(
        f"""
        import os, sys
        r, w = os.pipe()
        os.set_inheritable(w, True)
        child = ("import os, sys, time\\n"
                 "os.write(int(sys.argv[1]), b'up')\\n" + {body!r})
        argv = [sys.executable, "-c", child, str(w), {token!r}]
        if os.fork() == 0:
            if {daemon!r}:
                os.setsid()
                if os.fork() != 0:
                    os._exit(0)
            os.execv(sys.executable, argv)
        os.close(w)
        print("child", os.read(r, 2).decode(), flush=True)
        """
    )


def test_daemon_cannot_outlive_the_run(
    sandbox: Sandbox, token: str, host_processes_with: Callable[[str], list[str]]
) -> None:
    _require(sandbox, "pidns", "user")
    code = _spawn(token, "time.sleep(60)", daemon=True)
    t0 = time.monotonic()
    r = sandbox.run(code, timeout_s=10)
    assert (r.status, r.stdout) == ("ok", "child up\n")  # the daemon was running
    assert time.monotonic() - t0 < 3.0  # the run ended with its main process
    assert host_processes_with(token) == []


def test_child_sleeping_past_the_deadline(
    sandbox: Sandbox, token: str, host_processes_with: Callable[[str], list[str]]
) -> None:
    code = _spawn(token, "time.sleep(60)", daemon=False) + "os.wait()\n"
    t0 = time.monotonic()
    r = sandbox.run(code, timeout_s=1.0)
    assert (r.status, r.stdout) == ("timeout", "child up\n")
    assert time.monotonic() - t0 < 4.0
    assert host_processes_with(token) == []


def test_child_holding_the_pipes_after_main_exits(
    sandbox: Sandbox, token: str, host_processes_with: Callable[[str], list[str]]
) -> None:
    """The main process exits but a daemon keeps stdout open and writing: the run ends now."""
    _require(sandbox, "pidns", "user")
    body = "while True:\n    print('tick', flush=True)\n    time.sleep(0.05)\n"
    code = _spawn(token, body, daemon=True)
    t0 = time.monotonic()
    r = sandbox.run(code, timeout_s=10)
    assert r.status == "ok" and "child up\n" in r.stdout
    assert time.monotonic() - t0 < 3.0
    assert host_processes_with(token) == []


def test_no_other_process_is_visible_or_killable(sandbox: Sandbox) -> None:
    code = _py(
        f"""
        import os, signal
        try:
            seen = [p for p in os.listdir('/proc') if p.isdigit()]
        except OSError as e:
            seen = e.strerror
        try:
            os.kill({os.getpid()}, signal.SIGKILL)
            killed = "killed the grader"
        except OSError as e:
            killed = e.strerror
        print(seen, killed)
        """
    )
    r = sandbox.run(code)
    assert r.status == "ok" and "killed the grader" not in r.stdout
    assert str(os.getpid()) not in r.stdout.split("]")[0]


# --------------------------------------------------------------------------- files


def test_reading_host_files(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    _require(sandbox, "mountns", "landlock")
    secret = "trustgrpo-parent-secret-6b1f"
    monkeypatch.setenv("TRUSTGRPO_PARENT_SECRET", secret)
    targets = [
        "/etc/shadow",
        "/etc/passwd",
        str(ROOT / "pyproject.toml"),
        str(Path(__file__)),
        f"/proc/{os.getpid()}/environ",
        f"/proc/{os.getppid()}/environ",
        "/proc/1/environ",
        "/proc/self/environ",
        os.path.expanduser("~/.bash_history"),
        sys.prefix + "/pyvenv.cfg",
    ]
    code = _py(
        f"""
        import os
        for path in {targets!r}:
            try:
                with open(path, "rb") as f:
                    print("READ", path, f.read(2000))
            except OSError as e:
                print("denied", path, e.strerror)
        print("ENV", dict(os.environ))
        """
    )
    r = sandbox.run(code)
    assert r.status == "ok"
    assert "READ" not in r.stdout, r.stdout
    assert secret not in r.stdout
    assert sum(line.startswith("denied ") for line in r.stdout.splitlines()) == len(targets)


@pytest.mark.parametrize(
    "where",
    ["/tmp", "/var/tmp", "/dev/shm", "ROOT", "ROOT/src", "HOME", "WORKROOT", "PYLIB"],
)
def test_writing_outside_the_work_dir(
    sandbox: Sandbox, token: str, workroot: Path, where: str
) -> None:
    _require(sandbox, "mountns", "landlock")
    import sysconfig

    directory = {
        "ROOT": str(ROOT),
        "ROOT/src": str(ROOT / "src"),
        "HOME": os.path.expanduser("~"),
        "WORKROOT": str(workroot),
        "PYLIB": sysconfig.get_paths()["purelib"],
    }.get(where, where)
    target = os.path.join(directory, token)
    code = _py(
        f"""
        import os
        for path in [{target!r}, "../{token}", "/proc/self/cwd/../{token}",
                     "/proc/self/root{target}"]:
            try:
                with open(path, "w") as f:
                    f.write("pwned")
                print("wrote", path)
            except OSError as e:
                print("denied", e.strerror)
        """
    )
    r = sandbox.run(code)
    assert r.status == "ok"
    assert not os.path.exists(target)
    assert not any(token in name for name in os.listdir(directory))
    assert not any(token in name for name in os.listdir(workroot))


@pytest.mark.parametrize("name", ["sitecustomize.py", "usercustomize.py", "conftest.py"])
def test_startup_hooks_do_not_reach_the_grader_or_the_next_run(
    sandbox: Sandbox, token: str, name: str
) -> None:
    import sysconfig

    hook = f"open({token!r}, 'w').write('hooked')\nprint('HOOK RAN')\n"
    code = _py(
        f"""
        import sys
        written = []
        for d in ['.'] + [p for p in sys.path if p]:
            try:
                with open(d + '/{name}', 'w') as f:
                    f.write({hook!r})
                written.append(d)
            except OSError:
                pass
        print(written)
        """
    )
    r = sandbox.run(code)
    assert r.status == "ok" and r.stdout.startswith("['.']")  # only its own directory
    again = sandbox.run("import os\nprint(sorted(os.listdir('.')))")
    assert again.stdout == "['main.py']\n" and "HOOK RAN" not in again.stdout
    for d in [*sys.path, sysconfig.get_paths()["purelib"]]:
        if d and os.path.isdir(d):
            assert not (Path(d) / token).exists()
    assert not Path(token).exists()


def test_symlink_in_work_dir_does_not_redirect_cleanup(sandbox: Sandbox, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    code = f"import os\nos.symlink({str(victim)!r}, 'link')\nos.symlink('/', 'root')\n"
    r = sandbox.run(code)
    assert r.status == "ok"
    assert (victim / "keep.txt").read_text() == "precious"


def test_unwritable_work_dir_is_still_removed(sandbox: Sandbox) -> None:
    code = "import os\nos.makedirs('a/b')\nopen('a/b/f', 'w').write('x')\nos.chmod('a', 0)\n"
    code += "os.chmod('.', 0o500)\n"
    assert sandbox.run(code).status == "ok"  # the fixture checks that the directory is gone


# --------------------------------------------------------------------------- network


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP listener of the test's own on 127.0.0.1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.3)
    yield sock
    sock.close()


def test_socket_to_a_local_listener(sandbox: Sandbox, listener: socket.socket) -> None:
    _require(sandbox, "netns", "seccomp")
    port = listener.getsockname()[1]
    code = _py(
        f"""
        import socket
        for family, addr in [(socket.AF_INET, ("127.0.0.1", {port})),
                             (socket.AF_INET6, ("::1", {port}))]:
            try:
                s = socket.socket(family, socket.SOCK_STREAM)
                s.settimeout(0.5)
                s.connect(addr)
                s.sendall(b"escaped")
                print("connected", addr)
            except OSError as e:
                print("blocked", e.strerror)
        try:
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.sendto(b"x", ("127.0.0.1", {port}))
            print("udp sent")
        except OSError as e:
            print("blocked", e.strerror)
        """
    )
    r = sandbox.run(code)
    assert r.status == "ok" and r.stdout.count("blocked") == 3, r.stdout
    with pytest.raises(TimeoutError):
        listener.accept()


def test_network_interfaces(sandbox: Sandbox) -> None:
    _require(sandbox, "netns", "seccomp")
    code = _py(
        """
        import os, socket
        names = set()
        try:
            names |= {name for _, name in socket.if_nameindex()}
        except OSError:
            pass
        for d in ("/sys/class/net",):
            try:
                names |= set(os.listdir(d))
            except OSError:
                pass
        try:
            for line in open("/proc/net/dev").read().splitlines()[2:]:
                names.add(line.split(":")[0].strip())
        except OSError:
            pass
        print(sorted(names))
        """
    )
    r = sandbox.run(code)
    assert r.status == "ok"
    assert set(eval(r.stdout)) <= {"lo"}, r.stdout  # our own printed list


# --------------------------------------------------------------------------- more


def test_no_privilege_escalation_tools(sandbox: Sandbox) -> None:
    code = _py(
        """
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        results = {}
        results["ptrace"] = libc.ptrace(16, 1, 0, 0)  # PTRACE_ATTACH to pid 1
        results["unshare_user"] = libc.unshare(0x10000000)
        results["setuid0"] = libc.setuid(0)
        results["mount"] = libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)
        print(results)
        """
    )
    r = sandbox.run(code)
    assert r.status == "ok"
    assert set(eval(r.stdout).values()) == {-1}, r.stdout


def test_monkey_patching_stays_in_its_run(sandbox: Sandbox) -> None:
    patch = _py(
        """
        import builtins, random, time
        builtins.print = lambda *a, **k: None
        builtins.len = lambda x: 42
        time.time = lambda: 0.0
        random.random = lambda: 0.5
        """
    )
    assert sandbox.run(patch).status == "ok"
    r = sandbox.run("import random, time\nprint(len('ab'), time.time() > 1e9, random.random())")
    out = r.stdout.split()
    assert out[:2] == ["2", "True"] and out[2] != "0.5"


def test_stdin_flood_and_reads_past_the_end(sandbox: Sandbox) -> None:
    data = "x" * 2_000_000
    r = sandbox.run(
        "import sys\nd = sys.stdin.read()\nprint(len(d), sys.stdin.read() == '')", stdin=data
    )
    assert (r.status, r.stdout) == ("ok", "2000000 True\n")
