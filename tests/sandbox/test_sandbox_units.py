"""Configuration, apt source parsing and result rendering (no engine needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from harmonygraph.sandbox import ExecError, ExecResult, SandboxConfig
from harmonygraph.sandbox.image import read_apt_source


def test_config_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HARMONYGRAPH_SANDBOX", "LOCAL")
    monkeypatch.setenv("HARMONYGRAPH_SANDBOX_IMAGE", "mine:2")
    monkeypatch.setenv("HARMONYGRAPH_SANDBOX_MEMORY_MB", "2048")
    monkeypatch.setenv("HARMONYGRAPH_SANDBOX_PRELOAD", "numpy, scipy")
    monkeypatch.setenv("HARMONYGRAPH_SANDBOX_NETWORK", "false")
    monkeypatch.setenv("HARMONYGRAPH_HOME", str(tmp_path))
    cfg = SandboxConfig.from_env()
    assert (cfg.backend, cfg.image, cfg.memory_mb) == ("local", "mine:2", 2048)
    assert cfg.preload == ["numpy", "scipy"] and cfg.network is False
    assert cfg.home == tmp_path


def test_bad_backend_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARMONYGRAPH_SANDBOX", "vm")
    with pytest.raises(ValueError, match="backend"):
        SandboxConfig.from_env()


def test_apt_sources_deb822_and_one_line(tmp_path: Path) -> None:
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: trixie-security\n"
        "Components: main\n\n"
        "Types: deb deb-src\nURIs: http://mirror.example/debian\nSuites: trixie trixie-updates\n"
        "Components: main contrib\nSigned-By: /usr/share/keyrings/x.gpg\n"
    )
    src = read_apt_source(tmp_path)
    assert (src.uri, src.suite, src.components) == (
        "http://mirror.example/debian",
        "trixie",
        ("main", "contrib"),
    )
    one = tmp_path / "one"
    one.mkdir()
    (one / "sources.list").write_text(
        "# comment\ndeb [arch=amd64] http://m.example/debian bookworm main\n"
    )
    assert read_apt_source(one).suite == "bookworm"


def test_render_matches_a_notebook_cell() -> None:
    ok = ExecResult(status="ok", stdout="a\n", stderr="w\n", value="3")
    assert ok.render() == "a\nw\n3"
    err = ExecResult(
        status="error",
        stdout="partial\n",
        error=ExecError("KeyError", "'k'", "Traceback (most recent call last):\nKeyError: 'k'\n"),
    )
    assert err.render() == "partial\nTraceback (most recent call last):\nKeyError: 'k'"
    cut = ExecResult(status="output_limit", stdout="x" * 10, stdout_truncated=True, note="n")
    assert cut.render() == "xxxxxxxxxx\n[stdout truncated]\nn"


def test_a_pool_without_refill_warms_its_kernels_once() -> None:
    """`refill=False`: `size` kernels warmed, none started to replace a taken one (a later
    take starts its own), and the filling thread lives on until the pool closes, since a
    local kernel dies with the thread that started it."""
    import threading

    from harmonygraph.sandbox import SandboxPool

    class Kernel:
        alive = True

        def kill(self) -> None:
            self.alive = False

    class CountingSandbox:
        config = SandboxConfig(pool_size=1)

        def __init__(self) -> None:
            self.threads: list[threading.Thread] = []

        def spawn_kernel(self, cancel: threading.Event | None = None) -> Kernel:
            self.threads.append(threading.current_thread())
            return Kernel()

    sandbox = CountingSandbox()
    pool = SandboxPool(sandbox, size=1, refill=False)  # type: ignore[arg-type]
    assert pool.wait_ready(timeout=60)
    filler = sandbox.threads[0]
    pool.take_kernel()  # the warm one
    pool.take_kernel()  # started by the taker itself
    assert pool.hits == 1 and pool.misses == 1
    assert sandbox.threads[1] is threading.current_thread() and len(sandbox.threads) == 2
    assert filler.is_alive()
    pool.close_sync()
    filler.join(timeout=60)
    assert not filler.is_alive() and len(sandbox.threads) == 2


def test_a_taker_waiting_on_a_failing_start_hears_of_it_at_once() -> None:
    """The pool warms at Agent(); a run right after waits for that kernel, but not for the
    whole start timeout when the start fails: it tries itself and says why."""
    import threading
    import time

    from harmonygraph.sandbox import SandboxError, SandboxPool

    class FailingSandbox:
        config = SandboxConfig(start_timeout_s=30, pool_size=1)

        def __init__(self) -> None:
            self.calls = 0
            self.lock = threading.Lock()

        def spawn_kernel(self, cancel: threading.Event | None = None) -> None:
            with self.lock:
                self.calls += 1
            time.sleep(0.3)
            raise SandboxError("no engine answers")

    sandbox = FailingSandbox()
    pool = SandboxPool(sandbox, size=1)  # type: ignore[arg-type]
    pool.start_sync()
    time.sleep(0.05)  # the background start is under way
    started = time.monotonic()
    with pytest.raises(SandboxError, match="no engine answers"):
        pool.take_kernel()
    assert time.monotonic() - started < 5  # not the 30 s start timeout
    pool.close_sync()
