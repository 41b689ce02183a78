"""`harmonygraph batch TASKS…`: many task files, or task files over JSONL/CSV inputs, on Ray."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["app"]

app = typer.Typer(rich_markup_mode=None, add_completion=False)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg="red")
    return typer.Exit(code)


@app.command()
def batch(
    tasks: Annotated[
        list[Path],
        typer.Argument(
            help="task files (YAML) or folders of them; JSONL/CSV files of inputs to run "
            "every task over",
            show_default=False,
        ),
    ],
    address: Annotated[
        str | None,
        typer.Option("--address", help="a Ray cluster (auto, ray://host:10001); default: local"),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, help="runs in flight at once")
    ] = 16,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="worker processes (default: one per CPU)"),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="results: one folder per run")] = Path(
        "batch-out"
    ),
    as_json: Annotated[
        bool, typer.Option("--json", help="print batch.json's summary as JSON, no progress")
    ] = False,
    retries: Annotated[
        int, typer.Option("--retries", min=0, help="further attempts of a failed run")
    ] = 2,
    max_inflight: Annotated[
        int,
        typer.Option("--max-inflight", min=1, help="model requests in flight, cluster-wide"),
    ] = 16,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url", help="checkpoints' Postgres (default DATABASE_URL, else embedded)"
        ),
    ] = None,
    batch_id: Annotated[
        str | None, typer.Option("--batch-id", help="the batch's id (default: from --out)")
    ] = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="override the task files' model server")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="override the model name")] = None,
) -> None:
    """Run a batch of agent runs as Ray tasks, each checkpointed in Postgres.

    Run it again with the same --out to go on after an interruption: completed runs are
    not repeated, interrupted ones resume from their last step.
    """
    from harmonygraph.batch.driver import BatchProgress, run_batch
    from harmonygraph.batch.items import BatchInputError

    status_line = [0]

    def show(p: BatchProgress) -> None:
        line = p.line()
        if sys.stderr.isatty():
            sys.stderr.write("\r\x1b[2K" + line)
        elif p.elapsed - status_line[0] >= 5 or p.done + p.failed == p.total:
            status_line[0] = int(p.elapsed)
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    try:
        report = run_batch(
            tasks, out=out, address=address, concurrency=concurrency, workers=workers,
            retries=retries, max_inflight=max_inflight, database_url=database_url,
            batch_id=batch_id, base_url=base_url, model=model,
            on_progress=None if as_json else show,
        )  # fmt: skip
    except (BatchInputError, ImportError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        data = report.to_dict()
        sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
    else:
        if sys.stderr.isatty():
            sys.stderr.write("\n")
        for r in report.failed:
            typer.secho(f"failed {r['key']}: {r.get('error')}", err=True, fg="red")
        typer.echo(f"{report.progress.line()}\nresults in {report.out} (batch.json)")
    raise typer.Exit(0 if report.ok else 1)
