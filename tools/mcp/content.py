"""MCP tool results as harmonygraph tool outputs: text for the model, files as artifacts.

Text blocks are the model's reading. Images, audio and binary resources are written into
the run's artifacts folder (`<artifacts>/mcp/<namespace>/`) and named in the text, so a
report can embed them and the model can refer to them. Embedded text resources are read
inline under their URI; resource links are named. A result with only structured content
is shown as its JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
import re
from pathlib import Path
from typing import Any

from harmonygraph.tools.base import Artifact, ToolContext, ToolOutput

__all__ = ["MAX_BINARY_BYTES", "result_to_output"]

MAX_BINARY_BYTES = 25 * 1024 * 1024  # one decoded image, audio clip or blob


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:80] or "file"


def _save(
    data_b64: str, mime: str | None, stem: str, out_dir: Path
) -> tuple[Path | None, str | None]:
    """The decoded bytes written under `out_dir`, never over an existing file; or why not."""
    try:
        data = base64.b64decode(data_b64, validate=True)
    except (binascii.Error, ValueError):
        return None, "not valid base64"
    if len(data) > MAX_BINARY_BYTES:
        return None, f"{len(data)} bytes, over the {MAX_BINARY_BYTES} byte limit"
    ext = (mimetypes.guess_extension(mime or "") or ".bin") if mime else ".bin"
    out_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    while True:
        path = out_dir / f"{_safe(stem)}{f'-{n}' if n else ''}{ext}"
        try:
            with path.open("xb") as f:  # exclusive: two calls never write one file
                f.write(data)
            return path, None
        except FileExistsError:
            n += 1


def result_to_output(
    result: Any, *, namespace: str, tool: str, server: str, ctx: ToolContext
) -> ToolOutput:
    """One `CallToolResult` as a `ToolOutput`."""
    out_dir = Path(ctx.artifacts_dir) / "mcp" / _safe(namespace)
    texts: list[str] = []
    artifacts: list[Artifact] = []
    source = f"mcp:{namespace}.{tool}"

    def keep(data: str, mime: str | None, what: str, label: str) -> None:
        path, why = _save(data, mime, f"{tool}-{ctx.run_id}-{len(artifacts) + 1}", out_dir)
        if path is None:
            texts.append(f"[{what} {label}not kept: {why}]")
            return
        artifacts.append(
            Artifact(
                path=path,
                mime_type=mime or "application/octet-stream",
                source=source,
                description=f"{what} returned by the MCP tool {tool} of {server}",
            )
        )
        texts.append(f"[{what} {label}saved: {path.name} ({mime or 'unknown type'})]")

    for block in result.content or []:
        kind = getattr(block, "type", None)
        if kind == "text":
            texts.append(block.text)
        elif kind in ("image", "audio"):
            keep(block.data, block.mime_type, kind, "")
        elif kind == "resource":
            res = block.resource
            if getattr(res, "text", None) is not None:
                texts.append(f"[resource {res.uri}]\n{res.text}")
            else:
                keep(res.blob, res.mime_type, "resource", f"{res.uri} ")
        elif kind == "resource_link":
            about = f": {block.description}" if block.description else ""
            texts.append(f"[resource link: {block.name} <{block.uri}>{about}]")
        else:  # a content type newer than this code: say so rather than drop it silently
            texts.append(f"[{kind or 'unknown'} content not shown]")
    structured = getattr(result, "structured_content", None)
    if not texts and structured is not None:
        texts.append(json.dumps(structured, ensure_ascii=False, default=str))
    text = "\n".join(texts) if texts else "(no output)"
    is_error = bool(result.is_error)
    if is_error and not text.startswith("error"):
        text = f"error: {text}"
    metadata: dict[str, Any] = {"mcp_server": server, "mcp_tool": tool}
    if structured is not None:
        metadata["structured"] = structured
    return ToolOutput(text=text, is_error=is_error, artifacts=artifacts, metadata=metadata)
