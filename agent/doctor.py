"""`harmonygraph doctor`: what works on this machine, one line each, with what to do."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["Check", "ServerProbeError", "probe_server", "run_checks"]


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = False


def _vocabulary() -> Check:
    from harmonygraph.harmony.encoding import vocabulary_status

    ok, line = vocabulary_status()
    return Check("vocabulary", ok, line, required=True)


def _model(base_url: str | None) -> Check:
    import httpx
    from harmonygraph.settings import settings

    env = settings()
    url = (base_url or env.base_url).rstrip("/")
    headers = {"Authorization": f"Bearer {env.api_key}"}
    try:
        r = httpx.get(f"{url}/models", timeout=3.0, headers=headers)
    except httpx.HTTPError as exc:
        return Check(
            "model endpoint",
            False,
            f"nothing answers at {url} ({type(exc).__name__}): start vLLM/Ollama there or pass "
            "--base-url / set HARMONYGRAPH_BASE_URL (the demo needs no server)",
        )
    if r.status_code in (401, 403):
        return Check(
            "model endpoint", False, f"{url} refused the API key: set HARMONYGRAPH_API_KEY"
        )
    if r.status_code != 200:
        return Check("model endpoint", False, f"{url}/models answered HTTP {r.status_code}")
    try:
        names = [m["id"] for m in r.json().get("data", [])]
    except ValueError:
        return Check(
            "model endpoint",
            False,
            f"{url}/models did not answer JSON: is it an OpenAI-compatible server?",
        )
    return Check("model endpoint", True, f"{url} serves {', '.join(names) or 'no models'}")


def _docker() -> Check:
    """Asks the sandbox itself: the same engine, image and settings a run would use."""
    from harmonygraph.sandbox import DockerSandbox, SandboxConfig, SandboxError

    sandbox = DockerSandbox(SandboxConfig.from_env())
    try:
        info = sandbox.check()
    except SandboxError as exc:
        return Check("docker", False, f"{exc} (or use HARMONYGRAPH_SANDBOX=local, which is weaker)")
    except Exception as exc:  # the engine's own errors (API, socket, permissions)
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Check(
            "docker", False,
            f"no Docker engine answers ({first}): start one (as root: dockerd --iptables=false "
            "--bridge=none &) or use HARMONYGRAPH_SANDBOX=local",
        )  # fmt: skip
    return Check("docker", True, f"engine {info['engine']}, image {info['image']} present")


def _postgres() -> Check:
    from harmonygraph.settings import settings

    url = settings().database_url
    if url:
        try:
            import psycopg
        except ImportError:
            return Check(
                "postgres", False, "psycopg is not installed: pip install 'harmonygraph[retrieval]'"
            )
        try:
            with psycopg.connect(url, connect_timeout=3) as conn:
                row = conn.execute(
                    "select extversion from pg_extension where extname = 'vector'"
                ).fetchone()
        except psycopg.Error as exc:
            return Check(
                "postgres", False, f"DATABASE_URL does not connect: {str(exc).splitlines()[0]}"
            )
        if row is None:
            return Check(
                "postgres",
                False,
                "connected, but pgvector is not enabled: CREATE EXTENSION vector "
                "(or let `harmonygraph index add` do it)",
            )
        return Check("postgres", True, f"DATABASE_URL connects, pgvector {row[0]}")
    from harmonygraph.tools.retrieval.db import import_pgserver
    from harmonygraph.tools.retrieval.errors import DatabaseUnavailableError

    try:
        import_pgserver()
    except DatabaseUnavailableError:
        return Check(
            "postgres",
            False,
            "no DATABASE_URL and pgserver is not installed: pip install 'harmonygraph[retrieval]'",
        )
    return Check(
        "postgres",
        True,
        "embedded Postgres available (pgserver); `harmonygraph db start` starts it",
    )


def run_checks(base_url: str | None = None) -> list[Check]:
    return [_vocabulary(), _model(base_url), _docker(), _postgres()]


# -- doctor --server URL: what a live server supports ----------------------------------------


class ServerProbeError(RuntimeError):
    """Nothing usable answers at the URL given to `harmonygraph doctor --server`."""


def probe_server(
    url: str, *, api_key: str | None = None, model: str | None = None, timeout: float = 20.0
) -> list[Check]:
    """Which path and features the server at `url` supports, one `Check` each: the server
    and its version, the models, the structured-output field it enforces, the reasoning
    field of its chat deltas, token ids on `/v1/completions`, `/v1/responses`, and the path
    to use. Each feature is asked of the server itself with a tiny request (a few tokens),
    never assumed from its name. Raises `ServerProbeError` when nothing answers at all.
    """
    import httpx
    from harmonygraph.models._server import api_root, parse_version, vllm_structured_fields
    from harmonygraph.settings import settings

    base = url.rstrip("/")
    if not base.endswith("/v1"):
        base = f"{base}/v1"
    root = api_root(base)
    key = api_key or settings().api_key
    http = httpx.Client(timeout=timeout, headers={"Authorization": f"Bearer {key}"})

    def get(path: str) -> httpx.Response | None:
        try:
            return http.get(path)
        except httpx.HTTPError:
            return None

    def post(path: str, body: dict[str, object]) -> httpx.Response | None:
        try:
            return http.post(path, json=body)
        except httpx.HTTPError:
            return None

    def json_of(response: httpx.Response | None) -> dict[str, Any] | None:
        if response is None or response.status_code != 200:
            return None
        try:
            data = response.json()
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    with http:
        checks: list[Check] = []
        models = get(f"{base}/models")
        vllm = json_of(get(f"{root}/version"))
        ollama = json_of(get(f"{root}/api/version")) if vllm is None else None
        if models is None and vllm is None and ollama is None:
            raise ServerProbeError(
                f"nothing answers at {base}: start the server, or pass its URL as "
                "--server http://HOST:PORT/v1"
            )
        if models is not None and models.status_code in (401, 403):
            raise ServerProbeError(
                f"{base} refused the API key (HTTP {models.status_code}): pass --api-key or "
                "set HARMONYGRAPH_API_KEY"
            )
        cards = (json_of(models) or {}).get("data") or []
        names = [str(c.get("id")) for c in cards if isinstance(c, dict)]
        owners = {str(c.get("owned_by", "")).lower() for c in cards if isinstance(c, dict)}
        if vllm is not None:
            kind, version = "vllm", parse_version(str(vllm.get("version", "")))
            checks.append(Check("server", True, f"vLLM {vllm.get('version')} (/version)"))
        elif ollama is not None or owners & {"library", "ollama"}:
            kind = "ollama"
            version = parse_version(str((ollama or {}).get("version", "")))
            shown = (ollama or {}).get("version", "version unknown")
            checks.append(Check("server", True, f"Ollama {shown} (/api/version)"))
        else:
            kind, version = "unknown", None
            checks.append(
                Check(
                    "server",
                    True,
                    "unknown: no /version (vLLM) nor /api/version (Ollama); a hosted "
                    "OpenAI-compatible API, probed by what it answers",
                )
            )
        name = model or (names[0] if names else None)
        if name is None:
            checks.append(
                Check(
                    "models",
                    False,
                    f"{base}/models lists no model: pass --model NAME to probe the rest",
                )
            )
            return checks
        checks.append(Check("models", True, ", ".join(names) or f"{name} (from --model)"))

        # structured output: which field is enforced (vLLM only logs the others)
        if kind == "vllm":
            enforced = sorted(vllm_structured_fields(version))
            ignored = sorted({"structured_outputs", "guided_json"} - set(enforced))
            detail = ", ".join(enforced) or "none known for this version"
            if ignored:
                detail += f" ({', '.join(ignored)} would be ignored: output unconstrained)"
            checks.append(Check("structured output", bool(enforced), detail))
        elif kind == "ollama":
            checks.append(
                Check(
                    "structured output",
                    True,
                    "format (/api/generate, whole completion) and response_format (chat)",
                )
            )
        else:
            checks.append(
                Check(
                    "structured output",
                    False,
                    "not knowable from outside: response_format may or may not be enforced; "
                    "answers are validated and retried",
                )
            )

        # reasoning field in chat deltas
        chat_body: dict[str, object] = {
            "model": name,
            "messages": [{"role": "user", "content": "Say hi."}],
            "stream": True,
            "max_tokens": 24,
        }
        if kind != "ollama":
            chat_body["max_completion_tokens"] = 24
        fields_seen: list[str] = []
        chat_status = "no answer"
        try:
            with http.stream("POST", f"{base}/chat/completions", json=chat_body) as response:
                chat_status = f"HTTP {response.status_code}"
                if response.status_code == 200:
                    for line in response.iter_lines():
                        payload = line.removeprefix("data: ").strip()
                        if not line.startswith("data: ") or payload == "[DONE]":
                            continue
                        try:
                            chunk = json.loads(payload)
                        except ValueError:
                            continue
                        for choice in chunk.get("choices") or []:
                            delta = choice.get("delta") or {}
                            for field in ("reasoning", "reasoning_content"):
                                if delta.get(field) and field not in fields_seen:
                                    fields_seen.append(field)
        except httpx.HTTPError as exc:
            chat_status = type(exc).__name__
        if fields_seen:
            checks.append(
                Check("reasoning field", True, " and ".join(fields_seen) + " (chat deltas)")
            )
        elif chat_status == "HTTP 200":
            checks.append(
                Check(
                    "reasoning field",
                    False,
                    "no reasoning in the first chat deltas: the server hides it or leaves "
                    "harmony unparsed",
                )
            )
        else:
            checks.append(
                Check("reasoning field", False, f"/v1/chat/completions answered {chat_status}")
            )

        # token ids on /v1/completions
        completion = post(
            f"{base}/completions",
            {"model": name, "prompt": "Hi", "max_tokens": 1, "return_token_ids": True},
        )
        data = json_of(completion)
        choices = (data or {}).get("choices") or []
        first = choices[0] if choices and isinstance(choices, list) else {}
        if isinstance(first, dict) and first.get("token_ids") is not None:
            checks.append(Check("token ids", True, "return_token_ids honoured on /v1/completions"))
        elif data is not None:
            checks.append(
                Check(
                    "token ids",
                    False,
                    "/v1/completions ignores return_token_ids: token-exact continuation "
                    "falls back to re-encoding the text",
                )
            )
        else:
            status = "no answer" if completion is None else f"HTTP {completion.status_code}"
            checks.append(Check("token ids", False, f"/v1/completions answered {status}"))

        # /v1/responses
        responses = post(
            f"{base}/responses", {"model": name, "input": "Say hi.", "max_output_tokens": 16}
        )
        token_ids = checks[-1].ok
        if responses is not None and responses.status_code == 200:
            has_responses = True
            checks.append(Check("responses", True, "/v1/responses answers"))
        else:
            has_responses = False
            status = "no answer" if responses is None else f"HTTP {responses.status_code}"
            checks.append(Check("responses", False, f"/v1/responses: {status}"))

        # the path to use
        if kind == "vllm" and token_ids:
            path = "completions: harmony rendered here, token-exact, built-in tools, constrained output"
        elif kind == "vllm":
            path = "completions (this vLLM returns no token ids: text re-encoded) or chat"
        elif kind == "ollama":
            path = "ollama-raw: /api/generate with raw harmony (built-in tools, format); chat otherwise"
        elif has_responses:
            path = "responses: reasoning items and function calls round-trip; chat otherwise"
        else:
            path = "chat"
        checks.append(Check("path", True, f"api={path}"))
        return checks
