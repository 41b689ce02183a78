"""A reference MCP server written by others, from PyPI: `mcp-server-git`, run against a
repository made in a temporary folder."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from harmonygraph import Agent
from harmonygraph.tools import ToolContext
from harmonygraph.tools.mcp import MCPToolset
from harmonygraph.tools.registry import ToolCall, ToolRegistry
from harmonygraph.tracing import ScriptedModel

from .conftest import wait_gone
from .test_client import call, final

if shutil.which("mcp-server-git") is None:
    pytest.skip(
        "mcp-server-git is not installed (pip install mcp-server-git)", allow_module_level=True
    )


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.org",
           "GIT_COMMITTER_NAME": "Ada", "GIT_COMMITTER_EMAIL": "ada@example.org"}  # fmt: skip
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env
    ).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "notes.txt").write_text("first line\n")
    git(repo, "add", "notes.txt")
    git(repo, "commit", "-q", "-m", "Add the notes")
    (repo / "notes.txt").write_text("first line\nsecond line\n")
    return repo


def test_git_server_tools_calls_and_errors(repo: Path, tmp_path: Path) -> None:
    with MCPToolset(
        command=["mcp-server-git", "--repository", str(repo)],
        namespace="git",
        needs_approval=lambda t: t.name in ("git_commit", "git_reset", "git_checkout"),
    ) as toolset:
        assert {"git_status", "git_log", "git_diff_unstaged", "git_commit"} <= set(toolset.tools)
        assert toolset.tools["git_commit"].needs_approval
        assert not toolset.tools["git_status"].needs_approval
        registry = ToolRegistry([toolset])
        ctx = ToolContext(artifacts_dir=tmp_path)
        where = f'"repo_path": "{repo}"'

        async def go():
            return [
                await registry.call(ToolCall(f"git.{name}", args), ctx)
                for name, args in [
                    ("git_log", f'{{{where}, "max_count": 5}}'),
                    ("git_diff_unstaged", f"{{{where}}}"),
                    ("git_status", '{"repo_path": "/etc"}'),
                    ("git_log", '{"max_count": 1}'),
                    ("git_show", f'{{{where}, "revision": "no-such-rev"}}'),
                ]
            ]

        log, diff, outside, missing, bad_rev = asyncio.run(go())
    assert log.status == "ok" and "Add the notes" in log.output.text and "Ada" in log.output.text
    assert diff.status == "ok" and "+second line" in diff.output.text
    # the server's own refusal, as the tool's error result
    assert outside.status == "error" and "outside the allowed repository" in outside.output.text
    # our validation against the server's schema, before any call
    assert missing.status == "invalid_arguments"
    assert "'repo_path' is a required property" in missing.output.text
    assert bad_rev.status == "error"


def test_an_agent_reads_the_git_log_through_mcp(repo: Path) -> None:
    toolset = MCPToolset(command=["mcp-server-git", "--repository", str(repo)], tools=["git_log"])
    assert toolset.namespace == "mcp_git"  # the server's own name, as an identifier
    model = ScriptedModel(
        [call("mcp_git.git_log", f'{{"repo_path": "{repo}", "max_count": 1}}'),
         final("The last commit adds the notes.")]
    )  # fmt: skip
    with Agent(model, tools=[toolset]) as agent:
        result = agent.run("What was the last commit?")
    assert result.status == "completed"
    (log,) = [m.content for m in result.messages if m.role.value == "tool"]
    assert "Message: Add the notes" in log


def test_the_git_server_killed_between_calls_is_restarted(repo: Path, tmp_path: Path) -> None:
    with MCPToolset(command=["mcp-server-git", "--repository", str(repo)]) as toolset:
        registry = ToolRegistry([toolset])
        ctx = ToolContext(artifacts_dir=tmp_path)
        status = ToolCall("mcp_git.git_status", f'{{"repo_path": "{repo}"}}')
        first = asyncio.run(registry.call(status, ctx))
        assert first.status == "ok" and "notes.txt" in first.output.text
        pids = [
            int(p.name) for p in Path("/proc").glob("[0-9]*")
            if b"mcp-server-git" in _cmdline(p) and _ppid(p) == os.getpid()
        ]  # fmt: skip
        assert pids
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
            assert wait_gone(pid)
        dead = asyncio.run(registry.call(status, ctx))
        assert dead.status == "error" and "started again on the next call" in dead.output.text
        back = asyncio.run(registry.call(status, ctx))
        assert back.status == "ok" and "notes.txt" in back.output.text
        assert toolset.restarts == 1


def _cmdline(p: Path) -> bytes:
    try:
        return (p / "cmdline").read_bytes()
    except OSError:
        return b""


def _ppid(p: Path) -> int:
    try:
        return int((p / "stat").read_text().split(") ", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1
