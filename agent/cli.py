"""The `harmonygraph` command."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="harmonygraph",
    help="Drive gpt-oss through harmony tool calls with LangGraph.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _mount_subcommands() -> None:
    # Each feature owns its sub-command module; they import their heavy dependencies
    # lazily so that `harmonygraph --help` stays fast.
    from sandbox.cli import app as sandbox_app
    from tools.browser.cli import app as browse_app
    from tools.retrieval.cli import db_app, index_app

    app.add_typer(sandbox_app, name="sandbox")
    app.add_typer(browse_app, name="browse")
    app.add_typer(db_app, name="db")
    app.add_typer(index_app, name="index")


def main() -> None:
    _mount_subcommands()
    app()
