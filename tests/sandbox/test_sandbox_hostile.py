"""Hostile code against the Docker sandbox: each case is contained and reported plainly.

Every test checks three things: what the model is told, that the host is unaffected,
and that the session carries on (with its state, or restarted with the loss said).
"""

from __future__ import annotations

import os
import socket

import pytest
from harmonygraph.sandbox import DockerSandbox, SandboxSession
from sandbox_testkit import SWALLOW_INTERRUPTS, container_of, sandbox_config

pytestmark = pytest.mark.docker


def _process_count(session: SandboxSession) -> int:
    r = session.execute_sync("import os\nlen([p for p in os.listdir('/proc') if p.isdigit()])")
    assert r.status == "ok", r.render()
    return int(r.value or "0")


def test_infinite_loop_is_interrupted_and_state_kept(session: SandboxSession) -> None:
    session.execute_sync("kept = 'yes'")
    r = session.execute_sync("while True:\n    pass")
    assert r.status == "timeout"
    assert not r.state_lost
    assert "timed out after 3 s" in r.render() and "kept" in r.render()
    assert session.execute_sync("kept").value == "'yes'"


def test_loop_that_swallows_interrupts_restarts_the_session(session: SandboxSession) -> None:
    session.execute_sync("lost = 1")
    r = session.execute_sync(SWALLOW_INTERRUPTS)
    assert r.status == "timeout" and r.restarted and r.state_lost
    assert "the session was restarted, state lost" in r.render()
    after = session.execute_sync("lost")
    assert after.status == "error" and after.error is not None
    assert after.error.ename == "NameError"
    assert session.restarts == 1


def test_fork_bomb_is_capped_and_cleaned_up(session: SandboxSession) -> None:
    code = (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )
    r = session.execute_sync(code)
    assert r.status == "timeout"
    # The pids limit held the bomb; the interrupt killed every stray process, so the
    # sandbox is back to the init process, the kernel and the counting child itself.
    assert _process_count(session) <= 4
    assert session.execute_sync("print(1)").stdout == "1\n"


def test_plain_fork_bomb_ends_in_an_error(session: SandboxSession) -> None:
    r = session.execute_sync("import os\nwhile True:\n    os.fork()")
    assert r.status in ("error", "timeout")
    if r.status == "error":
        assert r.error is not None and "BlockingIOError" in r.error.ename + r.error.traceback
    assert session.execute_sync("2 + 2").value == "4"


def test_background_process_left_running_is_stopped_and_said(session: SandboxSession) -> None:
    """A cell that finishes but leaves a busy child behind (here: a CPU spinner)."""
    before = _process_count(session)
    session.execute_sync("kept = 1")
    r = session.execute_sync(
        "import subprocess, sys\n"
        "spinner = subprocess.Popen([sys.executable, '-c', 'while True: pass'])\n"
        "print('started', spinner.pid > 0)"
    )
    assert r.status == "ok" and r.stdout.strip() == "started True"
    assert "Stopped 1 background process(es)" in r.render()
    assert _process_count(session) == before  # nothing left spinning between calls
    assert session.execute_sync("kept").value == "1"  # the session itself carries on


def test_a_multiprocessing_pool_survives_between_cells(session: SandboxSession) -> None:
    """Workers the user keeps for the next cell are not strays."""
    r = session.execute_sync("import multiprocessing as mp\npool = mp.Pool(2)\npool.map(abs, [-1])")
    assert r.status == "ok" and r.value == "[1]" and "Stopped" not in r.render()
    r = session.execute_sync("pool.map(abs, [-3, -4])")
    assert r.status == "ok" and r.value == "[3, 4]"
    session.execute_sync("pool.terminate()")


def test_memory_bomb_kills_only_the_kernel(session: SandboxSession) -> None:
    session.execute_sync("before = 1")
    # A generous timeout: filling memory up to the limit takes a moment on a busy machine.
    r = session.execute_sync("hog = b'x' * (2 * 1024**3)", timeout=60)
    # Either Python refuses the allocation, or the cgroup's OOM killer ends the kernel.
    assert r.status in ("killed", "error"), r.render()
    if r.status == "killed":
        assert r.restarted and r.state_lost
        assert "out of memory" in r.render()
    else:
        assert r.error is not None and r.error.ename == "MemoryError"
    assert session.execute_sync("print('alive')").stdout == "alive\n"


def test_filling_the_disk_hits_the_quota(session: SandboxSession) -> None:
    code = (
        "chunk = b'0' * 1024 * 1024\n"
        "with open('/mnt/data/fill.bin', 'wb') as fh:\n"
        "    while True:\n"
        "        fh.write(chunk)\n"
    )
    r = session.execute_sync(code)
    assert r.status == "error"
    assert "No space left on device" in r.render()
    size = session.execute_sync("import os\nos.path.getsize('/mnt/data/fill.bin')")
    assert int(size.value or 0) <= sandbox_config().disk_mb * 1024 * 1024
    for target in ("/usr/evil.txt", "/etc/passwd"):
        w = session.execute_sync(f"open({target!r}, 'a').write('x')")
        assert w.status == "error"
        assert w.error is not None and w.error.ename in ("PermissionError", "OSError")
    session.execute_sync("import os\nos.remove('/mnt/data/fill.bin')")
    assert session.execute_sync("open('/mnt/data/ok.txt', 'w').write('ok')").value == "2"


def test_host_environment_and_files_are_invisible(session: SandboxSession) -> None:
    os.environ["HG_SANDBOX_TEST_SECRET"] = "s3cr3t-value"
    try:
        r = session.execute_sync("import os\nsorted(os.environ)")
        assert "HG_SANDBOX_TEST_SECRET" not in (r.value or "")
        r = session.execute_sync("import os\n's3cr3t-value' in str(dict(os.environ))")
        assert r.value == "False"
    finally:
        del os.environ["HG_SANDBOX_TEST_SECRET"]
    host_file = os.path.abspath(__file__)
    r = session.execute_sync(f"open({host_file!r}).read()")
    assert r.status == "error" and r.error is not None
    assert r.error.ename == "FileNotFoundError"
    r = session.execute_sync("import os\nos.path.exists('/var/run/docker.sock')")
    assert r.value == "False"


def test_network_is_unreachable(session: SandboxSession) -> None:
    r = session.execute_sync("import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)")
    assert r.status == "error" and r.error is not None
    assert r.error.ename == "OSError" and "unreachable" in r.error.evalue.lower()
    r = session.execute_sync("import socket\nsocket.getaddrinfo('example.com', 80)")
    assert r.status == "error"
    r = session.execute_sync("import socket\nsorted(socket.if_nameindex())")
    assert r.value == "[(1, 'lo')]"


def test_killing_the_kernel_restarts_cleanly(session: SandboxSession) -> None:
    session.execute_sync("gone = True")
    r = session.execute_sync("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    assert r.status == "killed" and r.restarted and r.state_lost
    assert "killed by SIGKILL" in r.render() and "out of memory:" not in r.render()
    assert "state" in r.render() or "lost" in r.render()
    assert session.execute_sync("'gone' in globals()").value == "False"
    r = session.execute_sync("import os\nos._exit(0)")
    assert r.status == "killed"
    assert session.execute_sync("print('back')").stdout == "back\n"
    assert session.restarts == 2


def test_printing_gigabytes_is_stopped(session: SandboxSession) -> None:
    session.execute_sync("stay = 1")
    r = session.execute_sync("line = 'x' * 1_000_000\nwhile True:\n    print(line)")
    assert r.status == "output_limit", r.render()
    assert r.stdout_truncated
    assert len(r.stdout) <= sandbox_config().max_output_chars
    assert "Output limit exceeded" in r.render()
    assert session.execute_sync("stay").value == "1"
    # Output at the file-descriptor level (C code, subprocesses) is capped as well.
    r = session.execute_sync("import os\nfor _ in range(64):\n    os.write(1, b'y' * 1_000_000)")
    assert len(r.stdout) <= sandbox_config().max_output_chars
    assert r.stdout_truncated


def test_kernel_cannot_reach_the_engine_or_escalate(session: SandboxSession) -> None:
    r = session.execute_sync("import os\nos.setuid(0)")
    assert r.status == "error" and r.error is not None and r.error.ename == "PermissionError"
    c = container_of(session)
    c.reload()
    assert c.attrs["HostConfig"]["Privileged"] is False
    assert socket.gethostname() != session.execute_sync("import socket\nsocket.gethostname()").value


def test_hostile_sessions_leave_no_containers(docker_sandbox: DockerSandbox) -> None:
    from harmonygraph.sandbox.docker_backend import LABEL

    s = docker_sandbox.start_session_sync()
    s.execute_sync("import os\nos._exit(1)")
    s.execute_sync(SWALLOW_INTERRUPTS)
    mine = {container_of(s).id}
    s.close_sync()
    client = docker_sandbox.client()
    live = {c.id for c in client.containers.list(all=True, filters={"label": LABEL})}
    assert not (mine & live)
