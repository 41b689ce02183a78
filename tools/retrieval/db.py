"""Where the database is: `DATABASE_URL`, or the embedded Postgres that `pgserver` runs.

The embedded server keeps its data in `$HARMONYGRAPH_HOME/pgdata` (default
`~/.harmonygraph/pgdata`) and listens only on a Unix socket inside that folder, so
nothing is exposed on the network. `pgserver` ships PostgreSQL 16 with pgvector.
"""

from __future__ import annotations

import os
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harmonygraph.settings import harmonygraph_home, settings
from harmonygraph.tools.retrieval.errors import DatabaseUnavailableError

__all__ = [
    "DbStatus",
    "database_url",
    "embedded_pgdata",
    "embedded_status",
    "import_pgserver",
    "start_embedded",
    "stop_embedded",
]


def embedded_pgdata() -> Path:
    return harmonygraph_home() / "pgdata"


@dataclass(frozen=True, slots=True)
class DbStatus:
    running: bool
    pgdata: str
    url: str | None = None
    pid: int | None = None
    external: bool = False  # True when DATABASE_URL points elsewhere

    def to_dict(self) -> dict[str, object]:
        return {
            "running": self.running,
            "pgdata": self.pgdata,
            "url": self.url,
            "pid": self.pid,
            "external": self.external,
        }


def import_pgserver() -> Any:
    try:
        with warnings.catch_warnings():
            # pgserver asks platformdirs for a runtime folder at import; without
            # XDG_RUNTIME_DIR that warns on every command. We never use that folder: the
            # server's socket lives in its pgdata.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
            import pgserver
    except ImportError as exc:
        raise DatabaseUnavailableError(
            "the embedded Postgres needs the `pgserver` package: "
            "pip install 'harmonygraph[retrieval]', or set DATABASE_URL to a Postgres with pgvector"
        ) from exc
    return pgserver


def start_embedded(pgdata: Path | None = None, *, keep_running: bool = True) -> str:
    """Start (or find running) the embedded server; return its connection URL.

    `keep_running` leaves the server running after this process exits, which is what
    `harmonygraph db start` means (`stop_embedded` stops it); otherwise it stops when
    this process exits, as a command that only needs it while it runs wants.
    """
    pgserver = import_pgserver()
    path = (pgdata or embedded_pgdata()).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        server = pgserver.get_server(path, cleanup_mode=None if keep_running else "stop")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, AssertionError) as exc:
        log = path / "log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
        raise DatabaseUnavailableError(
            f"the embedded Postgres in {path} did not start ({exc}); its log ends with:\n{tail}\n"
            "If the folder is damaged, stop any leftover `postgres` process and move it away."
        ) from exc
    return str(server.get_uri())


def embedded_status(pgdata: Path | None = None) -> DbStatus:
    path = (pgdata or embedded_pgdata()).expanduser().resolve()
    external = bool(settings().database_url)
    if not (path / "PG_VERSION").exists():
        return DbStatus(running=False, pgdata=str(path), external=external)
    import_pgserver()
    from pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(path)
    if info is None or not info.is_running():
        return DbStatus(running=False, pgdata=str(path), external=external)
    return DbStatus(
        running=True, pgdata=str(path), url=info.get_uri(), pid=info.pid, external=external
    )


def stop_embedded(pgdata: Path | None = None) -> bool:
    """Stop the embedded server; False when it was not running."""
    path = (pgdata or embedded_pgdata()).expanduser().resolve()
    if not embedded_status(path).running:
        return False
    pgserver = import_pgserver()
    user = "pgserver" if os.name == "posix" and os.geteuid() == 0 else None
    pgserver.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=path, user=user)
    return True


def database_url(url: str | None = None, *, start: bool = True) -> str:
    """The URL to use: the argument, else `DATABASE_URL`, else the embedded server."""
    if url:
        return url
    env = settings().database_url
    if env:
        return env
    if not start:
        status = embedded_status()
        if not status.running or status.url is None:
            raise DatabaseUnavailableError(
                "no database: run `harmonygraph db start` or set DATABASE_URL"
            )
        return status.url
    return start_embedded()
