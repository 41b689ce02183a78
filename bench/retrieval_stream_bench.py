"""Memory of indexing one large text file: whole-file vs streamed (issue #12).

    python bench/retrieval_stream_bench.py [--mb 49] [--ingest-mb 4]

1. Read + chunk a generated `--mb` MB text file in a fresh process each way, peak RSS
   (`ru_maxrss`) and wall time: the whole-file path (`load_path` + `chunk_text`, what
   `index add` did before) and the streamed one (`open_text_stream` + `iter_chunks`).
2. `harmonygraph index add` of an `--ingest-mb` MB file end to end (hashing embedder, a
   temporary embedded Postgres), peak RSS of the command.

Writes bench/results/retrieval_stream.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WHOLE = """
from harmonygraph.tools.retrieval.loaders import load_path
from harmonygraph.tools.retrieval.chunking import chunk_text
n = len(chunk_text(load_path(PATH, max_bytes=1 << 34).text))
"""
STREAMED = """
from harmonygraph.tools.retrieval.loaders import open_text_stream
from harmonygraph.tools.retrieval.chunking import iter_chunks
n = sum(1 for _ in iter_chunks(open_text_stream(PATH, max_bytes=1 << 34).segments()))
"""
MEASURE = """
import resource, sys, time, json
PATH = sys.argv[1]
t = time.perf_counter()
{body}
print(json.dumps({{"chunks": n, "seconds": round(time.perf_counter() - t, 2),
                   "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}}))
"""


def make_text(path: Path, mb: float) -> int:
    words = "alpha beta gamma delta policy server budget leave revenue board".split()
    with path.open("w") as f:
        i = 0
        while f.tell() < mb * 1_000_000:
            f.write(" ".join(words[(i + k) % 10] for k in range(60)) + f" row{i}.\n\n")
            i += 1
    return path.stat().st_size


def measure(body: str, path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", MEASURE.format(body=body), str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def ingest(path: Path) -> dict[str, float]:
    import pgserver

    base = Path(tempfile.mkdtemp(prefix="hg-pg-"))
    base.chmod(0o755)
    server = pgserver.get_server(base / "pgdata", cleanup_mode="delete")
    try:
        env = {**os.environ, "DATABASE_URL": str(server.get_uri())}
        # A fresh parent whose only child is the command: RUSAGE_CHILDREN is its peak.
        wrapper = (
            "import resource, subprocess, sys, time; t = time.perf_counter();"
            "subprocess.run(sys.argv[1:], check=True, capture_output=True);"
            "print(time.perf_counter() - t,"
            " resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
        )
        out = subprocess.run(
            [sys.executable, "-c", wrapper, sys.executable, "-m", "harmonygraph", "index", "add",
             str(path), "-c", "bench", "--embedder", "hashing", "--json"],
            env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        seconds, peak_kb = out.stdout.split()
        return {"seconds": round(float(seconds), 1), "peak_rss_mb": round(int(peak_kb) / 1024)}
    finally:
        server.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=49)
    ap.add_argument("--ingest-mb", type=float, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big.txt"
        size = make_text(big, args.mb)
        result: dict[str, object] = {
            "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
            "file_mb": round(size / 1e6, 1),
            "whole_file": measure(WHOLE, big),
            "streamed": measure(STREAMED, big),
        }
        print(json.dumps(result, indent=2), flush=True)
        small = Path(tmp) / "ingest.txt"
        result["index_add"] = {"file_mb": round(make_text(small, args.ingest_mb) / 1e6, 1),
                               **ingest(small)}  # fmt: skip
    print(json.dumps(result, indent=2))
    out = ROOT / "bench" / "results" / "retrieval_stream.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
