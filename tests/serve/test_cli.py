"""`harmonygraph serve` as a command: keys created, listed and revoked; a task file served
in a separate process, answering the openai client."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.serve.conftest import final

pytestmark = pytest.mark.postgres


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harmonygraph", "serve", *args],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


@contextmanager
def _served(
    *args: str, pg_url: str, startup_s: float = 60
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`harmonygraph serve ARGS` as a process on a free port, once it answers /healthz;
    terminated on exit."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "harmonygraph", "serve", *args, "--port", str(port),
         "--database-url", pg_url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + startup_s
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        yield proc, port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_keys_create_list_revoke(pg_url):
    made = _cli("keys", "create", "carol", "--per-minute", "30", "--database-url", pg_url)
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("hg-") and len(secret) > 40
    key_id = made.stderr.split()[1]
    listed = _cli("keys", "list", "--database-url", pg_url)
    line = next(row for row in listed.stdout.splitlines() if row.startswith(key_id))
    assert "carol" in line and "active" in line and "per_minute=30" in line
    assert secret not in listed.stdout  # only a hint of it
    assert _cli("keys", "revoke", key_id, "--database-url", pg_url).returncode == 0
    assert "revoked" in next(r for r in _cli("keys", "list", "--database-url", pg_url)
                             .stdout.splitlines() if r.startswith(key_id))  # fmt: skip
    again = _cli("keys", "revoke", key_id, "--database-url", pg_url)
    assert again.returncode == 2 and "no active key" in again.stderr


def test_serve_a_task_file(pg_url, tmp_path):
    from harmonygraph.tracing import FakeOpenAIServer
    from openai import OpenAI

    from tests.serve.conftest import make_key

    task = tmp_path / "helper.yaml"
    with FakeOpenAIServer([final("Served from a task file.")]) as fake:
        task.write_text(
            f"name: helper\ninstructions: Be brief.\ninput: unused\nreasoning: low\n"
            f"model: {{base_url: {fake.base_url}, name: openai/gpt-oss-20b, api: completions}}\n"
        )
        with _served("--task", str(task), pg_url=pg_url) as (_proc, port):
            key = make_key(pg_url, "cli")
            client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
            assert [m.id for m in client.models.list()] == ["helper"]
            resp = client.responses.create(model="helper", input="Hi")
            assert resp.output_text == "Served from a task file."


def test_serve_refuses_without_agents():
    r = _cli()
    assert r.returncode == 2 and "--task FILE or --agent" in r.stderr


def _children(pid: int) -> list[str]:
    """The command lines of the processes whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    found.append(f.read().replace(b"\0", b" ").decode())
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_serve_with_two_workers_shares_conversations(pg_url, tmp_path):
    from harmonygraph.harmony.encoding import get_encoding
    from harmonygraph.tracing import FakeOpenAIServer
    from openai import OpenAI

    from tests.serve.conftest import make_key

    task = tmp_path / "helper.yaml"
    answers = [final(f"Answer {i}.") for i in range(8)]
    with FakeOpenAIServer(answers) as fake:
        task.write_text(
            f"name: helper\ninstructions: Be brief.\ninput: unused\nreasoning: low\n"
            f"model: {{base_url: {fake.base_url}, name: openai/gpt-oss-20b, api: completions}}\n"
        )
        served = _served("--task", str(task), "--workers", "2", pg_url=pg_url, startup_s=90)
        with served as (proc, port):
            workers = [c for c in _children(proc.pid) if "spawn_main" in c]
            assert len(workers) == 2, _children(proc.pid)
            key = make_key(pg_url, "workers")
            # A conversation continued request after request, each on a new connection,
            # so the kernel spreads them over the workers: the state is in Postgres.
            previous = None
            for i in range(4):
                client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
                resp = client.responses.create(
                    model="helper", input=f"Turn {i}", previous_response_id=previous
                )
                client.close()
                assert resp.output_text.startswith("Answer ")
                previous = resp.id
            # The last turn's prompt held every earlier turn.
            last = fake.bodies("/v1/completions")[-1]["prompt"]
            text = get_encoding().decode(last)
            assert all(f"Turn {i}" in text for i in range(4))
    assert not [c for c in _children(proc.pid) if "spawn_main" in c]


def test_serve_refuses_fewer_than_one_worker(tmp_path):
    r = _cli("--task", str(tmp_path / "none.yaml"), "--workers", "0")
    assert r.returncode == 2 and "--workers" in r.stderr
