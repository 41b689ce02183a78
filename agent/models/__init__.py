"""Model clients: gpt-oss over an OpenAI-compatible server, behind one async protocol.

`make_model()` builds the client the environment asks for:

- `HARMONYGRAPH_BASE_URL` (default `http://localhost:8000/v1`),
- `HARMONYGRAPH_MODEL` (default `openai/gpt-oss-20b`),
- `HARMONYGRAPH_API_KEY` (default `EMPTY`, which vLLM and Ollama accept when unsecured),
- `HARMONYGRAPH_API`: `completions` (default; we render harmony, full control) or `chat`.
"""

from __future__ import annotations

import importlib
from dataclasses import fields
from typing import TYPE_CHECKING, Any, Literal

from harmonygraph.models.base import (
    Model,
    ModelAuthError,
    ModelConnectionError,
    ModelError,
    ModelNotFoundError,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    ModelTimeoutError,
    ResponseDone,
    StreamEvent,
    Usage,
)

if TYPE_CHECKING:
    from harmonygraph.models._openai import OpenAICompatibleModel
    from harmonygraph.models.chat import (
        ChatCompletionsModel,
        ServerKind,
        from_chat_message,
        to_chat_messages,
    )
    from harmonygraph.models.completions import HarmonyCompletionsModel
    from harmonygraph.models.errors import RetryPolicy
    from harmonygraph.models.transformers import TransformersModel

# Imported on first use: the protocol and its types (above) are all the agent loop
# needs, and the `openai` SDK alone costs ~20 MB and ~0.3 s at import; torch far more.
_LAZY = {
    "OpenAICompatibleModel": "harmonygraph.models._openai",
    "ChatCompletionsModel": "harmonygraph.models.chat",
    "ServerKind": "harmonygraph.models.chat",
    "from_chat_message": "harmonygraph.models.chat",
    "to_chat_messages": "harmonygraph.models.chat",
    "HarmonyCompletionsModel": "harmonygraph.models.completions",
    "RetryPolicy": "harmonygraph.models.errors",
    "TransformersModel": "harmonygraph.models.transformers",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'harmonygraph.models' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "ApiKind",
    "ChatCompletionsModel",
    "HarmonyCompletionsModel",
    "Model",
    "ModelAuthError",
    "ModelConnectionError",
    "ModelError",
    "ModelNotFoundError",
    "ModelRequest",
    "ModelResponse",
    "ModelSettings",
    "ModelTimeoutError",
    "OpenAICompatibleModel",
    "ResponseDone",
    "RetryPolicy",
    "ServerKind",
    "StreamEvent",
    "TransformersModel",
    "Usage",
    "from_chat_message",
    "iterate_sync",
    "make_model",
    "run_sync",
    "to_chat_messages",
]

ApiKind = Literal["completions", "chat"]
_SETTING_NAMES = frozenset(f.name for f in fields(ModelSettings))


def make_model(
    base_url: str | None = None,
    model: str | None = None,
    api_key: str | None = None,
    api: str | None = None,
    **settings: Any,
) -> HarmonyCompletionsModel | ChatCompletionsModel:
    """The client for a server: arguments first, then `HARMONYGRAPH_*`, then defaults.

    `settings` are `ModelSettings` fields (max_tokens, temperature, timeout, ...) plus,
    for `api="chat"`, `server` ("vllm", "ollama", "openai"), `reasoning_field` and
    `send_reasoning`, and for `api="completions"`, `return_token_ids`.
    """
    from harmonygraph.models.chat import ChatCompletionsModel
    from harmonygraph.models.completions import HarmonyCompletionsModel
    from harmonygraph.settings import Settings

    env = Settings()
    kind = (api or env.api).strip().lower()
    if kind not in ("completions", "chat"):
        raise ValueError(
            f"api must be 'completions' or 'chat', not {kind!r} (from --api or HARMONYGRAPH_API)"
        )
    sampling = {k: v for k, v in settings.items() if k in _SETTING_NAMES}
    options = {k: v for k, v in settings.items() if k not in _SETTING_NAMES}
    common: dict[str, Any] = {
        "base_url": base_url or env.base_url,
        "api_key": api_key or env.api_key,
        "settings": ModelSettings(**sampling),
    }
    name = model or env.model
    try:
        if kind == "chat":
            return ChatCompletionsModel(name, **common, **options)
        return HarmonyCompletionsModel(name, **common, **options)
    except TypeError as exc:
        known = ", ".join(sorted(_SETTING_NAMES))
        raise TypeError(f"{exc}; model settings are: {known}") from None
