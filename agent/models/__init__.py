"""Model clients: gpt-oss over an OpenAI-compatible server, behind one async protocol.

`make_model()` builds the client the environment asks for:

- `HARMONYGRAPH_BASE_URL` (default `http://localhost:8000/v1`),
- `HARMONYGRAPH_MODEL` (default `openai/gpt-oss-20b`),
- `HARMONYGRAPH_API_KEY` (default `EMPTY`, which vLLM and Ollama accept when unsecured),
- `HARMONYGRAPH_API`: the wire path. `completions` (default; vLLM `/v1/completions`, we
  render and parse harmony, full control), `chat` (`/v1/chat/completions`, any server),
  `ollama-raw` (Ollama's `/api/generate` with `raw: true`, harmony rendered here) or
  `responses` (`/v1/responses`: vLLM, Ollama, Bedrock, OpenRouter).
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
        ToolUseFailedError,
        from_chat_message,
        to_chat_messages,
    )
    from harmonygraph.models.completions import HarmonyCompletionsModel
    from harmonygraph.models.errors import RetryPolicy
    from harmonygraph.models.ollama import OllamaRawModel
    from harmonygraph.models.responses import ResponsesModel
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
    "OllamaRawModel": "harmonygraph.models.ollama",
    "ResponsesModel": "harmonygraph.models.responses",
    "ToolUseFailedError": "harmonygraph.models.chat",
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
    "OllamaRawModel",
    "OpenAICompatibleModel",
    "ResponseDone",
    "ResponsesModel",
    "RetryPolicy",
    "ServerKind",
    "StreamEvent",
    "ToolUseFailedError",
    "TransformersModel",
    "Usage",
    "from_chat_message",
    "iterate_sync",
    "make_model",
    "run_sync",
    "to_chat_messages",
]

ApiKind = Literal["completions", "chat", "ollama-raw", "responses"]
API_KINDS: tuple[str, ...] = ("completions", "chat", "ollama-raw", "responses")
_SETTING_NAMES = frozenset(f.name for f in fields(ModelSettings))


def make_model(
    base_url: str | None = None,
    model: str | None = None,
    api_key: str | None = None,
    api: str | None = None,
    **settings: Any,
) -> HarmonyCompletionsModel | ChatCompletionsModel | OllamaRawModel | ResponsesModel:
    """The client for a server: arguments first, then `HARMONYGRAPH_*`, then defaults.

    `settings` are `ModelSettings` fields (max_tokens, temperature, timeout, ...) plus,
    for `api="chat"`, `server` ("auto", "vllm", "ollama", "openai"), `reasoning_field`,
    `send_reasoning` and `constrain_with_tools`; for `api="completions"`,
    `return_token_ids`, `enforce_output_schema` and `structured_output_style`; for
    `api="ollama-raw"`, `enforce_output_schema` and `trust_format`; for
    `api="responses"`, `store` and `constrain_with_tools`.
    """
    from harmonygraph.models.chat import ChatCompletionsModel
    from harmonygraph.models.completions import HarmonyCompletionsModel
    from harmonygraph.settings import Settings

    env = Settings()
    kind = (api or env.api).strip().lower()
    if kind not in API_KINDS:
        raise ValueError(
            f"api must be one of {', '.join(API_KINDS)}, not {kind!r} "
            "(from --api or HARMONYGRAPH_API)"
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
        if kind == "ollama-raw":
            from harmonygraph.models.ollama import OllamaRawModel

            return OllamaRawModel(name, **common, **options)
        if kind == "responses":
            from harmonygraph.models.responses import ResponsesModel

            return ResponsesModel(name, **common, **options)
        return HarmonyCompletionsModel(name, **common, **options)
    except TypeError as exc:
        known = ", ".join(sorted(_SETTING_NAMES))
        raise TypeError(f"{exc}; model settings are: {known}") from None
