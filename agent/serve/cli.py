"""`harmonygraph serve`: the Responses endpoint and the dashboard; `serve keys` manages keys.

harmonygraph serve --task helper.yaml --task analyst.yaml --port 8000
harmonygraph serve --agent mypackage.agents:support --show-reasoning support
harmonygraph serve keys create alice [--show-reasoning] [--max-concurrent 4] [--per-minute 60]
harmonygraph serve keys list | revoke KEY_ID
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console

app = typer.Typer(
    rich_markup_mode=None,
    help="Serve agents as an OpenAI Responses endpoint, with the dashboard.",
    no_args_is_help=False,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(
    rich_markup_mode=None, help="API keys: create (shown once), list, revoke.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")
console = Console(highlight=False)
err = Console(stderr=True, highlight=False)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url", help="Postgres URL (env DATABASE_URL; default: the embedded one)"
    ),
]


class ServeSetupError(RuntimeError):
    """The served agents cannot be set up (a task file, an import, a duplicate name)."""


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/] {message}", soft_wrap=True)
    return typer.Exit(2)


def load_agents(
    tasks: list[Path],
    refs: list[str],
    *,
    show_reasoning: list[str] = (),  # type: ignore[assignment]
    base_url: str | None = None,
    model: str | None = None,
    api: str | None = None,
) -> list[Any]:
    """The served agents: one per task file (named by its `name`) and per `module:obj`
    (an `Agent`, a `ServedAgent`, or a list of them)."""
    from harmonygraph.engine import Agent
    from harmonygraph.serve.service import ServedAgent
    from harmonygraph.task import TaskError, agent_for_task, import_object, load_task

    served: list[ServedAgent] = []
    for path in tasks:
        try:
            spec = load_task(path)
            agent = agent_for_task(spec, base_url=base_url, model=model, api=api)
        except TaskError as exc:
            raise ServeSetupError(str(exc)) from None
        served.append(ServedAgent(spec.name, agent))
    for ref in refs:
        try:
            obj = import_object(ref, Path.cwd())
        except TaskError as exc:
            raise ServeSetupError(str(exc)) from None
        for item in obj if isinstance(obj, list | tuple) else [obj]:
            if isinstance(item, ServedAgent):
                served.append(item)
            elif isinstance(item, Agent):
                served.append(ServedAgent(item.name, item))
            else:
                raise ServeSetupError(
                    f"{ref} is a {type(item).__name__}, not an Agent or ServedAgent"
                )
    names = [s.name for s in served]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ServeSetupError(f"two served agents are named {', '.join(dupes)}: rename one")
    for name in show_reasoning:
        if name not in names:
            raise ServeSetupError(f"--show-reasoning {name}: no served agent has that name")
    for s in served:
        s.show_reasoning = s.show_reasoning or s.name in show_reasoning
    return served


@app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    task: Annotated[
        list[Path], typer.Option("--task", help="a task file to serve (repeatable)")
    ] = [],  # noqa: B006
    agent: Annotated[
        list[str], typer.Option("--agent", help="module:obj, an Agent to serve (repeatable)")
    ] = [],  # noqa: B006
    show_reasoning: Annotated[
        list[str],
        typer.Option(
            "--show-reasoning", help="an agent whose reasoning clients may see (repeatable)"
        ),
    ] = [],  # noqa: B006
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    database_url: DatabaseUrl = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="model server for task files")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="model name for task files")] = None,
    api: Annotated[str | None, typer.Option("--api")] = None,
    max_body_bytes: Annotated[int, typer.Option("--max-body-bytes")] = 1_000_000,
    max_concurrent: Annotated[int, typer.Option("--max-concurrent", help="per key")] = 16,
    per_minute: Annotated[int, typer.Option("--per-minute", help="requests per key")] = 600,
    survey_agent: Annotated[
        str | None,
        typer.Option("--survey-agent", help="served agent whose model runs uploaded surveys"),
    ] = None,
    reports_dir: Annotated[Path, typer.Option("--reports-dir")] = Path(".harmonygraph") / "reports",
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            help="server processes on one port (each enforces its own share of a key's "
            "limits, as replicas do)",
        ),
    ] = 1,
) -> None:
    """Serve the agents at /v1/responses and the dashboard at /, until interrupted."""
    if ctx.invoked_subcommand is not None:
        return
    if not task and not agent:
        raise _fail("give at least one agent: --task FILE or --agent module:obj")
    from harmonygraph.tools.retrieval.db import database_url as resolve_url

    options = ServeOptions(
        tasks=[str(t.resolve()) for t in task], agents=list(agent),
        show_reasoning=list(show_reasoning), base_url=base_url, model=model, api=api,
        database_url=resolve_url(database_url), max_body_bytes=max_body_bytes,
        max_concurrent=max_concurrent, per_minute=per_minute, survey_agent=survey_agent,
        reports_dir=str(reports_dir.resolve()),
    )  # fmt: skip
    try:
        config = options.config()  # in this process too: a bad option fails here, once
    except ServeSetupError as exc:
        raise _fail(str(exc)) from None
    if workers == 1:
        run(config, host, port)
        return
    import uvicorn

    _announce(config, host, port, f" · {workers} workers")
    # Each worker builds its own agents and app from the same options (uvicorn spawns
    # fresh interpreters: nothing of this process is inherited but the environment).
    os.environ[_WORKER_OPTIONS] = options.model_dump_json()
    uvicorn.run("harmonygraph.serve.cli:worker_app", factory=True, workers=workers,
                host=host, port=port, log_level="warning")  # fmt: skip


_WORKER_OPTIONS = "HARMONYGRAPH_SERVE_OPTIONS"


class ServeOptions(BaseModel):
    """What `harmonygraph serve` was given, resolved (absolute paths, the database URL):
    enough for each worker process to build the same `ServeConfig`."""

    tasks: list[str]
    agents: list[str]
    show_reasoning: list[str]
    base_url: str | None
    model: str | None
    api: str | None
    database_url: str
    max_body_bytes: int
    max_concurrent: int
    per_minute: int
    survey_agent: str | None
    reports_dir: str

    def config(self) -> Any:
        """The `ServeConfig`, or `ServeSetupError` (a task file, an import, a name)."""
        from harmonygraph.serve.app import ServeConfig

        served = load_agents([Path(t) for t in self.tasks], self.agents,
                             show_reasoning=self.show_reasoning, base_url=self.base_url,
                             model=self.model, api=self.api)  # fmt: skip
        survey_model = None
        if self.survey_agent:
            found = next((s for s in served if s.name == self.survey_agent), None)
            if found is None:
                raise ServeSetupError(
                    f"--survey-agent {self.survey_agent}: no served agent has that name"
                )
            survey_model = found.agent.model
        return ServeConfig(
            agents=served, database_url=self.database_url, max_body_bytes=self.max_body_bytes,
            max_concurrent=self.max_concurrent, per_minute=self.per_minute,
            survey_model=survey_model, reports_dir=Path(self.reports_dir),
        )  # fmt: skip


def worker_app() -> Any:
    """uvicorn's app factory in each process of `serve --workers N`."""
    from harmonygraph.serve.app import create_app

    config = ServeOptions.model_validate_json(os.environ[_WORKER_OPTIONS]).config()
    app = create_app(config)
    _tune_collector()
    return app


def _announce(config: Any, host: str, port: int, extra: str = "") -> None:
    names = ", ".join(s.name for s in config.agents) or "none"
    err.print(f"[bold]harmonygraph serve[/] · agents: {names} · http://{host}:{port}/ "
              f"(API at /v1, dashboard at /){extra}", soft_wrap=True)  # fmt: skip


def _tune_collector() -> None:
    """This process only serves: what is loaded now (modules, agents) lives as long as it,
    so the collector stops scanning it (freeze), and collects young objects less often.
    Many runs at once keep many objects alive, and the default thresholds made the
    collector a quarter of the CPU of 500 concurrent runs (README, Benchmarks)."""
    import gc

    gc.collect()  # what is garbage now (a demo run before `demo --serve`) is not kept
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def run(config: Any, host: str, port: int) -> None:
    import uvicorn
    from harmonygraph.serve.app import create_app

    _announce(config, host, port)
    app = create_app(config)
    _tune_collector()
    uvicorn.run(app, host=host, port=port, log_level="warning")


def serve_report(out: Path, *, host: str = "127.0.0.1", port: int = 8000,
                 database_url: str | None = None, to_stderr: bool = False) -> None:  # fmt: skip
    """`harmonygraph demo --serve`: the report in `out` on the dashboard, with a key to sign in
    (printed on stdout, or on stderr where stdout is the demo's JSON).

    The dashboard's tables go in `database_url` (or `DATABASE_URL`), else in the demo's own
    embedded database, which stops with this process like the rest of the demo: Ctrl-C
    leaves nothing running.
    """
    from harmonygraph.concurrency import run_sync
    from harmonygraph.serve.app import ServeConfig
    from harmonygraph.serve.dashboard import report_id
    from harmonygraph.serve.store import ServeStore
    from harmonygraph.settings import harmonygraph_home, settings
    from harmonygraph.tools.retrieval.db import start_embedded

    url = database_url or settings().database_url
    if not url:
        url = start_embedded(harmonygraph_home() / "demo-pgdata", keep_running=False)

    async def key() -> str:
        async with ServeStore(url, max_size=1) as store:
            _, secret = await store.create_key("demo", show_reasoning=True)
            return secret

    secret = run_sync(key())
    page = f"http://{host}:{port}/signin?next=/reports/{report_id(out)}"
    sys.stdout.flush()  # what the demo printed (its JSON), out before the server starts
    say = err if to_stderr else console
    say.print(f"the report in the dashboard: {page}", soft_wrap=True, markup=False)
    say.print(f"sign in with the key {secret} · Ctrl-C stops the server", soft_wrap=True,
              markup=False)  # fmt: skip
    run(ServeConfig(agents=[], database_url=url, reports=[("Survey demo", out)]), host, port)


# -- keys --------------------------------------------------------------------------------


def _store_call(database_url: str | None, fn: Any) -> Any:
    from harmonygraph.concurrency import run_sync
    from harmonygraph.serve.store import ServeStore
    from harmonygraph.tools.retrieval.db import database_url as resolve_url

    url = resolve_url(database_url)

    async def go() -> Any:
        async with ServeStore(url, max_size=1) as store:
            return await fn(store)

    return run_sync(go())


@keys_app.command("create")
def keys_create(
    name: str,
    show_reasoning: Annotated[
        bool, typer.Option("--show-reasoning", help="may see reasoning in the dashboard")
    ] = False,
    max_concurrent: Annotated[int | None, typer.Option("--max-concurrent")] = None,
    per_minute: Annotated[int | None, typer.Option("--per-minute")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """A new key, printed once: only its hash is kept."""
    record, secret = _store_call(database_url, lambda st: st.create_key(
        name, show_reasoning=show_reasoning, max_concurrent=max_concurrent, per_minute=per_minute))  # fmt: skip
    err.print(f"created {record.id} ({name}); the key is shown only now:")
    sys.stdout.write(secret + "\n")


@keys_app.command("list")
def keys_list(database_url: DatabaseUrl = None) -> None:
    """Every key: id, name, a hint of the key, limits, and whether it is revoked."""
    import datetime as dt

    for k in _store_call(database_url, lambda st: st.list_keys()):
        state = "revoked" if k.revoked_at else "active"
        made = dt.datetime.fromtimestamp(k.created_at).strftime("%Y-%m-%d %H:%M")
        sys.stdout.write(
            f"{k.id}  {k.name:16} {k.hint}  {state:8} created {made}  "
            f"reasoning={'yes' if k.show_reasoning else 'no'} "
            f"max_concurrent={k.max_concurrent or '-'} per_minute={k.per_minute or '-'}\n"
        )


@keys_app.command("revoke")
def keys_revoke(key_id: str, database_url: DatabaseUrl = None) -> None:
    """Revoke a key by its id (or name): its requests are refused from now on."""
    if not _store_call(database_url, lambda st: st.revoke_key(key_id)):
        raise _fail(f"no active key {key_id}")
    console.print(f"revoked {key_id}")
