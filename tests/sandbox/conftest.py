"""Fixtures for the sandbox tests.

Docker tests run against a real engine and the real image. Outside CI they skip with the
reason when no engine or image is there; with `CI` set they fail instead, so CI can
never pass by silently skipping them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harmonygraph.sandbox import (
    DockerSandbox,
    SandboxSession,
    SandboxUnavailableError,
)
from sandbox_testkit import sandbox_config

from tests.ci import IN_CI


def _require_docker(sandbox: DockerSandbox) -> None:
    try:
        sandbox.check()
    except SandboxUnavailableError as exc:
        if IN_CI:
            pytest.fail(
                f"CI is set but the Docker sandbox cannot run: {exc}. CI must run "
                ".ci/setup-docker before the tests.",
                pytrace=False,
            )
        pytest.skip(f"Docker sandbox unavailable: {exc}")


@pytest.fixture(scope="session")
def docker_sandbox() -> DockerSandbox:
    sandbox = DockerSandbox(sandbox_config())
    _require_docker(sandbox)
    return sandbox


@pytest.fixture
def session(docker_sandbox: DockerSandbox) -> Iterator[SandboxSession]:
    """A fresh session per test: hostile code must not leak into the next test."""
    s = docker_sandbox.start_session_sync()
    yield s
    s.close_sync()


@pytest.fixture(scope="module")
def shared_session(docker_sandbox: DockerSandbox) -> Iterator[SandboxSession]:
    """One session for the well-behaved tests of a module (starting one costs ~0.5 s)."""
    s = docker_sandbox.start_session_sync()
    yield s
    s.close_sync()
