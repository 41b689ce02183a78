"""Traces, replay, recording and the test doubles: how a run is kept, re-run and tested.

- `trace`: the JSON Lines record of a run (`TraceRecorder` writes it, `Trace` reads it back,
  checking each record's shape and depth).
- `redaction`: what never reaches a trace (API keys, the client's own secrets), and a
  trace without its reasoning (`without_reasoning`) for readers not allowed to see it.
- `replay`: a model (`ReplayModel`) and tools (`ReplayToolRegistry`) that answer from a
  trace; `Agent.replay` and `harmonygraph.engine.replay` run an agent over them.
- `recording`: `RecordingModel`, one trace for a pipeline of many agents on one model.
- `doubles`: `ScriptedModel` (in process) and `FakeOpenAIServer` (a vLLM-like HTTP server
  on 127.0.0.1) for tests without a GPU.
- `pytest_plugin`: the `agent_replay` fixture (registered as a pytest plugin).

```python
from harmonygraph.tracing import FakeOpenAIServer, ScriptedModel, Trace
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harmonygraph.lazy import lazy_exports

if TYPE_CHECKING:
    from harmonygraph.tracing.doubles import (
        FakeOpenAIServer,
        RecordedRequest,
        ScriptedModel,
        ScriptExhaustedError,
    )
    from harmonygraph.tracing.recording import RecordingModel
    from harmonygraph.tracing.redaction import Redactor, model_secrets, without_reasoning
    from harmonygraph.tracing.replay import (
        RecordedToolset,
        ReplayDivergence,
        ReplayModel,
        ReplayToolRegistry,
        check_replay_end,
        turn_inputs,
    )
    from harmonygraph.tracing.trace import (
        SCHEMA_VERSION,
        Trace,
        TraceError,
        TraceRecorder,
        request_fingerprint,
        sampling_params,
        settings_from_params,
    )

_LAZY = {
    "FakeOpenAIServer": "doubles",
    "RecordedRequest": "doubles",
    "ScriptExhaustedError": "doubles",
    "ScriptedModel": "doubles",
    "RecordingModel": "recording",
    "Redactor": "redaction",
    "model_secrets": "redaction",
    "without_reasoning": "redaction",
    "RecordedToolset": "replay",
    "ReplayDivergence": "replay",
    "ReplayModel": "replay",
    "ReplayToolRegistry": "replay",
    "check_replay_end": "replay",
    "turn_inputs": "replay",
    "SCHEMA_VERSION": "trace",
    "Trace": "trace",
    "TraceError": "trace",
    "TraceRecorder": "trace",
    "request_fingerprint": "trace",
    "sampling_params": "trace",
    "settings_from_params": "trace",
}
__all__ = [
    "SCHEMA_VERSION",
    "FakeOpenAIServer",
    "RecordedRequest",
    "RecordedToolset",
    "RecordingModel",
    "Redactor",
    "ReplayDivergence",
    "ReplayModel",
    "ReplayToolRegistry",
    "ScriptExhaustedError",
    "ScriptedModel",
    "Trace",
    "TraceError",
    "TraceRecorder",
    "check_replay_end",
    "model_secrets",
    "request_fingerprint",
    "sampling_params",
    "settings_from_params",
    "turn_inputs",
    "without_reasoning",
]

__getattr__ = lazy_exports(__name__, _LAZY)
