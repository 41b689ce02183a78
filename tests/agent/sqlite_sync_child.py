"""One sync `agent.run` on a SQLite checkpointer in its own process (test_run_continuity.py).

`python -m tests.agent.sqlite_sync_child DB MODE` with MODE `start` (a run that stops for
approval), `resume` (approve it, as another process), `unknown` (resume a thread that was
never saved) or `again` (resume the finished thread). Prints the outcome as JSON.
"""

from __future__ import annotations

import json
import sys


def main(db: str, mode: str) -> None:
    from harmonygraph import Agent, ThreadNotAwaitingApprovalError, UnknownThreadError
    from harmonygraph.engine.checkpoint import sqlite_saver
    from harmonygraph.tools import tool
    from harmonygraph.tracing import ScriptedModel

    @tool(needs_approval=True)
    def delete_file(path: str) -> str:
        """Delete a file (asks the user first)."""
        return f"deleted {path}"

    call = (
        "<|channel|>analysis<|message|>Need a tool.<|end|><|start|>assistant<|channel|>"
        'commentary to=functions.delete_file <|constrain|>json<|message|>{"path": "/tmp/x"}<|call|>'
    )
    final = "<|channel|>final<|message|>Deleted.<|return|>"
    script = [call] if mode == "start" else [final]
    model = ScriptedModel(script)
    with sqlite_saver(db) as saver:  # sync code: `with`, and agent.run
        agent = Agent(model, tools=[delete_file], checkpointer=saver)
        try:
            if mode == "start":
                result = agent.run("Delete /tmp/x", thread_id="t1")
            else:
                result = agent.run(thread_id="nope" if mode == "unknown" else "t1", resume=True)
        except (UnknownThreadError, ThreadNotAwaitingApprovalError) as exc:
            print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
            return
        tools = [m.content for m in result.messages if m.role.value == "tool"]
        print(
            json.dumps(
                {
                    "status": result.status,
                    "text": result.text,
                    "tools": tools,
                    "model_calls": len(model.requests),
                    "interrupt": result.interrupt,
                }
            )
        )


if __name__ == "__main__":
    main(*sys.argv[1:])
