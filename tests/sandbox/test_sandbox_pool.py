"""The warm pool: kernels are ready before a session asks, and never shared."""

from __future__ import annotations

import pytest
from harmonygraph.sandbox import DockerSandbox, SandboxPool
from sandbox_testkit import container_of, sandbox_config

pytestmark = pytest.mark.docker


def test_pool_hands_out_warm_preloaded_kernels(docker_sandbox: DockerSandbox) -> None:
    sandbox = DockerSandbox(sandbox_config(preload=["numpy", "pandas"]))
    with SandboxPool(sandbox, size=1) as pool:
        assert pool.wait_ready(timeout=120), pool.stats()
        session = pool.acquire_sync()
        try:
            assert pool.hits == 1 and pool.misses == 0
            # The scientific stack was imported before the session took the kernel ...
            assert session.kernel.ready["preload_errors"] == {}
            r = session.execute_sync("import sys\n'pandas' in sys.modules")
            assert r.value == "True"
            # ... but the user's namespace starts empty, like a fresh notebook.
            r = session.execute_sync("'pandas' in globals() or 'pd' in globals()")
            assert r.value == "False"
        finally:
            session.close_sync()
        assert pool.wait_ready(timeout=120), "the pool did not refill"


def test_kernels_are_not_reused_between_sessions(docker_sandbox: DockerSandbox) -> None:
    with SandboxPool(docker_sandbox, size=1) as pool:
        first = pool.acquire_sync()
        first.execute_sync("secret = 42\nopen('/mnt/data/leak.txt', 'w').write('x')")
        first_container = container_of(first).id
        first.close_sync()
        second = pool.acquire_sync()
        try:
            assert container_of(second).id != first_container
            r = second.execute_sync("import os\n('secret' in globals(), os.listdir('/mnt/data'))")
            assert r.value == "(False, [])"
        finally:
            second.close_sync()


def test_restart_after_a_crash_takes_a_warm_kernel(docker_sandbox: DockerSandbox) -> None:
    with SandboxPool(docker_sandbox, size=1) as pool:
        session = pool.acquire_sync()
        try:
            assert pool.wait_ready(timeout=120)
            hits = pool.hits
            r = session.execute_sync("import os\nos._exit(1)")
            assert r.status == "killed" and r.restarted
            assert pool.hits == hits + 1
            assert session.execute_sync("1 + 1").value == "2"
        finally:
            session.close_sync()


def test_pool_close_removes_its_warm_kernels(docker_sandbox: DockerSandbox) -> None:
    from harmonygraph.sandbox.docker_backend import LABEL

    pool = SandboxPool(docker_sandbox, size=2)
    assert pool.wait_ready(timeout=120)
    warm = {k.container.id for k in list(pool._ready.queue)}
    pool.close_sync()
    client = docker_sandbox.client()
    live = {c.id for c in client.containers.list(all=True, filters={"label": LABEL})}
    assert len(warm) == 2 and not (warm & live)


async def test_async_acquire_and_release(docker_sandbox: DockerSandbox) -> None:
    pool = SandboxPool(docker_sandbox, size=1)
    await pool.start()
    try:
        session = await pool.acquire()
        assert (await session.execute("sum(range(5))")).value == "10"
        await pool.release(session)
        assert session.closed
    finally:
        await pool.close()


def test_an_agent_warms_its_python_pool_when_built(docker_sandbox: DockerSandbox) -> None:
    """Its first run takes a kernel started in the background, and closing stops the pool."""
    from harmonygraph import Agent
    from harmonygraph.tools.python import PythonToolset
    from harmonygraph.tracing import ScriptedModel

    python = PythonToolset(sandbox=DockerSandbox(sandbox_config(pool_size=1)))
    model = ScriptedModel(
        [
            "<|channel|>analysis to=python code<|message|>print(6 * 7)<|call|>",
            "<|channel|>final<|message|>42<|return|>",
        ]
    )
    with Agent(model, tools=[python]) as agent:
        # Building the agent started the pool: no run has asked for a session yet.
        assert python.pool.wait_ready(timeout=120), python.pool.stats()
        result = agent.run("6 * 7?")
        assert [m.content for m in result.messages if m.role.value == "tool"] == ["42"]
        assert python.pool.hits == 1 and python.pool.misses == 0
    assert python.pool.stats()["ready"] == 0  # closed: no warm kernel left behind


def test_an_agent_with_python_closes_promptly_and_quietly(
    docker_sandbox: DockerSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue #15: the pool refills after a run takes its kernel; closing the agent while
    that refill is importing pandas must neither wait for it nor report it as a failure
    (it used to print "could not start a kernel ... out-of-memory killer")."""
    import logging
    import time

    from harmonygraph import Agent
    from harmonygraph.tools.python import PythonToolset
    from harmonygraph.tracing import ScriptedModel

    cfg = sandbox_config(pool_size=1, preload=["numpy", "pandas", "matplotlib.pyplot"])
    python = PythonToolset(sandbox=DockerSandbox(cfg))
    model = ScriptedModel(
        [
            "<|channel|>analysis to=python code<|message|>print(6 * 7)<|call|>",
            "<|channel|>final<|message|>42<|return|>",
        ]
    )
    with caplog.at_level(logging.INFO, logger="harmonygraph.sandbox"):
        agent = Agent(model, tools=[python])
        assert python.pool.wait_ready(timeout=120), python.pool.stats()
        result = agent.run("6 * 7?")
        assert [m.content for m in result.messages if m.role.value == "tool"] == ["42"]
        t0 = time.monotonic()
        agent.close()  # the refill is under way now
        assert time.monotonic() - t0 < 5
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
