"""LocalSandbox: the same interface without Docker (weaker; opt-in)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from harmonygraph.sandbox import LocalSandbox, SandboxConfig, get_sandbox
from sandbox_testkit import SWALLOW_INTERRUPTS

HAS_BWRAP = shutil.which("bwrap") is not None


def local_config(**overrides: object) -> SandboxConfig:
    values: dict[str, object] = {
        "backend": "local",
        "timeout_s": 3.0,
        "interrupt_grace_s": 1.5,
        "memory_mb": 512,
        "disk_mb": 8,
        "preload": [],
        "max_output_chars": 5_000,
        "hard_output_chars": 2_000_000,
    }
    values.update(overrides)
    return SandboxConfig.model_validate(values)


@pytest.fixture(params=[True, False] if HAS_BWRAP else [False], ids=lambda b: f"bwrap={b}")
def local(request: pytest.FixtureRequest, tmp_path: Path) -> LocalSandbox:
    return LocalSandbox(local_config(), session_dir=tmp_path / "data", use_bwrap=request.param)


def test_factory_picks_local_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARMONYGRAPH_SANDBOX", "local")
    assert isinstance(get_sandbox(), LocalSandbox)
    assert "weak" in get_sandbox().isolation
    monkeypatch.setenv("HARMONYGRAPH_SANDBOX", "docker")
    assert get_sandbox().kind == "docker"


def test_isolation_says_plainly_what_is_missing(tmp_path: Path) -> None:
    import os

    bare = LocalSandbox(local_config(), session_dir=tmp_path / "d", use_bwrap=False)
    if os.geteuid() == 0:  # root ignores RLIMIT_NPROC: the doctor says to install bwrap
        assert bare.isolation == "weak (rlimits only; as root no process cap: install bubblewrap)"
    else:
        assert bare.isolation == "weak (rlimits only)"
    if HAS_BWRAP:
        boxed = LocalSandbox(local_config(), session_dir=tmp_path / "e", use_bwrap=True)
        assert boxed.isolation == "weak (bwrap namespaces + rlimits)"


def test_state_files_and_value(local: LocalSandbox, tmp_path: Path) -> None:
    with local.start_session_sync() as s:
        assert s.execute_sync("import math\nx = 3").ok
        r = s.execute_sync("open('out.txt', 'w').write('abc')\nprint('p')\nmath.factorial(x)")
        assert (r.stdout, r.value) == ("p\n", "6")
        assert [f.path for f in r.files] == ["out.txt"]
        assert s.read_file_sync("out.txt") == b"abc"
        # The session directory is the sandbox's /mnt/data.
        assert (tmp_path / "data" / "out.txt").read_text() == "abc"


def test_timeout_interrupts_and_keeps_state(local: LocalSandbox) -> None:
    with local.start_session_sync() as s:
        s.execute_sync("kept = 1")
        r = s.execute_sync("while True:\n    pass")
        assert r.status == "timeout" and not r.state_lost
        assert s.execute_sync("kept").value == "1"
        r = s.execute_sync(SWALLOW_INTERRUPTS)
        assert r.status == "timeout" and r.state_lost
        assert s.execute_sync("print('fresh')").stdout == "fresh\n"


def test_memory_bomb_is_a_memory_error(local: LocalSandbox) -> None:
    with local.start_session_sync() as s:
        r = s.execute_sync("hog = b'x' * (8 * 1024**3)", timeout=30)
        assert r.status == "error" and r.error is not None and r.error.ename == "MemoryError"
        assert s.execute_sync("1").value == "1"


def test_host_environment_is_cleared(local: LocalSandbox) -> None:
    os.environ["HG_LOCAL_SECRET"] = "hidden"
    try:
        with local.start_session_sync() as s:
            r = s.execute_sync("import os\n'HG_LOCAL_SECRET' in os.environ")
            assert r.value == "False"
    finally:
        del os.environ["HG_LOCAL_SECRET"]


def test_file_size_limit(local: LocalSandbox) -> None:
    with local.start_session_sync() as s:
        r = s.execute_sync("open('big.bin', 'wb').write(b'0' * (64 * 1024 * 1024))")
        assert r.status == "error" and r.error is not None
        assert "File too large" in r.error.evalue or r.error.ename == "OSError"


def test_kernel_death_restarts(local: LocalSandbox) -> None:
    with local.start_session_sync() as s:
        r = s.execute_sync("import os\nos._exit(5)")
        assert r.status == "killed" and r.state_lost
        assert s.execute_sync("2 * 3").value == "6"


@pytest.mark.skipif(not HAS_BWRAP, reason="bwrap is not installed")
def test_bwrap_hides_host_files_and_network(tmp_path: Path) -> None:
    sb = LocalSandbox(local_config(), use_bwrap=True)
    with sb.start_session_sync() as s:
        r = s.execute_sync(f"open({os.path.abspath(__file__)!r}).read()")
        assert r.error is not None and r.error.ename == "FileNotFoundError"
        r = s.execute_sync("import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)")
        assert r.error is not None and "unreachable" in r.error.evalue.lower()
        r = s.execute_sync("import os\nos.getcwd()")
        assert r.value == "'/mnt/data'"


def test_background_process_is_stopped_under_bwrap(tmp_path: Path) -> None:
    """In bwrap's own PID namespace the kernel can see and stop what a cell left running."""
    if not HAS_BWRAP:
        from tests.ci import unavailable

        unavailable("bwrap is not installed (.ci/setup installs bubblewrap)")
    sandbox = LocalSandbox(local_config(), session_dir=tmp_path / "data", use_bwrap=True)
    session = sandbox.session_for(sandbox.spawn_kernel())
    try:
        r = session.execute_sync(
            "import subprocess, sys\n"
            "subprocess.Popen([sys.executable, '-c', 'while True: pass'])\n"
            "print('started')"
        )
        assert r.status == "ok" and "Stopped 1 background process(es)" in r.render()
        left = session.execute_sync(
            "import os\nmine = ('1', str(os.getpid()), str(os.getppid()))  # init, us, the supervisor\n"
            "len([p for p in os.listdir('/proc') if p.isdigit() and p not in mine])"
        )
        assert left.value == "0"
    finally:
        session.close_sync()
