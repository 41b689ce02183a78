"""The `harmonygraph` command."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core
import typer.main
from rich.console import Console
from rich.text import Text
from typer import _click as click  # typer ≥ 0.29 carries its own click

# Each feature owns its sub-command module, imported only when that command runs, so that
# `harmonygraph --help` and the top-level commands do not pay for every feature's imports.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "harmony": ("harmonygraph.harmony.cli:app", "Render prompts and parse completions in harmony."),
    "sandbox": ("harmonygraph.sandbox.cli:app", "The sandboxed Python the python tool runs in."),
    "browse": ("harmonygraph.tools.browser.cli:app", "The browser tool, as the model sees it."),
    "db": ("harmonygraph.tools.retrieval.cli:db_app", "The embedded Postgres (pgvector)."),
    "index": ("harmonygraph.tools.retrieval.cli:index_app", "Index documents and search them."),
    "mcp": (
        "harmonygraph.tools.mcp.cli:app",
        "Serve the built-in tools over MCP; list a server's tools.",
    ),
    "fake-server": (
        "harmonygraph.tracing.cli:app",
        "Serve the vLLM-like FakeOpenAIServer, scripted with completions.",
    ),
    "serve": (
        "harmonygraph.serve.cli:app",
        "Serve agents as an OpenAI Responses endpoint, with the dashboard.",
    ),
    "batch": ("harmonygraph.batch.cli:app", "Run many task files or inputs as a batch on Ray."),
}


# Help in click's plain style (no rich rendering: `--help` imports nothing heavy), with
# click's own metavars (`--out PATH`) rather than typer's `<path>` tags.
_METAVARS = {"str": "TEXT", "path": "PATH", "int": "INTEGER", "float": "FLOAT", "bool": "BOOLEAN"}


def _no_type(ctx: click.Context) -> str:
    return ""  # an argument's help line names it; its help says what it takes


def _plain_metavars(command: click.Command) -> click.Command:
    for param in command.params:
        if param.metavar is not None or getattr(param, "is_flag", False):
            continue
        if isinstance(param, typer.core.TyperArgument):
            param.metavar = (param.name or "value").upper()
            param.display_type = _no_type  # type: ignore[method-assign]
        elif isinstance(param, typer.core.TyperOption) and not param.type_descriptor.is_choice:
            bare = param.bare_type().removeprefix("list[").removesuffix("]")
            param.metavar = _METAVARS.get(bare, bare.upper())
    for sub in getattr(command, "commands", {}).values():
        _plain_metavars(sub)
    return command


class _LazySubcommand(typer.core.TyperGroup):
    """Stands in a listing for a sub-command group; parsing hands over to the real one."""

    def __init__(self, name: str, target: str, help: str) -> None:
        super().__init__(name=name, help=help, short_help=help)
        self.target = target

    def real(self) -> click.Command:
        import importlib

        module, _, attr = self.target.partition(":")
        sub: typer.Typer = getattr(importlib.import_module(module), attr)
        command = typer.main.get_command(sub)
        command.name, command.help = self.name, command.help or self.help
        # Shell completion is the top command's business, not each group's.
        command.params = [p for p in command.params
                          if p.name not in ("install_completion", "show_completion")]  # fmt: skip
        return _plain_metavars(command)

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:  # fmt: skip
        return self.real().make_context(info_name, args, parent=parent, **extra)


class _Commands(typer.core.TyperGroup):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *SUBCOMMANDS]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in SUBCOMMANDS:
            target, help = SUBCOMMANDS[cmd_name]
            return _LazySubcommand(cmd_name, target, help)
        command = super().get_command(ctx, cmd_name)
        return _plain_metavars(command) if command is not None else None


app = typer.Typer(
    rich_markup_mode=None,
    name="harmonygraph",
    help="Drive gpt-oss through harmony tool calls with LangGraph.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=_Commands,
)
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

BaseUrl = Annotated[
    str | None,
    typer.Option("--base-url", help="OpenAI-compatible server URL (env HARMONYGRAPH_BASE_URL)"),
]
ModelName = Annotated[
    str | None, typer.Option("--model", help="model name (env HARMONYGRAPH_MODEL)")
]
Api = Annotated[
    str | None, typer.Option("--api", help="completions (harmony rendered here) or chat")
]


def fail(message: str, code: int = 2) -> typer.Exit:
    """One line on stderr and an exit code: how every command reports a user error."""
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    return typer.Exit(code)


def _n(count: int, noun: str) -> str:
    """`1 tool call`, `2 tool calls`: a count with its noun in the right number."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


# -- run --------------------------------------------------------------------------------


@app.command("run")
def run_task(
    task_file: Annotated[Path, typer.Argument(help="the task file (YAML)")],
    out: Annotated[
        Path, typer.Option("--out", help="folder for result.json and trace.jsonl")
    ] = Path("out/run"),
    base_url: BaseUrl = None,
    model: ModelName = None,
    api: Api = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    show_reasoning: Annotated[bool, typer.Option("--show-reasoning")] = False,
) -> None:
    """Run the agent a task file describes; write its result and trace to --out."""
    from harmonygraph.concurrency import iterate_sync
    from harmonygraph.engine import (
        AgentRunError,
        ReasoningDelta,
        RunDone,
        ToolCallEvent,
        ToolResultEvent,
    )
    from harmonygraph.task import TaskError, agent_for_task, load_task

    try:
        spec = load_task(task_file)
        out.mkdir(parents=True, exist_ok=True)
        trace_path = out / "trace.jsonl"
        trace_path.unlink(missing_ok=True)
        agent = agent_for_task(
            spec, base_url=base_url, model=model, api=api, artifacts_dir=out / "artifacts"
        )
    except (TaskError, ValueError, ImportError, OSError) as exc:
        raise fail(str(exc)) from None

    result = None
    error: AgentRunError | None = None
    try:
        with console.status(f"running {spec.name}…", spinner="dots") if not as_json else _null():
            for event in iterate_sync(agent.astream(spec.input, trace_path=trace_path)):
                if isinstance(event, RunDone):
                    result = event.result
                elif as_json:
                    continue
                elif isinstance(event, ToolCallEvent):
                    console.print(f"[cyan]→ {event.recipient}[/] {event.arguments[:200]}")
                elif isinstance(event, ToolResultEvent):
                    colour = "green" if event.status == "ok" else "yellow"
                    console.print(
                        f"[{colour}]← {event.recipient} {event.status}[/] ({event.duration_s * 1000:.0f} ms)"
                    )
                elif isinstance(event, ReasoningDelta) and show_reasoning:
                    console.print(f"[dim]{event.text}[/]", end="")
    except AgentRunError as exc:
        error, result = exc, exc.result
    except Exception as exc:  # a model server that is down, a tool set-up failure
        raise fail(f"{type(exc).__name__}: {exc}") from None
    assert result is not None
    payload = _result_payload(result)
    (out / "result.json").write_text(
        json.dumps(payload, ensure_ascii=False, indent=2, default=str), encoding="utf-8"
    )
    if as_json:
        _print_json(payload)
    else:
        if result.text:
            console.print(result.text)
        console.print(
            f"[dim]{result.status} · {_n(result.steps, 'step')} · "
            f"{_n(result.tool_calls, 'tool call')} · "
            f"{result.usage.input_tokens} in / {result.usage.output_tokens} out tokens"
            + (f" · ≈ ${result.cost_usd:.4f}" if result.cost_usd is not None else "")
            + f" · {out}/result.json, {trace_path}[/]"
        )
    if error is not None:
        raise fail(str(error), code=1)


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _result_payload(result: Any) -> dict[str, Any]:
    output = result.output
    if hasattr(output, "model_dump"):
        output = output.model_dump(mode="json")
    return {
        "status": result.status,
        "output": output,
        "text": result.text,
        "error": result.error,
        "output_errors": result.output_errors,
        "steps": result.steps,
        "tool_calls": result.tool_calls,
        "usage": result.usage.to_dict(),
        "cost_usd": result.cost_usd,
        "step_usage": result.step_usage,
        "artifacts": result.artifacts,
        "run_id": result.run_id,
        "trace": str(result.trace_path) if result.trace_path else None,
    }


# -- chat -------------------------------------------------------------------------------

CHAT_HELP = """commands: /reasoning low|medium|high · /show-reasoning · /save [PATH] · /usage · /help · /quit"""


@app.command("chat")
def chat(
    base_url: BaseUrl = None,
    model: ModelName = None,
    api: Api = None,
    reasoning: Annotated[str, typer.Option("--reasoning", help="low, medium or high")] = "medium",
    show_reasoning: Annotated[
        bool, typer.Option("--show-reasoning", help="print the chain of thought")
    ] = False,
    instructions: Annotated[str | None, typer.Option("--instructions")] = None,
    tools: Annotated[
        str, typer.Option("--tools", help="built-in tools, comma-separated: python,browser")
    ] = "",
) -> None:
    """Chat with a gpt-oss agent in the terminal, streaming its answers and tool calls."""
    from harmonygraph.concurrency import iterate_sync
    from harmonygraph.engine import (
        Agent,
        AgentRunError,
        CommentaryDelta,
        FinalDelta,
        ReasoningDelta,
        RunDone,
        ToolCallEvent,
        ToolResultEvent,
        estimate_cost,
    )
    from harmonygraph.harmony.prompt import parse_reasoning
    from harmonygraph.models import make_model

    try:
        level = parse_reasoning(reasoning)
        toolsets: list[Any] = []
        for name in [t.strip() for t in tools.split(",") if t.strip()]:
            if name == "python":
                from harmonygraph.tools.python import PythonToolset

                toolsets.append(PythonToolset())
            elif name == "browser":
                from harmonygraph.tools.browser import BrowserToolset

                toolsets.append(BrowserToolset())
            else:
                raise ValueError(f"unknown built-in tool {name!r}: use python or browser")
        client = make_model(base_url=base_url, model=model, api=api)
        agent: Agent[Any] = Agent(client, toolsets, instructions=instructions, reasoning=level)
    except (ValueError, ImportError) as exc:
        raise fail(str(exc)) from None
    session = agent.chat()
    console.print(f"[bold]harmonygraph chat[/] · {client.name} · reasoning {session.reasoning}")
    console.print(f"[dim]{CHAT_HELP}[/]")
    while True:
        try:
            line = input("you> ")
        except (EOFError, KeyboardInterrupt):
            console.print()
            break
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            cmd, _, arg = text.partition(" ")
            if cmd in ("/quit", "/exit"):
                break
            if cmd == "/help":
                console.print(CHAT_HELP)
            elif cmd == "/reasoning":
                try:
                    session.set_reasoning(arg or "")
                    console.print(f"[dim]reasoning effort: {session.reasoning}[/]")
                except ValueError as exc:
                    console.print(f"[red]{exc}[/]")
            elif cmd == "/show-reasoning":
                show_reasoning = not show_reasoning
                console.print(f"[dim]show reasoning: {'on' if show_reasoning else 'off'}[/]")
            elif cmd == "/save":
                path = session.save(arg.strip() or f"chat-{session.thread_id}.jsonl")
                console.print(f"[dim]trace saved to {path}[/]")
            elif cmd == "/usage":
                u = session.usage
                cost = estimate_cost(agent.model.name, u, agent.prices)
                console.print(
                    f"[dim]{_n(session.turns, 'turn')} · {u.input_tokens} in / {u.output_tokens} out tokens"
                    + (f" · ≈ ${cost:.4f}" if cost is not None else "")
                    + "[/]"
                )
            else:
                console.print(f"[red]unknown command {cmd}[/] · {CHAT_HELP}")
            continue
        console.print("[bold magenta]gpt-oss>[/] ", end="")
        out = _WordWrap(console, column=len("gpt-oss> "))
        in_reasoning = False
        try:
            for event in iterate_sync(session.asend_events(text)):
                if isinstance(event, ReasoningDelta):
                    if show_reasoning:
                        if not in_reasoning:
                            out.line_break()
                            out.write("thinking: ", style="dim italic")
                            in_reasoning = True
                        out.write(event.text, style="dim")
                elif isinstance(event, CommentaryDelta | FinalDelta):
                    if in_reasoning:
                        out.line_break()
                        in_reasoning = False
                    out.write(event.text)
                elif isinstance(event, ToolCallEvent):
                    out.line_break()
                    console.print(
                        f"[cyan]→ {event.recipient}[/] {event.arguments[:200]}", markup=True
                    )
                elif isinstance(event, ToolResultEvent):
                    out.line_break()
                    console.print(f"[green]← {event.recipient} {event.status}[/]")
                elif isinstance(event, RunDone):
                    out.line_break()
                    u, cost = event.result.usage, event.result.cost_usd
                    console.print(
                        f"[dim]({u.input_tokens} in / {u.output_tokens} out tokens"
                        + (f" · ≈ ${cost:.4f}" if cost is not None else "")
                        + ")[/]"
                    )
        except AgentRunError as exc:
            console.print(f"\n[red]the turn ended early: {exc}[/]")
        except Exception as exc:  # keep the session alive: a server hiccup is not the end
            console.print(f"\n[red]{type(exc).__name__}: {exc}[/]")


class _WordWrap:
    """Streamed text on a terminal, wrapped between words at the terminal's width (a
    word arrives in pieces; each is held until it ends). Not a terminal: written as is."""

    def __init__(self, console: Console, column: int = 0) -> None:
        self.console = console
        self.wrap = console.is_terminal
        self.width = console.width
        self.column = column
        self.word = ""
        self.style = ""

    def _emit(self, text: str, style: str = "") -> None:
        self.console.print(Text(text, style=style), end="", soft_wrap=True)

    def write(self, text: str, style: str = "") -> None:
        if not self.wrap:
            self._emit(text, style)
            return
        if style != self.style:
            self._flush_word()
            self.style = style
        for ch in text:
            if ch == "\n":
                self._flush_word()
                self._emit("\n")
                self.column = 0
            elif ch in " \t":
                self._flush_word()
                if 0 < self.column < self.width:  # no space at the start of a line
                    self._emit(" ")
                    self.column += 1
            else:
                self.word += ch
                if len(self.word) >= self.width:  # longer than a line: cut it
                    self._flush_word()

    def _flush_word(self) -> None:
        if not self.word:
            return
        if self.column and self.column + len(self.word) > self.width:
            self._emit("\n")
            self.column = 0
        self._emit(self.word, self.style)
        self.column += len(self.word)
        self.word = ""

    def line_break(self) -> None:
        """End the current line, if anything is on it."""
        self._flush_word()
        if self.column:
            self._emit("\n")
            self.column = 0


# -- replay -----------------------------------------------------------------------------


@app.command("replay")
def replay(
    trace_file: Annotated[Path, typer.Argument(help="a trace written by a run (JSON Lines)")],
    strict: Annotated[
        bool, typer.Option("--strict/--lenient", help="fail at the first request that differs")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Re-run a recorded run with the model and the tools replayed; say where it diverges."""
    from harmonygraph.engine.replay import replay_trace
    from harmonygraph.tracing import ReplayDivergence, Trace, TraceError

    try:
        # Loading checks every record's shape: a damaged file is one line naming file:line.
        report = replay_trace(Trace.load(trace_file), strict=strict)
    except TraceError as exc:
        raise fail(str(exc)) from None
    except ReplayDivergence as exc:
        if as_json:
            _print_json(
                {"ok": False, "step": exc.step, "divergence": exc.what,
                 "recorded": exc.recorded, "sent": exc.sent}
            )  # fmt: skip
        else:
            for line in exc.report().splitlines()[1:]:  # what was recorded, what is sent now
                err_console.print(line, markup=False, highlight=False, soft_wrap=True)
        raise fail(f"diverged at {exc}", code=1) from None
    except Exception as exc:  # a record the checks let through: still one line, never a traceback
        raise fail(
            f"{trace_file}: cannot replay this trace ({type(exc).__name__}: {str(exc)[:200]}); "
            "re-record it"
        ) from None
    if as_json:
        _print_json(report)
    else:
        console.print(
            f"[green]replayed[/] {_n(report['model_calls'], 'model call')} and "
            f"{_n(report['tool_calls'], 'tool call')}: "
            f"status {report['status']}, matches the recording"
        )


# -- demo -------------------------------------------------------------------------------


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option("--out", help="where report.md/.html/.pdf go")] = Path(
        "report"
    ),
    base_url: BaseUrl = None,
    model: ModelName = None,
    api: Api = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="fail where a request differs from the recording")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    survey: Annotated[
        Path | None,
        typer.Option(
            "--survey",
            help="your own survey export (CSV or JSON Lines) instead of the sample; "
            "needs --base-url/--model, as the recorded turns answer only the sample",
        ),
    ] = None,
    serve: Annotated[
        bool, typer.Option("--serve", help="then show the report in the dashboard (serve)")
    ] = False,
    port: Annotated[int, typer.Option("--port", help="the dashboard's port (--serve)")] = 8000,
) -> None:
    """Survey responses in, a cited report with charts out: the survey pipeline end to end.

    Without --base-url/--model the model's turns are replayed from the recorded trace in the package's survey_demo/ data, while every tool (Postgres, the sandbox, the renderer) runs for real.
    """
    import asyncio

    resources = None
    if survey is None:
        # The sample is known to be readable, so the sandbox's warm kernel and the demo's
        # database start first thing, in the background, while the pipeline's modules
        # import (seconds): the run finds them ready instead of waiting for them.
        from harmonygraph.graphs.prestart import SurveyResources

        resources = SurveyResources("auto", "demo").start()

    from harmonygraph.concurrency import run_sync
    from harmonygraph.graphs.report import (
        ReportWarning,
        SectionDone,
        StageDone,
        StageStarted,
        ToolActivity,
    )
    from harmonygraph.graphs.survey import DEMO_DATA, PipelineError, run_survey_pipeline
    from harmonygraph.tracing import ReplayDivergence, ReplayModel, Trace, TraceError

    responses = survey or DEMO_DATA / "responses.csv"
    current_date: str | None = None
    if survey is not None and not (base_url or model):
        raise fail(
            "--survey needs a live model (--base-url/--model): the recorded turns answer "
            "only the sample survey"
        )
    try:
        if base_url or model:
            from harmonygraph.models import make_model

            client: Any = make_model(base_url=base_url, model=model, api=api)
            mode = f"live: {client.name}"
        else:
            trace = Trace.load(DEMO_DATA / "demo_trace.jsonl")
            current_date = trace.header.get("current_date")
            client = ReplayModel(trace, strict=strict)
            mode = f"replaying {len(trace.model_calls)} recorded gpt-oss turns ({trace.header.get('model')})"
    except (TraceError, ValueError) as exc:
        if resources is not None:
            resources.close_sync()
        raise fail(str(exc)) from None

    warned: set[str] = set()  # warnings shown as they happened are not repeated at the end

    def progress(event: Any) -> None:
        if as_json:
            return
        if isinstance(event, StageStarted):
            console.print(f"[bold cyan]▸ {event.stage}[/] {event.detail}")
        elif isinstance(event, StageDone):
            console.print(
                f"  [green]✓ {event.stage}[/] {event.detail} [dim]({event.duration_s:.1f} s)[/]"
            )
        elif isinstance(event, SectionDone):
            mark = "[green]✓[/]" if event.supported else "[yellow]![/]"
            console.print(
                f"  {mark} section {event.index}/{event.total}: {event.title} "
                f"[dim]({_n(event.citations, 'citation')}, {_n(event.figures, 'figure')})[/]"
            )
        elif isinstance(event, ToolActivity) and event.status not in ("called", "ok"):
            console.print(f"    [yellow]{event.recipient}: {event.status}[/]")
        elif isinstance(event, ReportWarning):
            warned.add(event.message)
            console.print(f"  [yellow]warning:[/] {event.message}")

    if not as_json:
        console.print(f"[bold]harmonygraph demo[/] · {mode}")
    try:
        result = run_sync(
            run_survey_pipeline(
                responses,
                out,
                model=client,
                progress=progress,
                current_date=current_date,
                store="demo",
                resources=resources,
            )
        )
    except PipelineError as exc:
        kept = exc.partial.kept or exc.partial.delivered
        raise fail(f"{exc}" + (f" (kept: {', '.join(kept)})" if kept else "")) from None
    except ReplayDivergence as exc:
        raise fail(
            f"the replay diverged from the recording at {exc}; without --strict the demo "
            "follows the recorded turns in order",
            code=1,
        ) from None
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise fail("interrupted", code=130) from None
    if not serve:
        _SKIP_TEARDOWN.append("demo")  # everything is closed and written: see main()
    paths = {k: result.path(k) for k in ("md", "html", "pdf")}
    if as_json:
        t = result.timings
        _print_json(
            {
                "report": paths,
                "delivered": result.delivered,
                "warnings": result.warnings,
                "sandbox": result.sandbox,
                "timings": {
                    "total_s": round(t.total_s, 3),
                    "model_s": round(t.model_s, 3),
                    "tools_s": round(t.tools_s, 3),
                    "framework_s": round(t.framework_s, 3),
                    "model_calls": t.model_calls,
                    "tool_calls": t.tool_calls,
                },
            }
        )
        if serve:  # the JSON alone on stdout; where to sign in, on stderr
            from harmonygraph.serve.cli import serve_report

            serve_report(out, port=port, to_stderr=True)
        return
    for w in result.warnings:
        if w not in warned:
            console.print(f"[yellow]warning:[/] {w}")
    console.print("[bold green]report written:[/]")
    for kind, path in paths.items():
        if path:
            console.print(f"  {kind:5} {path}")
    if serve:
        from harmonygraph.serve.cli import serve_report

        serve_report(out, port=port)


# -- doctor -----------------------------------------------------------------------------


@app.command("doctor")
def doctor(
    base_url: BaseUrl = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    server: Annotated[
        str | None,
        typer.Option("--server", help="probe this server's path and features instead (URL)"),
    ] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", help="key for --server")] = None,
    model: Annotated[str | None, typer.Option("--model", help="model --server probes")] = None,
) -> None:
    """Check the vocabulary, the model endpoint, Docker and Postgres: one line each.

    With --server URL: which path and features that server supports (version, structured-output
    field, reasoning field, token ids, /v1/responses), asked with a few tiny requests."""
    if server is not None:
        _doctor_server(server, api_key, model, as_json)
        return
    from harmonygraph.doctor import run_checks

    checks = run_checks(base_url=base_url)
    # Required: the vocabulary, and the model endpoint when --base-url names one to check.
    missing = [c.name for c in checks if not c.ok and (c.required or (base_url and c.name == "model endpoint"))]  # fmt: skip
    if as_json:
        _print_json([c.__dict__ for c in checks])
    else:
        for c in checks:
            if c.ok:
                mark = "[green]✓[/]"
            elif c.name in missing:
                mark = "[red]✗[/]"
            else:
                mark = "[yellow]![/] [dim](optional)[/]"
            console.print(f"{mark} [bold]{c.name}[/]: {c.detail}", soft_wrap=True)
        if missing:
            console.print(f"[red]missing: {', '.join(missing)}[/] (required)")
    if missing:
        raise typer.Exit(1)


def _doctor_server(url: str, api_key: str | None, model: str | None, as_json: bool) -> None:
    from harmonygraph.doctor import ServerProbeError, probe_server

    try:
        checks = probe_server(url, api_key=api_key, model=model)
    except ServerProbeError as exc:
        raise fail(str(exc), code=1) from None
    if as_json:
        _print_json([c.__dict__ for c in checks])
        return
    for c in checks:
        mark = "[green]✓[/]" if c.ok else "[yellow]✗[/]"
        console.print(f"{mark} [bold]{c.name}[/]: {c.detail}", soft_wrap=True, markup=True)


# Commands that, once they return, leave nothing to finalise but the interpreter itself.
_SKIP_TEARDOWN: list[str] = []


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _SKIP_TEARDOWN.clear()  # set by this command only
    try:
        app()
    except SystemExit as exc:
        if exc.code in (0, None) and _SKIP_TEARDOWN:
            _exit_without_teardown()
        raise


def _exit_without_teardown() -> None:
    """Exit now: the exit handlers run, the interpreter's teardown does not.

    Tearing down the interpreter after `demo` (thousands of modules, the tokenizer, the
    PDF renderer) takes 0.3-1 s and does nothing anyone sees: its files are written and
    closed, its sandbox and database stopped by the exit handlers, which run here. Only
    when no other (non-daemon) thread would still be joined.
    """
    import atexit
    import threading

    if any(
        t.is_alive() and not t.daemon
        for t in threading.enumerate()
        if t is not threading.main_thread()
    ):
        return
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)


if __name__ == "__main__":
    main()
