"""`harmonygraph browse`: run the browser tool by hand and see exactly what the model sees."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any, get_args

import typer
from harmonygraph.concurrency import run_sync
from harmonygraph.schema_errors import validation_problems

if TYPE_CHECKING:
    from harmonygraph.tools.base import ToolOutput

app = typer.Typer(
    rich_markup_mode=None,
    name="browse",
    help="Search, open and find as the model's `browser` tool does; prints the model's view.",
    no_args_is_help=True,
)

AllowHost = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-host",
        help="Host exempt from the public-address rule: HOST:PORT opens that one port "
        "(127.0.0.1:8080), a bare HOST opens every port of it. Repeatable.",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print text and metadata as JSON.")]
Backend = Annotated[
    str | None,
    typer.Option(
        "--backend", help="ddgs, searxng or local (default: HARMONYGRAPH_SEARCH_BACKEND)."
    ),
]


def _run(
    calls: list[tuple[str, dict[str, Any]]],
    *,
    allow_host: list[str] | None,
    backend: str | None = None,
    as_json: bool = False,
) -> None:
    import pydantic
    from harmonygraph.tools.base import ToolContext
    from harmonygraph.tools.browser.config import BackendName, BrowserConfig
    from harmonygraph.tools.browser.toolset import BrowserToolset

    valid = get_args(BackendName)
    if backend is not None and backend not in valid:
        typer.echo(
            f"error: unknown search backend {backend!r}; choose one of {', '.join(valid)}",
            err=True,
        )
        raise typer.Exit(2)
    try:
        config = BrowserConfig.from_env(search_backend=backend)
        if allow_host:
            config = config.model_validate(
                {**config.model_dump(), "allow_hosts": [*config.allow_hosts, *allow_host]}
            )
    except pydantic.ValidationError as exc:
        typer.echo(f"error: bad browser configuration: {_one_line(exc)}", err=True)
        raise typer.Exit(2) from None
    except ValueError as exc:
        typer.echo(f"error: bad browser configuration: {exc}", err=True)
        raise typer.Exit(2) from None
    toolset = BrowserToolset(config)

    async def go() -> list[ToolOutput]:
        ctx = ToolContext(run_id="cli")
        await toolset.start(ctx)
        outputs = []
        try:
            for name, args in calls:
                out = await toolset.call(name, args, ctx)
                outputs.append(out)
                if out.is_error:
                    break
        finally:
            await toolset.close(ctx)
            await toolset.aclose()
        return outputs

    outputs = run_sync(go())
    last = outputs[-1]
    if as_json:
        typer.echo(
            json.dumps(
                {"text": last.text, "is_error": last.is_error, "metadata": last.metadata},
                ensure_ascii=False,
                indent=2,
            )
        )
    else:
        typer.echo(last.text)
    if last.is_error:
        refused = last.metadata.get("refused_host")
        if refused:
            typer.echo(
                f"hint: to open it anyway, pass --allow-host {refused} (or add it to "
                "HARMONYGRAPH_BROWSER_ALLOW_HOSTS)",
                err=True,
            )
        raise typer.Exit(1)


def _one_line(exc: Any) -> str:
    """A pydantic ValidationError as one line: `field: message; field: message`."""
    return "; ".join(validation_problems(exc, noun="setting", root="value", show_input=False))


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to search for.")],
    topn: Annotated[int, typer.Option(help="Number of results.")] = 10,
    backend: Backend = None,
    as_json: AsJson = False,
    allow_host: AllowHost = None,
) -> None:
    """Search and print the results page as the model sees it."""
    _run(
        [("search", {"query": query, "topn": topn})],
        allow_host=allow_host,
        backend=backend,
        as_json=as_json,
    )


@app.command("open")
def open_(
    url: Annotated[str, typer.Argument(help="http(s) URL, or a doc:// URL of the local backend.")],
    loc: Annotated[int, typer.Option(help="First line to show.")] = -1,
    num_lines: Annotated[int, typer.Option(help="Lines to show (default: configured).")] = -1,
    view_source: Annotated[bool, typer.Option(help="Show the raw source.")] = False,
    backend: Backend = None,
    as_json: AsJson = False,
    allow_host: AllowHost = None,
) -> None:
    """Fetch a page and print the view the model gets."""
    args = {"id": url, "loc": loc, "num_lines": num_lines, "view_source": view_source}
    _run([("open", args)], allow_host=allow_host, backend=backend, as_json=as_json)


@app.command()
def find(
    url: Annotated[str, typer.Argument(help="The page to open first.")],
    pattern: Annotated[str, typer.Argument(help="Text to find (case-insensitive).")],
    backend: Backend = None,
    as_json: AsJson = False,
    allow_host: AllowHost = None,
) -> None:
    """Open a page, then find a pattern in it; prints the find results page."""
    _run(
        [("open", {"id": url}), ("find", {"pattern": pattern})],
        allow_host=allow_host,
        backend=backend,
        as_json=as_json,
    )
