"""Sandbox containment costs and bounds (issue #12): files, supervisor, shutdown.

    python bench/sandbox_files_bench.py [--repeats 5] [--out bench/results/sandbox_files.json]

Measures, on a real Docker engine:
- reading a 30 MB file back (`read_file_sync`), and the protocol's line assembly on its
  own, old (quadratic: the buffer re-copied and re-scanned per chunk) against new;
- what the host's own reading of /mnt/data costs: a cell that writes one small file, and
  one that writes a 30 MB file, against the same cells writing to /tmp (not taken);
- print(1) per execution through the supervisor;
- how long a busy kernel outlives its host after SIGKILL, and after SIGSTOP (the
  supervisor's hard deadline);
- closing a pool while its kernel is still starting.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

from harmonygraph.sandbox import DockerSandbox, SandboxConfig, SandboxPool  # noqa: E402


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def old_line_assembly(chunks: list[bytes]) -> int:
    pending = b""
    lines = 0
    for data in chunks:
        pending += data
        while b"\n" in pending:
            _line, pending = pending.split(b"\n", 1)
            lines += 1
    return lines


def new_line_assembly(chunks: list[bytes]) -> int:
    parts: list[bytes] = []
    lines = 0
    for data in chunks:
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                parts.append(data[start:])
                break
            parts.append(data[start:nl])
            b"".join(parts)
            parts.clear()
            lines += 1
            start = nl + 1
    return lines


def timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


HOST = """
import sys, time
from harmonygraph.sandbox import DockerSandbox, SandboxConfig
cfg = SandboxConfig(image={image!r}, preload=[], timeout_s={timeout}, interrupt_grace_s=1,
                    hard_deadline_margin_s=2)
s = DockerSandbox(cfg).start_session_sync()
print(s.kernel.container.id, flush=True)
s.execute_sync('while True:\\n    pass')
"""


def outlives_host(sandbox: DockerSandbox, sig: int, timeout: float) -> float:
    """Seconds from signalling the host (mid-cell) to the container no longer running."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "host.py"
        script.write_text(HOST.format(image=sandbox.config.image, timeout=timeout))
        proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        cid = proc.stdout.readline().strip()
        time.sleep(1.5)
        container = sandbox.client().containers.get(cid)
        t0 = time.perf_counter()
        proc.send_signal(sig)
        while True:
            container.reload()
            if container.status != "running" or time.perf_counter() - t0 > 60:
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
        proc.kill()
        proc.wait()
        container.remove(force=True, v=True)
        return elapsed


def bench(repeats: int, image: str) -> dict[str, Any]:
    med = statistics.median
    out: dict[str, Any] = {}
    big = 30 << 20
    chunks = [(b"x" * (40 << 20))[i : i + 32768] for i in range(0, 40 << 20, 32768)]
    chunks[-1] += b"\n"
    out["line_assembly_40mb_line"] = {
        "old_quadratic_s": round(timed(lambda: old_line_assembly(chunks)), 2),
        "new_linear_s": round(timed(lambda: new_line_assembly(chunks)), 3),
    }
    cfg = SandboxConfig(image=image, preload=[], disk_mb=128, timeout_s=60)
    sandbox = DockerSandbox(cfg)
    sandbox.check()
    with sandbox.start_session_sync() as s:
        s.execute_sync(f"import os\nopen('/mnt/data/big.bin', 'wb').write(os.urandom({big}))")
        out["read_30mb_file_s"] = round(
            med([timed(lambda: s.read_file_sync("big.bin")) for _ in range(repeats)]), 3
        )
        s.execute_sync("print(1)")
        out["print1_ms"] = ms(
            med([timed(lambda: s.execute_sync("print(1)")) for _ in range(repeats * 10)])
        )
        small = "open('{d}/s.txt', 'w').write(str(__import__('time').time()))"
        out["small_file_cell_ms"] = {
            "taken_from_mnt_data": ms(
                med(
                    [
                        timed(lambda: s.execute_sync(small.format(d="/mnt/data")))
                        for _ in range(repeats)
                    ]
                )
            ),
            "written_to_tmp_not_taken": ms(
                med([timed(lambda: s.execute_sync(small.format(d="/tmp"))) for _ in range(repeats)])
            ),
        }
        bigcell = "import os\nopen('{d}/b.bin', 'wb').write(os.urandom(" + str(big) + "))"
        out["30mb_file_cell_ms"] = {
            "taken_from_mnt_data": ms(
                med(
                    [
                        timed(lambda: s.execute_sync(bigcell.format(d="/mnt/data")))
                        for _ in range(repeats)
                    ]
                )
            ),
            "written_to_tmp_not_taken": ms(
                med(
                    [
                        timed(lambda: s.execute_sync(bigcell.format(d="/tmp")))
                        for _ in range(repeats)
                    ]
                )
            ),
        }
    out["busy_kernel_after_host_sigkill_s"] = round(outlives_host(sandbox, signal.SIGKILL, 600), 2)
    out["busy_kernel_after_host_sigstop_s"] = {
        "value": round(outlives_host(sandbox, signal.SIGSTOP, 3), 2),
        "note": "host timeout 3 s, frozen 1.5 s into the cell; supervisor limit 3 + 1 + 2 = 6 s",
    }
    pool_cfg = cfg.model_copy(update={"preload": ["numpy", "pandas", "matplotlib.pyplot"]})
    closes = []
    for _ in range(repeats):
        pool = SandboxPool(DockerSandbox(pool_cfg), size=1)
        pool.start_sync()
        time.sleep(1.0)
        closes.append(timed(pool.close_sync))
    out["pool_close_mid_start_ms"] = ms(med(closes))
    out["meta"] = {
        "repeats": repeats,
        "image": image,
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "statistic": "median",
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--image", default=os.environ.get("HARMONYGRAPH_SANDBOX_IMAGE", "harmonygraph-sandbox:0.1")
    )
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "sandbox_files.json"))
    args = ap.parse_args()
    results = bench(args.repeats, args.image)
    print(json.dumps(results, indent=2))
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
