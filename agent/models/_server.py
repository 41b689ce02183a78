"""What a client learns about its server before trusting it: which server, which version,
and the tool names a request registers (for the parser and for cleaning server output).

Probes are cheap GETs, made once per client and only when a decision depends on them:

- vLLM serves `GET /version` (`{"version": "0.10.2"}`) at the API root, beside `/v1`;
  its `/v1/models` cards say `owned_by: "vllm"`;
- Ollama serves `GET /api/version` (`{"version": "0.11.4"}`) and its `/v1/models` cards
  say `owned_by: "library"`; its chat answers carry `system_fingerprint: "fp_ollama"`.

A probe that fails (hosted endpoints have neither) leaves the server `unknown`; callers
then choose what is safe for every server, never what is right for one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import openai
from harmonygraph.harmony.prompt import DeveloperConfig, SystemConfig

__all__ = [
    "ServerInfo",
    "api_root",
    "parse_version",
    "probe_server",
    "registered_tool_names",
    "vllm_structured_fields",
]

DetectedKind = Literal["vllm", "ollama", "unknown"]


@dataclass(frozen=True)
class ServerInfo:
    kind: DetectedKind
    version: tuple[int, ...] | None = None  # None when the server did not say

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version)) if self.version else "unknown"


def parse_version(text: str) -> tuple[int, ...] | None:
    """`0.10.2` → (0, 10, 2); `0.11.1rc2.dev5+g1a2b` → (0, 11, 1); junk → None."""
    found = re.match(r"\s*v?(\d+(?:\.\d+)*)", str(text))
    if found is None:
        return None
    return tuple(int(p) for p in found.group(1).split("."))


def api_root(base_url: str) -> str:
    """The server's root for a `.../v1` base URL (vLLM's `/version`, Ollama's `/api/...`)."""
    url = base_url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


class _Refused(Exception):
    """The server refused the key: probing further only repeats the refusal."""


async def _get_json(client: openai.AsyncOpenAI, url: str, wait_s: float) -> Any:
    try:
        response = await client.with_options(max_retries=0, timeout=wait_s).get(
            url, cast_to=httpx.Response
        )
    except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
        raise _Refused from exc
    except openai.OpenAIError:
        return None
    if response.status_code in (401, 403):
        raise _Refused
    if response.status_code != 200:
        return None
    try:
        return response.json()
    except ValueError:
        return None


async def probe_server(
    client: openai.AsyncOpenAI, wait_s: float = 5.0, *, version: bool = True
) -> ServerInfo:
    """Which server `client` talks to, from `/version`, `/api/version` and `/v1/models`;
    `version=False` when only the kind matters (fewer requests)."""
    try:
        return await _probe(client, wait_s, version)
    except _Refused:
        return ServerInfo("unknown", None)  # the request itself will say what is wrong


async def _probe(client: openai.AsyncOpenAI, wait_s: float, want_version: bool) -> ServerInfo:
    root = api_root(str(client.base_url))
    models = await _get_json(client, "models", wait_s)
    owners = set()
    if isinstance(models, dict):
        for card in models.get("data") or []:
            if isinstance(card, dict) and card.get("owned_by"):
                owners.add(str(card["owned_by"]).lower())
    if "library" in owners or "ollama" in owners:
        if not want_version:
            return ServerInfo("ollama", None)
        found = await _get_json(client, f"{root}/api/version", wait_s)
        version = parse_version(found.get("version", "")) if isinstance(found, dict) else None
        return ServerInfo("ollama", version)
    if "vllm" in owners and not want_version:
        return ServerInfo("vllm", None)
    found = await _get_json(client, f"{root}/version", wait_s)
    if isinstance(found, dict) and "version" in found:
        return ServerInfo("vllm", parse_version(found["version"]))
    if "vllm" in owners:
        return ServerInfo("vllm", None)
    found = await _get_json(client, f"{root}/api/version", wait_s)
    if isinstance(found, dict) and "version" in found:
        return ServerInfo("ollama", parse_version(found["version"]))
    return ServerInfo("unknown", None)


def vllm_structured_fields(version: tuple[int, ...] | None) -> frozenset[str]:
    """The structured-output request fields a vLLM version enforces (others it only logs).

    `structured_outputs` arrived in 0.10.2 (PR #22772) and deprecated `guided_*`, which
    0.12 removed. An unknown version enforces nothing we can count on.
    """
    if version is None:
        return frozenset()
    fields = set()
    if version >= (0, 10, 2):
        fields.add("structured_outputs")
    if version < (0, 12):
        fields.add("guided_json")
    return frozenset(fields)


def registered_tool_names(system: SystemConfig, developer: DeveloperConfig) -> list[str]:
    """Every recipient the request declares: `functions.get_weather`, `git.git_status`
    (an MCP namespace), `browser.search`, and `python` (a namespace with no tools of its own)."""
    names: list[str] = []
    for ns in (*system.builtin_tools, *developer.tools):
        if ns.tools:
            names.extend(f"{ns.name}.{t.name}" for t in ns.tools)
        else:
            names.append(ns.name)
    return names


def dedupe(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))
