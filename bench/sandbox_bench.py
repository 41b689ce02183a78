"""Sandbox latency: a warm stateful session against a fresh container per call.

The reference gpt-oss python tool starts a new container for every call, so state does
not survive and each call re-imports what it uses. We keep one kernel per run, taken
from a pool whose kernels have already imported the scientific stack.

    python bench/sandbox_bench.py [--repeats 5] [--out bench/results/sandbox.json]

Prints a table and writes JSON. Needs a Docker engine and the sandbox image.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harmonygraph.sandbox import DockerSandbox, SandboxConfig, SandboxPool  # noqa: E402

SETUP = (
    "import numpy as np\n"
    "import pandas as pd\n"
    "rng = np.random.default_rng(0)\n"
    "df = pd.DataFrame({'group': rng.choice(list('abcd'), 2000), "
    "'x': rng.normal(size=2000), 'y': rng.normal(size=2000)})\n"
    "df['z'] = df['x'] * 2 + df['y']\n"
)
# The five-step analysis: a frame, describe, groupby, a matplotlib PNG, correlations.
STEPS = [
    SETUP + "df.head()",
    "df.describe()",
    "df.groupby('group')[['x', 'y', 'z']].mean()",
    "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
    "fig, ax = plt.subplots()\ndf.plot.scatter(x='x', y='z', ax=ax)\n"
    "fig.savefig('/mnt/data/scatter.png')\nplt.close(fig)",
    "df[['x', 'y', 'z']].corr()",
]
PRELOAD = ["numpy", "pandas", "matplotlib", "matplotlib.pyplot"]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def fresh_container_call(sandbox: DockerSandbox, code: str) -> float:
    """One call the reference way: `docker run --rm` with the same limits, code as argv."""
    client = sandbox.client()
    opts = sandbox.container_options()
    t0 = time.perf_counter()
    out = client.containers.run(
        opts["image"],
        ["python3", "-c", code],
        remove=True,
        network_mode="none",
        read_only=True,
        # Our kernels get /mnt/data as a tmpfs volume and run as uid 1000 under a
        # root supervisor; the reference container gets the same as a plain tmpfs.
        tmpfs={**opts["tmpfs"], "/mnt/data": "rw,size=256m,uid=1000,gid=1000,mode=0755"},
        user="1000:1000",
        environment=opts["environment"],
        mem_limit=opts["mem_limit"],
        memswap_limit=opts["memswap_limit"],
        nano_cpus=opts["nano_cpus"],
        pids_limit=opts["pids_limit"],
        cap_drop=["ALL"],
        labels=opts["labels"],
        stdout=True,
        stderr=True,
    )
    elapsed = time.perf_counter() - t0
    assert out is not None
    return elapsed


def as_script(cell: str) -> str:
    """A notebook cell as a standalone script: the last expression is printed."""
    lines = cell.rstrip().splitlines()
    last = lines[-1]
    if not last.startswith(("plt.", "fig.")):
        lines[-1] = f"print({last})"
    return "\n".join(lines)


def bench(repeats: int, image: str) -> dict[str, Any]:
    cfg = SandboxConfig(image=image, preload=PRELOAD, pool_size=1, timeout_s=120)
    sandbox = DockerSandbox(cfg)
    sandbox.check()
    results: dict[str, Any] = {}

    # -- print(1) -------------------------------------------------------------------
    fresh_print = [fresh_container_call(sandbox, "print(1)") for _ in range(repeats)]
    with SandboxPool(sandbox, size=1) as pool:
        pool.wait_ready()
        session = pool.acquire_sync()
        session.execute_sync("print(1)")  # first call warms the code paths
        warm_print = []
        for _ in range(max(20, repeats * 10)):
            t0 = time.perf_counter()
            r = session.execute_sync("print(1)")
            warm_print.append(time.perf_counter() - t0)
            assert r.stdout == "1\n"
        session.close_sync()

        # -- five-step analysis -----------------------------------------------------------
        warm_runs = []
        for _ in range(repeats):
            pool.wait_ready()
            session = pool.acquire_sync()
            t0 = time.perf_counter()
            for step in STEPS:
                r = session.execute_sync(step)
                assert r.ok, r.render()
            warm_runs.append(time.perf_counter() - t0)
            session.close_sync()
    fresh_runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i, step in enumerate(STEPS):
            # Without state, every call after the first must rebuild the frame.
            script = as_script(step if i == 0 else SETUP + step)
            fresh_container_call(sandbox, script)
        fresh_runs.append(time.perf_counter() - t0)

    # -- session start: cold kernel vs warm pool --------------------------------------
    cold_start = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        session = sandbox.start_session_sync()
        session.execute_sync("print(1)")
        cold_start.append(time.perf_counter() - t0)
        session.close_sync()
    warm_start = []
    with SandboxPool(sandbox, size=1) as pool:
        for _ in range(repeats):
            pool.wait_ready()
            t0 = time.perf_counter()
            session = pool.acquire_sync()
            session.execute_sync("print(1)")
            warm_start.append(time.perf_counter() - t0)
            session.close_sync()

    med = statistics.median
    results["print1"] = {
        "warm_session_ms": ms(med(warm_print)),
        "fresh_container_ms": ms(med(fresh_print)),
        "ratio": round(med(fresh_print) / med(warm_print), 1),
    }
    results["analysis_5_steps"] = {
        "warm_session_ms": ms(med(warm_runs)),
        "fresh_container_ms": ms(med(fresh_runs)),
        "ratio": round(med(fresh_runs) / med(warm_runs), 1),
    }
    results["session_start"] = {
        "warm_pool_ms": ms(med(warm_start)),
        "cold_kernel_ms": ms(med(cold_start)),
        "ratio": round(med(cold_start) / med(warm_start), 1),
        "note": "time to a session's first print(1) result; cold includes container start "
        "and the preloads " + ", ".join(PRELOAD),
    }
    results["meta"] = {
        "repeats": repeats,
        "image": image,
        "engine": sandbox.client().version().get("Version"),
        "cpus": os.cpu_count(),
        # Both sides ran on the same (shared) machine; the load says how busy it was.
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "statistic": "median",
    }
    return results


def table(results: dict[str, Any]) -> str:
    rows = [
        ("print(1) per execution", results["print1"], "warm_session_ms", "fresh_container_ms"),
        (
            "5-step pandas/matplotlib",
            results["analysis_5_steps"],
            "warm_session_ms",
            "fresh_container_ms",
        ),
        ("session start", results["session_start"], "warm_pool_ms", "cold_kernel_ms"),
    ]
    out = [
        f"{'case':28} {'ours (warm) ms':>15} {'baseline ms':>12} {'ratio':>7}",
        f"{'-' * 28} {'-' * 15} {'-' * 12} {'-' * 7}",
    ]
    for name, r, ours, base in rows:
        out.append(f"{name:28} {r[ours]:>15.2f} {r[base]:>12.2f} {r['ratio']:>6.1f}x")
    out.append("baseline: fresh container per call (reference tool), cold kernel for start")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--image", default=os.environ.get("HARMONYGRAPH_SANDBOX_IMAGE", "harmonygraph-sandbox:0.1")
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "sandbox.json")
    args = parser.parse_args()
    results = bench(args.repeats, args.image)
    print(table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
