"""`harmonygraph sandbox ...`: build the image, run code, check which backends work."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from .config import SandboxConfig
from .errors import SandboxError
from .files import publish, walk_nofollow

app = typer.Typer(
    rich_markup_mode=None,
    name="sandbox",
    help="Sandboxed Python execution: build the image, run code, check the backends.",
    no_args_is_help=True,
)

BackendOpt = Annotated[
    str | None,
    typer.Option("--backend", help="docker or local (default: $HARMONYGRAPH_SANDBOX or docker)"),
]
ImageOpt = Annotated[
    str | None, typer.Option("--image", help="image name:tag ($HARMONYGRAPH_SANDBOX_IMAGE)")
]


def _config(backend: str | None, image: str | None, **extra: Any) -> SandboxConfig:
    overrides: dict[str, Any] = {k: v for k, v in extra.items() if v is not None}
    if backend:
        overrides["backend"] = backend
    if image:
        overrides["image"] = image
    return SandboxConfig.from_env(**overrides)


@app.command()
def build(
    offline: Annotated[
        bool | None,
        typer.Option(
            "--offline/--registry",
            help="offline: debootstrap + docker import; registry: Dockerfile only; "
            "default: Dockerfile, then offline if that fails",
        ),
    ] = None,
    image: ImageOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON report")] = False,
) -> None:
    """Build the sandbox image (numpy, pandas, matplotlib, scipy)."""
    from rich.console import Console

    from .image import build_image

    cfg = _config(None, image)
    console = Console(stderr=True)
    try:
        with console.status(f"building {cfg.image}") as status:

            def progress(msg: str) -> None:
                status.update(msg[:120])
                console.log(msg[:300])

            report = build_image(cfg, offline=offline, progress=progress)
    except SandboxError as exc:
        console.print(f"[red]build failed:[/red] {exc}")
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(_asdict(report)))
    else:
        console.print(
            f"[green]built[/green] {report.image} ({report.method}) in {report.seconds} s, "
            f"{report.size_mb} MB"
        )


def _asdict(obj: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(obj)


@app.command("exec")
def exec_(
    code_file: Annotated[
        str | None,
        typer.Option("--code-file", "-f", help="file with the code; '-' reads stdin"),
    ] = None,
    code_arg: Annotated[str | None, typer.Argument(help="code, or '-' for stdin")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    session_dir: Annotated[
        Path | None,
        typer.Option(
            "--session-dir",
            help="files here are copied into /mnt/data first; files the code creates or "
            "changes are copied back under safe names, never overwriting one",
        ),
    ] = None,
    backend: BackendOpt = None,
    image: ImageOpt = None,
    timeout: Annotated[float | None, typer.Option("--timeout", help="seconds")] = None,
) -> None:
    """Run code in a fresh sandbox session and print the result."""
    from .factory import get_sandbox

    source = code_file if code_file is not None else code_arg
    if source is None or source == "-":
        code = sys.stdin.read()
    elif code_file is not None:
        code = Path(code_file).read_text(encoding="utf-8")
    else:
        code = source
    cfg = _config(backend, image, timeout_s=timeout)
    # The CLI runs one cell, so importing the whole scientific stack up front would only
    # slow it down; the code imports what it uses.
    cfg = cfg.model_copy(update={"preload": []})
    copied: list[Path] = []
    try:
        sandbox = get_sandbox(cfg, session_dir=session_dir)
        with sandbox.start_session_sync() as session:
            docker_dir = session_dir is not None and cfg.backend == "docker"
            if docker_dir and session_dir is not None and session_dir.is_dir():
                # Regular files only, links not followed: the folder's own files go in.
                for entry in walk_nofollow(session_dir):
                    if entry.kind == "file" and entry.read is not None:
                        if not any(p.startswith(".") for p in entry.name.split("/")):
                            session.write_file_sync(entry.name, entry.read(-1))
            result = session.execute_sync(code)
            if docker_dir and session_dir is not None:
                # What comes back was read by the host (never as the kernel said), under
                # sanitised names, and never overwrites a file already in the folder.
                for sf in result.files:
                    if sf.local_path:
                        copied.append(publish(Path(sf.local_path), session_dir, sf.name))
    except SandboxError as exc:
        if as_json:
            typer.echo(json.dumps({"status": "unavailable", "error": str(exc)}))
        else:
            typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        data = result.to_dict()
        for f in data["files"]:
            f.pop("local_path", None)  # the staging copy is gone when the session closes
        data["copied"] = [str(p) for p in copied]
        typer.echo(json.dumps(data, ensure_ascii=True))
    else:
        text = result.render()
        if text:
            typer.echo(text)
        dests: list[Path | None] = list(copied) or [None] * len(result.files)
        for made, dest in zip(result.files, dests, strict=False):
            where = f" -> {dest}" if dest is not None else ""
            typer.echo(f"[file: /mnt/data/{made.path} ({made.size} bytes){where}]", err=True)
    raise typer.Exit(0 if result.ok else 1)


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    image: ImageOpt = None,
) -> None:
    """Say which backends work here, and why not where they do not."""
    from .docker_backend import DockerSandbox
    from .local_backend import LocalSandbox

    cfg = _config(None, image, preload=[])
    checks: dict[str, dict[str, Any]] = {}
    for name, sandbox in (("docker", DockerSandbox(cfg)), ("local", LocalSandbox(cfg))):
        entry: dict[str, Any] = {"isolation": sandbox.isolation}
        try:
            entry.update(sandbox.check())
            with sandbox.start_session_sync() as session:
                result = session.execute_sync("import sys; sys.version.split()[0]", timeout=30)
            entry["ok"] = result.ok
            entry["python"] = (result.value or "").strip("'")
            if not result.ok:
                entry["error"] = result.render()
        except SandboxError as exc:
            entry["ok"] = False
            entry["error"] = str(exc)
        checks[name] = entry
    chosen = cfg.backend
    if as_json:
        typer.echo(json.dumps({"configured": chosen, "backends": checks}))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table("backend", "works", "isolation", "details")
        for name, entry in checks.items():
            details = entry.get("error") or ", ".join(
                f"{k}={v}" for k, v in entry.items() if k not in ("ok", "isolation", "error")
            )
            table.add_row(
                name + (" (configured)" if name == chosen else ""),
                "[green]yes[/green]" if entry["ok"] else "[red]no[/red]",
                str(entry["isolation"]),
                str(details),
            )
        Console().print(table)
    raise typer.Exit(0 if checks.get(chosen, {}).get("ok") else 1)


if __name__ == "__main__":
    app()
