"""Fixtures of the serve tests: one embedded Postgres for the session, a fake gpt-oss
server (real HTTP) per test, and the serve app on uvicorn on a thread, with an API key;
headless Chromium (Debian's `chromium`, driven by Playwright) for the dashboard, and the
folder its screenshots go to ($HARMONYGRAPH_SCREENSHOTS, default the test's tmp folder)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.ci import require, unavailable


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    url = os.environ.get("HARMONYGRAPH_TEST_DATABASE_URL")
    if url:
        yield url
        return
    require("psycopg")
    require("langgraph.checkpoint.postgres")
    pgserver = require("pgserver")
    base = Path(tempfile.mkdtemp(prefix="hg-serve-pg-"))
    base.chmod(0o755)
    server = pgserver.get_server(base / "pgdata", cleanup_mode="delete")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def final(text: str, reasoning: str = "Thinking.") -> str:
    """A harmony completion: reasoning, then a final answer."""
    return (
        f"<|channel|>analysis<|message|>{reasoning}<|end|><|start|>assistant"
        f"<|channel|>final<|message|>{text}<|return|>"
    )


def call(name: str, arguments: str, reasoning: str = "Need a tool.") -> str:
    """A harmony completion that calls `functions.<name>`."""
    return (
        f"<|channel|>analysis<|message|>{reasoning}<|end|><|start|>assistant"
        f"<|channel|>commentary to=functions.{name} <|constrain|>json<|message|>{arguments}<|call|>"
    )


@dataclass
class Served:
    """A running serve app and what it was made from."""

    base_url: str
    key: str
    fake: Any
    server: Any
    app: Any

    def client(self, **kw: Any) -> Any:
        from openai import OpenAI

        return OpenAI(base_url=self.base_url + "/v1", api_key=self.key, max_retries=0, **kw)

    def new_key(self, name: str, **kw: Any) -> str:
        return make_key(self.app.config.database_url, name, **kw)


def make_key(url: str, name: str, **kw: Any) -> str:
    from harmonygraph.serve.store import ServeStore

    async def go() -> str:
        async with ServeStore(url, max_size=1) as store:
            _, key = await store.create_key(name, **kw)
            return key

    # On a thread of its own: callers may be inside a running loop (Playwright's sync API).
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, go()).result()


def make_agents(
    fake_url: str, *, show_reasoning: bool = False, tools: Sequence[Any] = ()
) -> list[Any]:
    from harmonygraph.engine import Agent
    from harmonygraph.models import make_model
    from harmonygraph.serve import ServedAgent

    def agent(name: str, reveal: bool) -> Any:
        model = make_model(base_url=fake_url, model="openai/gpt-oss-20b", api="completions")
        return ServedAgent(name, Agent(model, list(tools), name=name, reasoning="low",
                                       current_date="2025-01-01"), show_reasoning=reveal)  # fmt: skip

    return [agent("helper", show_reasoning), agent("thinker", True)]


@pytest.fixture
def serve(pg_url: str, tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """`serve(script, **config)`: the app on a thread, its agents on a fake model server."""
    require("fastapi")
    require("uvicorn")
    from harmonygraph.serve import ServeConfig, ServerThread, create_app
    from harmonygraph.tracing import FakeOpenAIServer

    started: list[tuple[Any, Any]] = []

    def start(
        script: Sequence[str] | Callable[[Any], str] = (),
        *,
        fake: Any = None,
        agents: list[Any] | None = None,
        key_options: dict[str, Any] | None = None,
        **config: Any,
    ) -> Served:
        if fake is None:
            fake = FakeOpenAIServer(script).start()
        cfg = ServeConfig(
            agents=agents if agents is not None else make_agents(fake.base_url),
            database_url=pg_url,
            reports_dir=tmp_path / "reports",
            **config,
        )
        app = create_app(cfg)
        server = ServerThread(app).start()
        started.append((server, fake))
        key = make_key(pg_url, "test", **(key_options or {}))
        return Served(server.base_url, key, fake, server, app)

    yield start
    for server, fake in reversed(started):
        server.stop()
        fake.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    sync_api = require("playwright.sync_api")
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        unavailable("Debian's chromium is not installed (.ci/setup installs it)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go: $HARMONYGRAPH_SCREENSHOTS, else the test's tmp folder."""
    d = Path(os.environ.get("HARMONYGRAPH_SCREENSHOTS") or tmp_path / "screenshots")
    d.mkdir(parents=True, exist_ok=True)
    return d


def sign_in(page: Any, base_url: str, key: str) -> None:
    """Sign `page` in with `key` (through the form, as a person would)."""
    page.goto(base_url + "/signin")
    page.fill("#key", key)
    page.click("button[type=submit]")
    page.wait_for_url("**/runs")
