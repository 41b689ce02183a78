"""Statefulness, results, artifacts, isolation settings and clean-up on a real engine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from harmonygraph.sandbox import DockerSandbox, SandboxClosedError, SandboxSession
from harmonygraph.sandbox.docker_backend import LABEL as LABEL_DOCKER
from sandbox_testkit import container_of, sandbox_config

pytestmark = pytest.mark.docker


def test_variables_imports_and_files_persist(shared_session: SandboxSession) -> None:
    r1 = shared_session.execute_sync("import math\nx = 20\nopen('notes.txt', 'w').write('hi')")
    assert r1.status == "ok", r1.render()
    r2 = shared_session.execute_sync("y = math.sqrt(x + 5)\nprint(open('notes.txt').read())\ny")
    assert r2.status == "ok", r2.render()
    assert r2.stdout == "hi\n"
    assert r2.value == "5.0"


def test_stdout_stderr_value_and_traceback(shared_session: SandboxSession) -> None:
    r = shared_session.execute_sync(
        "import sys\nprint('out')\nprint('err', file=sys.stderr)\n{'a': [1, 2]}"
    )
    assert (r.stdout, r.stderr, r.value) == ("out\n", "err\n", "{'a': [1, 2]}")
    r = shared_session.execute_sync("def f():\n    return 1 / 0\nf()")
    assert r.status == "error"
    assert r.error is not None and r.error.ename == "ZeroDivisionError"
    assert 'File "<cell-' in r.error.traceback and "return 1 / 0" in r.error.traceback
    assert "harmonygraph-kernel" not in r.error.traceback
    assert "ZeroDivisionError: division by zero" in r.render()


def test_syntax_error_and_system_exit_keep_the_session(shared_session: SandboxSession) -> None:
    r = shared_session.execute_sync("def broken(:\n    pass")
    assert r.status == "error" and r.error is not None and r.error.ename == "SyntaxError"
    r = shared_session.execute_sync("import sys\nkeep = 7\nsys.exit(3)")
    assert r.status == "error" and r.error is not None and r.error.ename == "SystemExit"
    assert shared_session.execute_sync("keep").value == "7"


def test_subprocess_output_is_captured(shared_session: SandboxSession) -> None:
    r = shared_session.execute_sync(
        "import subprocess, os\nsubprocess.run(['echo', 'from-child'])\nos.system('echo e >&2')"
    )
    assert "from-child" in r.stdout
    assert "e" in r.stderr


def test_png_chart_and_files_are_artifacts(shared_session: SandboxSession) -> None:
    code = (
        "import matplotlib.pyplot as plt\n"
        "import pandas as pd\n"
        "df = pd.DataFrame({'x': [1, 2, 3], 'y': [2, 4, 8]})\n"
        "df.plot(x='x', y='y')\n"
        "plt.savefig('/mnt/data/chart.png')\n"
        "df.to_csv('/mnt/data/table.csv', index=False)\n"
        "plt.figure(); plt.plot([3, 2, 1])  # left open: saved like a notebook would show it\n"
    )
    r = shared_session.execute_sync(code, timeout=60)
    assert r.status == "ok", r.render()
    files = {f.path: f for f in r.files}
    assert files["chart.png"].mime_type == "image/png"
    assert files["table.csv"].mime_type == "text/csv"
    figures = [p for p in files if p.startswith("figure_")]
    assert len(figures) >= 1
    png = shared_session.read_file_sync("chart.png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert shared_session.read_file_sync("table.csv").decode() == "x,y\n1,2\n2,4\n3,8\n"
    # An unchanged file is not reported again.
    r2 = shared_session.execute_sync("1")
    assert r2.files == []


def test_write_and_list_files(shared_session: SandboxSession) -> None:
    shared_session.write_file_sync("in/data.txt", b"12345")
    r = shared_session.execute_sync("open('/mnt/data/in/data.txt').read()")
    assert r.value == "'12345'"
    assert any(f.path == "in/data.txt" for f in shared_session.list_files_sync())
    with pytest.raises(Exception, match="outside"):
        shared_session.read_file_sync("../../etc/passwd")


def test_container_is_locked_down(session: SandboxSession) -> None:
    c = container_of(session)
    c.reload()
    host = c.attrs["HostConfig"]
    cfg = sandbox_config()
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["Memory"] == cfg.memory_mb * 1024 * 1024
    assert host["MemorySwap"] == cfg.memory_mb * 1024 * 1024
    assert host["PidsLimit"] == cfg.pids_limit
    assert host["NanoCpus"] == int(cfg.cpus * 1e9)
    assert host["CapDrop"] == ["ALL"]
    # Only the supervisor (uid 0) holds these, to start the kernel as uid 1000 and to
    # signal it; the kernel and the user's code have no capability at all.
    assert sorted(host["CapAdd"]) == ["KILL", "SETGID", "SETUID"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert set(host["Tmpfs"]) == {"/tmp"}
    [data] = [m for m in host["Mounts"] if m["Target"] == "/mnt/data"]
    assert data["VolumeOptions"]["DriverConfig"]["Options"]["type"] == "tmpfs"
    r = session.execute_sync(
        "import os\n(os.getuid(), os.getgid(), os.getgroups(),"
        " open('/proc/self/status').read().split('CapEff:')[1].split()[0])"
    )
    assert r.value == "(1000, 1000, [], '0000000000000000')"
    # The user's code cannot signal or trace the supervisor (its parent, uid 0).
    r = session.execute_sync("import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)")
    assert r.error is not None and r.error.ename == "PermissionError"


def test_close_removes_the_container(docker_sandbox: DockerSandbox) -> None:
    s = docker_sandbox.start_session_sync()
    cid = container_of(s).id
    s.close_sync()
    client = docker_sandbox.client()
    assert cid not in [c.id for c in client.containers.list(all=True)]
    with pytest.raises(SandboxClosedError):
        s.execute_sync("1")


def test_async_api(docker_sandbox: DockerSandbox) -> None:
    import asyncio

    async def main() -> str | None:
        session = await docker_sandbox.start_session()
        async with session:
            await session.execute("z = 3")
            return (await session.execute("z * 2")).value

    assert asyncio.run(main()) == "6"


def test_dead_host_process_leaves_no_container(
    docker_sandbox: DockerSandbox, tmp_path: Path
) -> None:
    """A host killed with SIGKILL cannot clean up: its kernel stops, the next start reaps it."""
    script = tmp_path / "host.py"
    script.write_text(
        "import sys, time\n"
        "from sandbox import DockerSandbox\n"
        "from sandbox_testkit import sandbox_config\n"
        "s = DockerSandbox(sandbox_config()).start_session_sync()\n"
        "print(s.kernel.container.id, flush=True)\n"
        "time.sleep(600)\n"
    )
    env = dict(os.environ)
    here = str(Path(__file__).parent)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root, here, env.get("PYTHONPATH", "")])
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, env=env, text=True
    )
    assert proc.stdout is not None
    cid = proc.stdout.readline().strip()
    assert cid, "the child host did not start a session"
    proc.kill()
    proc.wait()
    client = docker_sandbox.client()
    # With the host gone, the kernel's stdin closes and it exits; wait for the engine to
    # notice (no timing is asserted, only the outcome).
    container = client.containers.get(cid)
    container.wait(timeout=60)
    from harmonygraph.sandbox.docker_backend import reap_stale_containers

    removed = reap_stale_containers(client)
    assert cid[:12] in removed
    ids = [c.id for c in client.containers.list(all=True, filters={"label": LABEL_DOCKER})]
    assert cid not in ids
