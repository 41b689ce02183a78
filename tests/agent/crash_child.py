"""One agent run in its own process, for the crash-resume tests (see crashkit.py).

`python -m tests.agent.crash_child BACKEND DSN BASE_URL THREAD COUNTER TOOL_DELAY`
runs (or resumes, when the thread has a checkpoint) an agent whose only tool appends
`start n` and `done n` to COUNTER around a sleep: the side effect whose count says
whether a completed call ran again. The test kills this process with SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from contextlib import AbstractAsyncContextManager
from typing import Any


def _append(path: str, line: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()


async def main(argv: list[str]) -> None:
    backend, dsn, base_url, thread, counter, tool_delay = argv
    from harmonygraph import Agent
    from harmonygraph.engine.checkpoint import postgres_saver, sqlite_saver
    from harmonygraph.models import HarmonyCompletionsModel, ModelSettings
    from harmonygraph.tools import tool

    @tool
    def bump(n: int) -> str:
        """Record step n."""
        _append(counter, f"start {n}")
        time.sleep(float(tool_delay))
        _append(counter, f"done {n}")
        # Text no Postgres text/jsonb column takes as is: NUL and a lone surrogate.
        return f"bumped {n}\x00\ud800"

    saver_cm: AbstractAsyncContextManager[Any] = (
        sqlite_saver(dsn) if backend == "sqlite" else postgres_saver(dsn)
    )
    async with saver_cm as saver:
        model = HarmonyCompletionsModel(
            base_url=base_url, settings=ModelSettings(max_retries=0, timeout=30)
        )
        agent = Agent(model, tools=[bump], checkpointer=saver)
        config: Any = {"configurable": {"thread_id": thread}}
        started = await saver.aget_tuple(config) is not None
        result = await agent.arun(None if started else "Bump each step.", thread_id=thread)
        tools = [m.content for m in result.messages if m.role.value == "tool"]
        print(json.dumps({"status": result.status, "text": result.text, "tools": tools}))
        await agent.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
