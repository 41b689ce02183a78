"""Running the app: in the foreground (`harmonygraph serve`) or on a background thread
(tests, benchmarks, `harmonygraph demo --serve` in a notebook)."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

__all__ = ["ServerStartError", "ServerThread"]


class ServerStartError(RuntimeError):
    """The server did not start (its lifespan failed, or the port was taken)."""


class ServerThread:
    """uvicorn on 127.0.0.1 (a free port by default) on a thread of its own.

    >>> with ServerThread(create_app(config)) as server:
    ...     OpenAI(base_url=server.base_url + "/v1", api_key=key)
    """

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0, **options: Any) -> None:
        options.setdefault("log_level", "warning")
        self.config = uvicorn.Config(app, host=host, port=port, lifespan="on", **options)
        self.server = uvicorn.Server(self.config)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            self.server.run()
        except BaseException as exc:
            self._error = exc

    def start(self, timeout: float = 60.0) -> ServerThread:
        self._thread = threading.Thread(target=self._run, name="harmonygraph-serve", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ServerStartError(
                    f"the server did not start{f': {self._error}' if self._error else ''}"
                )
            time.sleep(0.02)
        return self

    @property
    def port(self) -> int:
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
