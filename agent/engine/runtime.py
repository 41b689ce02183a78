"""What a run needs that is not state: the model, the tools, the recorder, the settings.

It reaches the nodes through LangGraph's context API (`context_schema`, `Runtime`): never
checkpointed, given anew to each invocation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from harmonygraph.engine.limits import RunLimits
from harmonygraph.engine.output import OutputSpec
from harmonygraph.harmony.prompt import DeveloperConfig, SystemConfig
from harmonygraph.models.base import Model, ModelSettings
from harmonygraph.tools.base import ToolContext
from harmonygraph.tools.registry import ToolRegistry
from harmonygraph.tracing.otel import RunSpans
from harmonygraph.tracing.trace import TraceRecorder

__all__ = ["LoopRuntime"]


@dataclass
class LoopRuntime:
    """What a run needs that is not state: clients, tools, recorder, settings."""

    model: Model
    registry: ToolRegistry
    system: SystemConfig
    developer: DeveloperConfig
    settings: ModelSettings
    limits: RunLimits
    recorder: TraceRecorder
    ctx: ToolContext
    output: OutputSpec | None = None
    stream_model: bool = False
    # OpenTelemetry spans for this run (`tracing.otel`); None when OpenTelemetry is off.
    spans: RunSpans | None = None
    # The wall-time limit counts from the start of this invocation: time spent waiting
    # for an approval, or between a crash and a resume, is not the run's.
    started_at: float = field(default_factory=time.monotonic)
