"""`harmonygraph demo --serve`, the real command in its own process: the demo's report on
the dashboard, reached with the key it prints; Ctrl-C stops it cleanly, leaving no
server and no database running."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from tests.ci import require

pytestmark = pytest.mark.postgres

# The demo (its sandbox, database and renderer) then the server, on a busy machine: how
# long to wait for a line before calling the command stuck. No duration is asserted.
WAIT_S = 300


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _lines(stream, into: queue.Queue, kept: list[str]) -> None:
    for line in stream:
        kept.append(line)
        into.put(line)
    into.put(None)


def _processes_under(folder: Path) -> list[str]:
    """Command lines of running processes that name `folder` (a Postgres on its data)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(folder) in cmd:
            found.append(cmd)
    return found


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_demo_serve_shows_the_report_and_stops_cleanly(tmp_path, as_json):
    require("pgserver")
    require("uvicorn")
    home, port = tmp_path / "home", _free_port()
    env = {**os.environ, "HARMONYGRAPH_HOME": str(home)}
    env.pop("DATABASE_URL", None)  # the demo's own database, stopped with it
    env.pop("PYTHONUNBUFFERED", None)  # stdout to a pipe buffered, as for a user's pipe
    proc = subprocess.Popen(
        [sys.executable, "-m", "harmonygraph", "demo", "--serve", "--port", str(port),
         "--out", "report", *(["--json"] if as_json else [])],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    # Where to sign in is on stdout, or on stderr with --json (stdout is the JSON alone).
    said: queue.Queue[str | None] = queue.Queue()
    outs: list[str] = []
    errors: list[str] = []
    readers = [
        threading.Thread(target=_lines, daemon=True,
                         args=(proc.stdout, queue.Queue() if as_json else said, outs)),
        threading.Thread(target=_lines, daemon=True,
                         args=(proc.stderr, said if as_json else queue.Queue(), errors)),
    ]  # fmt: skip
    for reader in readers:
        reader.start()
    printed: list[str] = []
    try:
        while not any("sign in with the key" in line for line in printed):
            line = said.get(timeout=WAIT_S)
            assert line is not None, "".join(outs) + "".join(errors)
            printed.append(line)
        text = "".join(printed)
        if not as_json:
            assert "report written:" in text
        page = re.search(r"the report in the dashboard: (http://\S+)", text)
        key = re.search(r"sign in with the key (hg-\S+)", text)
        assert page and key, text
        base = f"http://127.0.0.1:{port}"
        assert page.group(1).startswith(base + "/signin?next=/reports/rep_")
        report = page.group(1).split("next=", 1)[1]

        with httpx.Client(base_url=base, timeout=30) as web:
            # The key line comes before the server listens: wait for it to answer.
            while True:
                try:
                    if web.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, "".join(errors)
                threading.Event().wait(0.2)
            assert web.get(report).status_code == 303  # nothing without signing in
            signed = web.post("/signin", data={"key": key.group(1), "next": report})
            assert signed.status_code == 303 and signed.headers["location"] == report
            shown = web.get(report)
            assert shown.status_code == 200
            assert "Survey demo" in shown.text and 'class="badge s-done">done<' in shown.text
            html = web.get(f"{report}/files/report.html")
            assert html.status_code == 200 and "References" in html.text
            assert len(re.findall(r'<img[^>]+src="data:image/png;base64,', html.text)) >= 2
            pdf = web.get(f"{report}/files/report.pdf?download=1")
            assert pdf.content.startswith(b"%PDF")
            assert pdf.headers["content-disposition"].startswith("attachment")
            md = web.get(f"{report}/files/report.md?download=1")
            assert "## References" in md.text
            listed = web.get("/reports")
            assert report in listed.text
            # The same report files the command wrote.
            assert pdf.content == (tmp_path / "report" / "report.pdf").read_bytes()
        assert _processes_under(home), "the demo's database should be running while it serves"
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        code = proc.wait(timeout=WAIT_S)
        for reader in readers:
            reader.join(timeout=WAIT_S)
    if as_json:  # stdout: the demo's JSON alone
        assert json.loads("".join(outs))["report"]["pdf"].endswith("report.pdf")
    stderr = "".join(errors)
    assert code == 0, stderr
    assert "Traceback" not in stderr
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/healthz")
    assert _processes_under(home) == []  # its Postgres stopped with it
