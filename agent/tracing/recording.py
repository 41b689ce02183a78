"""Recording what a model answers, for pipelines that run many agents on one model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from harmonygraph.models.base import (
    ModelRequest,
    ModelResponse,
    ResponseDone,
    StreamEvent,
)
from harmonygraph.tracing.redaction import Redactor, model_secrets
from harmonygraph.tracing.trace import TraceRecorder

__all__ = ["RecordingModel"]


class RecordingModel:
    """Wraps a model and writes every call it answers into one trace.

    For pipelines that run many agents on one model (the report graph): each new
    conversation starts a `run` segment, so `ReplayModel` over the file answers the whole
    pipeline in order. Tool calls are not recorded here; a replay runs the tools for real.
    """

    def __init__(self, inner: Any, path: str | Path, *, redactor: Redactor | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        secrets = [*(redactor.secrets if redactor else ()), *model_secrets(inner)]
        mask = redactor.mask if redactor else Redactor.mask
        self.recorder = TraceRecorder(path=self.path, redactor=Redactor(secrets, mask))
        self._previous: ModelRequest | None = None
        self._segments = 0
        self._steps = 0

    def _begin(self, request: ModelRequest) -> None:
        prev = self._previous
        fresh = (
            prev is None
            or prev.system != request.system
            or prev.developer != request.developer
            or len(request.messages) < len(prev.messages)
            or (prev.messages and request.messages[:1] != prev.messages[:1])
        )
        if fresh:
            self._segments += 1
            self._steps = 0
            self.recorder.start(
                run_id=f"segment-{self._segments}",
                model=self.name,
                system=request.system,
                developer=request.developer,
                tools=[
                    f"{ns.name}.{t.name}"
                    for ns in (*request.system.builtin_tools, *request.developer.tools)
                    for t in ns.tools
                ],
                new_conversation=True,
            )
        self._previous = request
        self._steps += 1

    async def complete(self, request: ModelRequest) -> ModelResponse:
        response: ModelResponse = await self.inner.complete(request)
        self._begin(request)
        self.recorder.model_call(self._steps, request, response)
        return response

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        async for event in self.inner.stream(request):
            if isinstance(event, ResponseDone):
                self._begin(request)
                self.recorder.model_call(self._steps, request, event.response)
            yield event

    async def aclose(self) -> None:
        await self.inner.aclose()
