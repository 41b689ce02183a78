"""`harmonygraph doctor`: what works on this machine, one line each, with what to do."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Check", "run_checks"]


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
