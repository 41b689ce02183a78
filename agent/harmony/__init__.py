"""The harmony codec: prompts, incremental rendering and tolerant parsing, on openai-harmony."""

from harmonygraph.harmony.encoding import (
    STOP_TOKENS,
    VocabularyError,
    get_encoding,
    vocabulary_status,
)
from harmonygraph.harmony.messages import Message, Role
from harmonygraph.harmony.parser import (
    ContentDelta,
    HarmonyParseError,
    HeaderDone,
    MessageDone,
    ParseEvent,
    ParseResult,
    Repair,
    RepairKind,
    StreamParser,
    parse_completion,
    parse_completion_text,
    parse_completion_tokens,
)
from harmonygraph.harmony.prompt import (
    DeveloperConfig,
    ReasoningLevel,
    ResponseFormat,
    SystemConfig,
    builtin_namespaces,
    parse_reasoning,
)
from harmonygraph.harmony.render import ConversationRenderer, RenderedPrompt, visible_history
from harmonygraph.harmony.schema import SchemaError, flatten_schema, schema_of

__all__ = [
    "STOP_TOKENS",
    "ContentDelta",
    "ConversationRenderer",
    "DeveloperConfig",
    "HarmonyParseError",
    "HeaderDone",
    "Message",
    "MessageDone",
    "ParseEvent",
    "ParseResult",
    "ReasoningLevel",
    "RenderedPrompt",
    "Repair",
    "RepairKind",
    "ResponseFormat",
    "Role",
    "SchemaError",
    "StreamParser",
    "SystemConfig",
    "VocabularyError",
    "builtin_namespaces",
    "flatten_schema",
    "get_encoding",
    "parse_completion",
    "parse_completion_text",
    "parse_completion_tokens",
    "parse_reasoning",
    "schema_of",
    "visible_history",
    "vocabulary_status",
]
