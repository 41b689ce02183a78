"""The python tool's sandbox on a Docker engine that is not the local one: a second `dockerd`
started here on a Unix socket and on a loopback TCP port with mutual TLS, with its own data,
exec root and pid file (no iptables, no bridge; kernels run with --network none). Workers
reach it through DOCKER_HOST (and DOCKER_TLS_VERIFY, DOCKER_CERT_PATH), as a worker without
an engine of its own reaches a remote one.

The sandbox image is copied from the main engine (`docker save | docker load`: ~1 min for
its 1.2 GB here), so these tests are `slow` as well as `docker`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ci import require, unavailable

pytestmark = [pytest.mark.docker, pytest.mark.slow]
IMAGE = os.environ.get("HARMONYGRAPH_SANDBOX_IMAGE", "harmonygraph-sandbox:0.1")
KERNEL = """
import json, os, sys
sys.path.insert(0, {testkit!r})
from harmonygraph.sandbox import DockerSandbox
from sandbox_testkit import sandbox_config
sandbox = DockerSandbox(sandbox_config())
info = sandbox.check()
session = sandbox.start_session_sync()
r = session.execute_sync("import socket\\nprint(6 * 7)\\nsocket.gethostname()")
session.close_sync()
print(json.dumps({{"engine": info["engine"], "status": r.status, "stdout": r.stdout,
                  "value": r.value}}))
"""


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _certs(d: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (docker's names)."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=hg-ca",
             "-keyout", "ca-key.pem", "-out", "ca.pem", cwd=d)  # fmt: skip
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for who in ("server", "client"):
        key = "key.pem" if who == "client" else "server-key.pem"
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={who}", "-keyout", key,
                 "-out", f"{who}.csr", cwd=d)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
                 "-CAcreateserial", "-days", "1", "-extfile", f"{who}.ext",
                 "-out", "cert.pem" if who == "client" else "server-cert.pem", cwd=d)  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def second_engine() -> Iterator[dict[str, str]]:
    docker = require("docker")
    if shutil.which("dockerd") is None or shutil.which("openssl") is None:
        unavailable("dockerd or openssl is not installed")
    try:
        main = docker.from_env(timeout=60)
        main.images.get(IMAGE)
    except Exception as exc:
        unavailable(f"no main Docker engine with {IMAGE} to copy it from ({exc})")
    base = Path(tempfile.mkdtemp(prefix="hgd-"))  # short: a socket path has 108 bytes
    certs = base / "certs"
    certs.mkdir()
    _certs(certs)
    port = _free_port()
    sock = base / "docker.sock"
    log = (base / "dockerd.log").open("wb")
    proc = subprocess.Popen(
        ["dockerd", "--host", f"unix://{sock}", "--host", f"tcp://127.0.0.1:{port}",
         "--tlsverify", f"--tlscacert={certs / 'ca.pem'}",
         f"--tlscert={certs / 'server-cert.pem'}", f"--tlskey={certs / 'server-key.pem'}",
         "--data-root", str(base / "data"), "--exec-root", str(base / "exec"),
         "--pidfile", str(base / "docker.pid"), "--iptables=false", "--ip-masq=false",
         "--bridge=none"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        second = None
        deadline = time.monotonic() + 60
        while second is None:
            try:
                second = docker.DockerClient(base_url=f"unix://{sock}", timeout=600)
                second.ping()
            except Exception:
                second = None
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError(
                        "the second dockerd did not start: "
                        + (base / "dockerd.log").read_text(errors="replace")[-2000:]
                    ) from None
                time.sleep(0.25)
        load = subprocess.run(
            f"docker save {IMAGE} | docker -H unix://{sock} load", shell=True,
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert load.returncode == 0, load.stderr
        yield {"unix": f"unix://{sock}", "tcp": f"tcp://127.0.0.1:{port}", "certs": str(certs)}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        subprocess.run(["umount", "-R", str(base / "exec")], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def _kernel_run(env_extra: dict[str, str]) -> dict[str, object]:
    import json

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env.update(env_extra, PYTHONPATH=str(root))
    proc = subprocess.run(
        [sys.executable, "-c", KERNEL.format(testkit=str(root / "tests" / "sandbox"))],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _containers_seen(url: str, certs: str | None = None) -> int:
    import docker

    env = {"DOCKER_HOST": url}
    if certs:
        env.update(DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=certs)
    client = docker.from_env(environment=env)
    return len(client.containers.list(all=True, filters={"ancestor": IMAGE}))


def test_the_sandbox_runs_on_a_second_engine_over_its_unix_socket(
    second_engine: dict[str, str],
) -> None:
    out = _kernel_run({"DOCKER_HOST": second_engine["unix"]})
    assert out["status"] == "ok" and out["stdout"] == "42\n", out
    assert out["engine"], out


def test_the_sandbox_runs_on_a_second_engine_over_tcp_with_tls(
    second_engine: dict[str, str],
) -> None:
    import certifi

    # A CA bundle for everything else in the environment, as many hosts set: the engine's
    # own CA (DOCKER_CERT_PATH/ca.pem) must still be the one its certificate is checked with.
    tls = {"DOCKER_HOST": second_engine["tcp"], "DOCKER_TLS_VERIFY": "1",
           "DOCKER_CERT_PATH": second_engine["certs"], "REQUESTS_CA_BUNDLE": certifi.where()}  # fmt: skip
    out = _kernel_run(tls)
    assert out["status"] == "ok" and out["stdout"] == "42\n", out
    # Without the client certificate the engine refuses, and the error says what is missing.
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env.update(DOCKER_HOST=second_engine["tcp"], PYTHONPATH=str(root))
    proc = subprocess.run(
        [sys.executable, "-c", KERNEL.format(testkit=str(root / "tests" / "sandbox"))],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH" in proc.stderr, proc.stderr[-2000:]
    # The kernels ran there (and were removed): none is left on the second engine.
    assert _containers_seen(second_engine["unix"]) == 0
