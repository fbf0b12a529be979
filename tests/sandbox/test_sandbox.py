"""The sandbox's contract: statuses, limits, fresh state per run, isolation reporting, pool.

Everything runs real programs in the real sandbox, on both backends (see conftest.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from trustgrpo.errors import SandboxError
from trustgrpo.sandbox import (
    Limits,
    Sandbox,
    SandboxPool,
    SandboxResult,
    isolation_level,
    run,
)
from trustgrpo.sandbox._backends import UID_BASE, UID_SPAN, WORKDIR

ROOT = Path(__file__).resolve().parents[2]


def _py(src: str) -> str:
    return textwrap.dedent(src).strip() + "\n"


# --------------------------------------------------------------------------- statuses


def test_hello_world(sandbox: Sandbox) -> None:
    r = sandbox.run("print('hello', 6 * 7)")
    assert (r.status, r.exit_code, r.stdout, r.stderr, r.truncated) == (
        "ok",
        0,
        "hello 42\n",
        "",
        False,
    )
    assert r.isolation == sandbox.isolation
    assert 0 < r.wall_ms < 5000


def test_stdin_and_files_are_passed(sandbox: Sandbox) -> None:
    code = _py(
        """
        import helper
        print(helper.twice(int(input())), open("data/x.txt").read())
        """
    )
    files = {"helper.py": "def twice(n):\n    return 2 * n\n", "data/x.txt": "été"}
    r = sandbox.run(code, stdin="21\n", files=files)
    assert (r.status, r.stdout) == ("ok", "42 été\n")


def test_files_cannot_replace_the_prelude_modules(sandbox: Sandbox) -> None:
    """The prelude imports resource (and ctypes) with the work dir off the import path."""
    shadow = "import sys\nprint('SHADOWED')\nsys.exit(9)\n"
    files = {"resource.py": shadow, "ctypes/__init__.py": shadow}
    r = sandbox.run("import sys\nprint(sys.path[0] == '')", files=files)
    assert (r.status, r.stdout) == ("ok", "True\n")


@pytest.mark.parametrize("name", ["/etc/x", "../x", "a/../../x", "", "main.py"])
def test_bad_file_names_are_refused(sandbox: Sandbox, name: str) -> None:
    with pytest.raises(ValueError, match="files"):
        sandbox.run("pass", files={name: "x"})


def test_nonzero_exit_and_exceptions_are_errors(sandbox: Sandbox) -> None:
    r = sandbox.run("import sys\nsys.exit(3)")
    assert (r.status, r.exit_code) == ("error", 3)
    r = sandbox.run("raise ValueError('boom')")
    assert (r.status, r.exit_code) == ("error", 1)
    assert "ValueError: boom" in r.stderr
    r = sandbox.run("def f(:\n")
    assert r.status == "error" and "SyntaxError" in r.stderr


def test_death_by_signal_is_killed(sandbox: Sandbox) -> None:
    r = sandbox.run("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)")
    assert (r.status, r.exit_code) == ("killed", -11)


def test_timeout(sandbox: Sandbox) -> None:
    t0 = time.monotonic()
    r = sandbox.run("print('started', flush=True)\nwhile True: pass", timeout_s=0.5)
    assert (r.status, r.stdout) == ("timeout", "started\n")
    assert time.monotonic() - t0 < 3.0


def test_memory_limit(sandbox: Sandbox) -> None:
    r = sandbox.run("x = bytearray(400 * 2**20)\nprint('allocated')", memory_mb=128)
    assert r.status == "memory" and r.stdout == "", r
    r = sandbox.run("x = bytearray(50 * 2**20)\nprint('allocated')", memory_mb=128)
    assert (r.status, r.stdout) == ("ok", "allocated\n")


def test_output_is_capped_while_read(sandbox: Sandbox) -> None:
    t0 = time.monotonic()
    r = sandbox.run("import sys\nwhile True: sys.stdout.write('x' * 4096)", max_output_bytes=10_000)
    assert (r.status, r.truncated, r.stdout) == ("output_limit", True, "x" * 10_000)
    assert time.monotonic() - t0 < 3.0  # stopped at the cap, not at the deadline


def test_file_size_limit(sandbox: Sandbox) -> None:
    code = _py(
        """
        import os
        try:
            open('big', 'wb').write(b'x' * (20 * 2**20))
        except OSError as e:
            print(e.strerror, os.path.getsize('big') // 2**20)
        """
    )
    r = sandbox.run_with(code, stdin="", files={}, limits=Limits(max_file_mb=8))
    assert (r.status, r.stdout) == ("ok", "File too large 8\n")  # Python ignores SIGXFSZ


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        Limits(timeout_s=0)
    with pytest.raises(ValueError, match="memory_mb"):
        Limits(memory_mb=1)
    with pytest.raises(ValueError, match="max_processes"):
        Limits(max_processes=True)


# --------------------------------------------------------------------------- fresh state


def test_each_run_has_a_fresh_directory(sandbox: Sandbox) -> None:
    code = _py(
        """
        import os
        print(sorted(os.listdir('.')))
        open('left_behind', 'w').write('x')
        """
    )
    first, second = sandbox.run(code), sandbox.run(code)
    assert first.stdout == second.stdout == "['main.py']\n"


def test_environment_is_cleared(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTGRPO_TEST_SECRET", "s3cret")
    r = sandbox.run("import os\nprint(sorted(os.environ))\nprint(os.environ.get('HOME'))")
    keys, home = r.stdout.splitlines()
    assert "TRUSTGRPO_TEST_SECRET" not in keys and "s3cret" not in r.stdout
    assert set(eval(keys)) - {"PWD"} == set(  # bubblewrap sets PWD for --chdir
        [
            "HOME",
            "LANG",
            "LC_ALL",
            "PATH",
            "PYTHONDONTWRITEBYTECODE",
            "PYTHONHASHSEED",
            "PYTHONIOENCODING",
            "PYTHONUTF8",
            "TMPDIR",
        ]
    )
    if sandbox.backend == "bwrap":
        assert home == WORKDIR


def test_hashing_is_deterministic(sandbox: Sandbox) -> None:
    code = "print(hash('abc'), list({'x', 'y', 'z', 'w'}))"
    assert sandbox.run(code).stdout == sandbox.run(code).stdout


def test_no_descriptors_beyond_stdio(sandbox: Sandbox) -> None:
    code = _py(
        """
        import os
        open_fds = []
        for fd in range(3, 1024):
            try:
                os.fstat(fd)
                open_fds.append(fd)
            except OSError:
                pass
        print(open_fds)
        """
    )
    assert sandbox.run(code).stdout == "[]\n"


def test_unprivileged_and_limits_cannot_be_raised(sandbox: Sandbox) -> None:
    code = _py(
        """
        import os, resource
        print(os.getuid() != 0, os.geteuid() != 0)
        for res in (resource.RLIMIT_NPROC, resource.RLIMIT_AS, resource.RLIMIT_CPU):
            soft, hard = resource.getrlimit(res)
            try:
                resource.setrlimit(res, (hard + 1000, hard + 1000))
                print("raised")
            except (ValueError, OSError):
                print("refused")
        try:
            os.setuid(0)
            print("became root")
        except PermissionError:
            print("setuid refused")
        """
    )
    r = sandbox.run(code)
    if "user" in sandbox.isolation or "userns" in sandbox.isolation:
        assert r.stdout.splitlines()[0] == "True True"
    assert r.stdout.splitlines()[1:] == ["refused"] * 3 + ["setuid refused"]


# --------------------------------------------------------------------------- isolation


@pytest.mark.parametrize(
    ("layers", "level"),
    [
        (("process", "user", "rlimit", "netns", "mountns"), "strong"),
        (("process", "userns", "rlimit", "seccomp", "landlock"), "strong"),
        (("process", "user", "rlimit"), "standard"),
        (("process", "user", "rlimit", "seccomp"), "standard"),
        (("process", "rlimit", "seccomp", "landlock"), "weak"),
        (("user", "rlimit", "netns", "mountns"), "weak"),
        ((), "weak"),
    ],
)
def test_isolation_level(layers: tuple[str, ...], level: str) -> None:
    assert isolation_level(layers) == level


def test_isolation_here_as_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("checks the layers a root process gets")
    process = Sandbox(backend="process")
    expected = {"process", "user", "rlimit"}
    assert expected <= set(process.isolation) and "mountns" not in process.isolation
    assert process.level in ("standard", "strong")
    if shutil.which("bwrap"):
        box = Sandbox(backend="auto")
        if box.backend == "bwrap":
            assert {"pidns", "netns", "mountns"} | expected <= set(box.isolation)
            assert box.level == "strong" and box.fallback_reason is None


def _fake_bwrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Put a bubblewrap that fails like one without user namespaces first on PATH."""
    fake = tmp_path / "bin" / "bwrap"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")


def test_auto_falls_back_when_bwrap_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_bwrap(tmp_path, monkeypatch)
    box = Sandbox(backend="auto")
    assert box.backend == "process"
    assert box.fallback_reason and "No permissions to create new namespace" in box.fallback_reason
    assert "mountns" not in box.isolation and "pidns" not in box.isolation
    r = box.run("print('fallback works')")
    assert (r.status, r.stdout, r.isolation) == ("ok", "fallback works\n", box.isolation)
    with pytest.raises(SandboxError, match="No permissions"):
        Sandbox(backend="bwrap")


def test_auto_without_bwrap_uses_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("setpriv", "kill"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))
    box = Sandbox(backend="auto")
    assert box.backend == "process"
    assert box.fallback_reason and "not installed" in box.fallback_reason
    with pytest.raises(SandboxError, match="apt-get install -y bubblewrap"):
        Sandbox(backend="bwrap")
    assert box.run("print(1)").stdout == "1\n"


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match="backend"):
        Sandbox(backend="docker")


_UNPRIVILEGED = """
import sys
from trustgrpo.errors import ConfigError
from trustgrpo.sandbox import Sandbox
from trustgrpo.verifiers.base import Sample
from trustgrpo.verifiers.code import CodeVerifier
backend = sys.argv[1]
box = Sandbox(backend=backend)
r = box.run("import os; print(os.getuid())")
print(box.backend, ",".join(box.isolation), box.level, r.status, r.stdout.strip())
try:
    CodeVerifier(backend=backend)
    print("built")
except ConfigError as e:
    print("refused:", e)
v = CodeVerifier(backend=backend, allow_weak_isolation=True)
s = Sample("p", 0, 0, "", "```python\\nprint(int(input()) + 1)\\n```",
           metadata={"tests": [{"input": "1", "output": "2"}]})
attach = ("```python\\nimport ctypes, os\\n"
          "def attach():\\n    return ctypes.CDLL(None).ptrace(16, os.getppid(), 0, 0)\\n```")
t = Sample("p", 0, 1, "", attach, metadata={"tests": [{"call": "attach()", "expected": -1}]})
print(",".join(o.status for o in v.score([s, t])))
"""


@pytest.mark.parametrize("backend", ["process", "bwrap"])
def test_unprivileged_user(backend: str) -> None:
    """Started by an ordinary user: no per-run uid, so the process backend is weak."""
    system_python = "/usr/bin/python3"
    if os.geteuid() != 0 or not os.path.exists(system_python) or not shutil.which("setpriv"):
        pytest.skip("needs root (to become an ordinary user), setpriv and /usr/bin/python3")
    if backend == "bwrap" and not shutil.which("bwrap"):
        pytest.skip("bubblewrap is not installed")
    tmp_path = Path(tempfile.mkdtemp(prefix="trustgrpo-test-user-"))
    try:
        _check_as_ordinary_user(backend, system_python, tmp_path)
    finally:
        shutil.rmtree(tmp_path)


def _check_as_ordinary_user(backend: str, system_python: str, tmp_path: Path) -> None:
    # A copy of the modules involved (the package __init__ pulls in torch, which the system
    # python lacks), readable by the ordinary user.
    pkg = tmp_path / "trustgrpo"
    src = ROOT / "src" / "trustgrpo"
    shutil.copytree(src / "sandbox", pkg / "sandbox")
    (pkg / "verifiers").mkdir()
    for rel in (
        "errors.py",
        "_tables.py",
        "verifiers/base.py",
        "verifiers/params.py",
        "verifiers/code.py",
    ):
        shutil.copy(src / rel, pkg / rel)
    (pkg / "__init__.py").write_text("")
    (pkg / "verifiers" / "__init__.py").write_text("")
    (tmp_path / "check.py").write_text(_UNPRIVILEGED)
    for p in [tmp_path, *tmp_path.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    for parent in tmp_path.parents:
        if not os.stat(parent).st_mode & 0o001:
            pytest.skip(f"{parent} is not traversable by other users")
    uid = 1_234_567
    out = subprocess.run(
        [
            "setpriv",
            f"--reuid={uid}",
            f"--regid={uid}",
            "--clear-groups",
            "--",
            system_python,
            str(tmp_path / "check.py"),
            backend,
        ],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path), "TMPDIR": str(tmp_path)},
        cwd=tmp_path,
        timeout=60,
    )
    if backend == "bwrap" and "bwrap" in out.stdout + out.stderr and out.returncode != 0:
        pytest.skip(f"unprivileged bubblewrap does not work here: {out.stderr[-300:]}")
    assert out.returncode == 0, out.stderr
    header, verdict, status = out.stdout.splitlines()
    name, layers, level, run_status, run_uid = header.split()
    assert (run_status, status) == ("ok", "correct,correct")  # ptrace on the harness refused
    assert "user" not in layers.split(",")
    if backend == "process":
        assert (name, level) == ("process", "weak")
        assert verdict.startswith("refused:") and "allow_weak_isolation" in verdict
    else:
        assert name == "bwrap" and "userns" in layers.split(",") and level == "strong"
        assert verdict == "built"
    assert not UID_BASE <= int(run_uid) < UID_BASE + UID_SPAN


# --------------------------------------------------------------------------- pool


def test_pool_runs_in_parallel_each_in_a_fresh_sandbox(sandbox: Sandbox) -> None:
    code = _py(
        """
        import os, time
        print(sorted(os.listdir('.')))
        open('mine', 'w').write('x')
        time.sleep(0.4)
        """
    )
    with SandboxPool(2, sandbox=sandbox) as pool:
        assert pool.workers == 2 and pool.isolation == sandbox.isolation
        t0 = time.monotonic()
        results = pool.map([code] * 4)
        elapsed = time.monotonic() - t0
    assert [r.stdout for r in results] == ["['main.py']\n"] * 4
    assert elapsed < 1.5  # 4 x 0.4 s on 2 workers: about 0.8 s, sequential would be 1.6 s


def test_pool_keeps_order_and_default_workers(sandbox: Sandbox) -> None:
    with SandboxPool(sandbox=sandbox) as pool:
        assert pool.workers == (os.cpu_count() or 1)
        futures = [pool.submit(f"print({i})") for i in range(6)]
        assert [f.result().stdout for f in futures] == [f"{i}\n" for i in range(6)]
    with pytest.raises(ValueError, match="workers"):
        SandboxPool(-1, sandbox=sandbox)


def test_module_level_run() -> None:
    r = run("import sys; print(sys.argv)", timeout_s=10)
    assert isinstance(r, SandboxResult) and (r.status, r.stdout) == ("ok", "['main.py']\n")
    assert sys.modules["trustgrpo.sandbox"].default_sandbox() is not None
