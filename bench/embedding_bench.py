"""Embedding runtime benchmark: ONNX Runtime vs sentence-transformers for all-MiniLM-L6-v2.

    python bench/embedding_bench.py [--quick] [--docs 200] [--rounds 3]

1. Agreement: cosine between the two runtimes' vectors on every text embedded below.
2. Throughput, interleaved (ONNX round, torch round, ...) on the same texts in the same
   process: SciFact abstracts (title + text, ~235 tokens, cut at the 256-token window,
   what long chunks look like) and NPL abstracts (~45 tokens, short chunks). chunks/s,
   tokens/s (real tokens, not padding), and the GFLOP/s that implies, beside a plain
   float32 matrix product on this machine (the ceiling for an fp32 forward pass).
3. Cold model: a new process imports the runtime, loads the model, embeds one query.
4. Warm query latency: p50/p95 of embedding one query.
5. The commands, cold (each a new process), on an embedded Postgres in a temporary
   $HARMONYGRAPH_HOME: first `index add` of `--docs` files, `index search` (hybrid, the
   default) with each runtime, and `index add` of the same unchanged files.

The machine is shared: the load average is recorded beside each figure. Writes
bench/results/embedding.json and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CORPORA = ROOT.parent / "shared" / "corpora" / "retrieval"
RESULTS = ROOT / "bench" / "results" / "embedding.json"

# Multiply-adds of one token through MiniLM-L6 (hidden 384, FFN 1536, 6 layers), as
# FLOPs: 4 projections of 384x384 + two FFN matrices, x2 for multiply and add; the
# attention's own products add 4*L*384 per token per layer (L = length).
FLOP_PER_TOKEN = 6 * 2 * (4 * 384 * 384 + 2 * 384 * 1536)


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


def scifact(n: int) -> list[str]:
    out = []
    with (CORPORA / "scifact" / "corpus.jsonl").open() as f:
        for line in f:
            row = json.loads(line)
            out.append(f"{row['title']}\n{row['text']}")
            if len(out) == n:
                break
    return out


def vaswani(n: int) -> list[str]:
    raw = (CORPORA / "vaswani_npl" / "corpus" / "doc-text.trec").read_text()
    docs = [
        " ".join(m.group(1).split())
        for m in re.finditer(r"<DOCNO>\s*\S+\s*</DOCNO>(.*?)</DOC>", raw, re.DOTALL)
    ]
    return docs[:n]


def gemm_gflops() -> float:
    a = np.random.default_rng(0).random((4096, 384), dtype=np.float32)
    b = np.random.default_rng(1).random((384, 1536), dtype=np.float32)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * 4096 * 384 * 1536 / best / 1e9


# -- in-process ------------------------------------------------------------------------


def throughput(quick: bool, rounds: int) -> dict[str, Any]:
    from harmonygraph.tools.retrieval.embeddings import SentenceTransformerEmbedder
    from harmonygraph.tools.retrieval.onnx_embedder import OnnxMiniLMEmbedder

    onnx = OnnxMiniLMEmbedder()
    torch_ = SentenceTransformerEmbedder()
    onnx.load()
    torch_._load()
    sets = {
        "scifact (long chunks)": scifact(96 if quick else 256),
        "npl (short chunks)": vaswani(256 if quick else 1024),
    }
    out: dict[str, Any] = {}
    worst = 1.0
    cosines: list[float] = []
    for name, texts in sets.items():
        tokens = sum(
            min(onnx.count_input_tokens(t), onnx.max_input_tokens) + 2 for t in texts
        )
        times: dict[str, list[float]] = {"onnx": [], "torch": []}
        vectors: dict[str, np.ndarray] = {}
        load = []
        for _ in range(rounds):
            for runtime, emb in (("onnx", onnx), ("torch", torch_)):
                load.append(loadavg())
                t = time.perf_counter()
                vectors[runtime] = emb.embed_sync(texts)
                times[runtime].append(time.perf_counter() - t)
        cos = (vectors["onnx"] * vectors["torch"]).sum(axis=1)
        worst = min(worst, float(cos.min()))
        cosines.extend(cos.tolist())
        row: dict[str, Any] = {"texts": len(texts), "tokens": tokens, "loadavg": max(load)}
        for runtime, ts in times.items():
            best = min(ts)
            row[runtime] = {
                "chunks_per_s": round(len(texts) / best, 1),
                "tokens_per_s": round(tokens / best),
                "gflops": round(tokens * FLOP_PER_TOKEN / best / 1e9, 1),
                "seconds": [round(x, 2) for x in ts],
            }
        out[name] = row
    out["agreement"] = {
        "texts": len(cosines),
        "min_cosine": worst,
        "max_1_minus_cosine": float(1 - worst),
        "mean_cosine": float(np.mean(cosines)),
    }
    queries = [json.loads(x)["text"] for x in (CORPORA / "scifact" / "queries.jsonl").open()][:40]
    latency: dict[str, Any] = {}
    for runtime, emb in (("onnx", onnx), ("torch", torch_)):
        ts = []
        for q in queries:
            t = time.perf_counter()
            emb.embed_sync([q])
            ts.append((time.perf_counter() - t) * 1000)
        ts.sort()
        latency[runtime] = {
            "p50_ms": round(statistics.median(ts), 1),
            "p95_ms": round(ts[int(0.95 * (len(ts) - 1))], 1),
        }
    out["query_latency"] = latency
    return out


# -- new processes ---------------------------------------------------------------------

COLD = """
import time, sys
t = time.perf_counter()
from harmonygraph.tools.retrieval.embeddings import {cls}
e = {cls}()
e.embed_sync(["what causes cancer?"])
print(time.perf_counter() - t)
"""


def cold_model(runs: int, env: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for _ in range(runs):  # interleaved
        for runtime, cls in (("onnx", "OnnxMiniLMEmbedder"), ("torch", "SentenceTransformerEmbedder")):
            t = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", COLD.format(cls=cls)], capture_output=True, text=True,
                env=env, check=True,
            )  # fmt: skip
            wall = time.perf_counter() - t
            out.setdefault(runtime, []).append(
                {"process_s": round(wall, 2), "import_load_embed_s": round(float(proc.stdout), 2)}
            )
    return {
        k: {"median_process_s": statistics.median(r["process_s"] for r in v), "runs": v}
        for k, v in out.items()
    }


def hg_exe() -> list[str]:
    # The console script beside this Python (a pyenv shim in PATH would add ~0.2 s of bash).
    exe = Path(sys.executable).parent / "harmonygraph"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("harmonygraph")
    return [found] if found else [sys.executable, "-m", "harmonygraph.cli"]


def hg(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    cmd = [*hg_exe(), *args]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return wall, proc.stdout + proc.stderr


def commands(n_docs: int, runs: int, base_env: dict[str, str]) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="hgb-"))
    home.chmod(0o755)
    env = {**base_env, "HARMONYGRAPH_HOME": str(home)}
    env.pop("DATABASE_URL", None)
    env.pop("HARMONYGRAPH_EMBEDDER", None)
    docs = home / "docs"
    docs.mkdir()
    for i, text in enumerate(scifact(n_docs)):
        (docs / f"doc{i:05d}.txt").write_text(text)
    out: dict[str, Any] = {"documents": n_docs}
    try:
        out["db_start_s"] = round(hg(["db", "start"], env)[0], 2)  # + the embedding service
        wall, text = hg(["index", "add", str(docs), "--json"], env)
        counts = json.loads(text[text.index("{") :])["counts"]
        out["first_add"] = {"seconds": round(wall, 2), "counts": counts,
                            "note": "includes writing the ONNX graph once (cold cache)"}  # fmt: skip
        queries = [json.loads(x)["text"] for x in (CORPORA / "scifact" / "queries.jsonl").open()]
        searches: dict[str, list[float]] = {"onnx+service": [], "onnx": [], "torch": []}
        variants = {
            "onnx+service": {},  # db start started the service
            "onnx": {"HARMONYGRAPH_EMBED_SERVICE": "0"},  # the command loads ONNX itself
            "torch": {"HARMONYGRAPH_EMBED_RUNTIME": "torch"},
        }
        for i in range(runs):  # interleaved
            for runtime, extra in variants.items():
                e = {**env, **extra}
                searches[runtime].append(round(hg(["index", "search", queries[i]], e)[0], 2))
        text_mode = [round(hg(["index", "search", queries[0], "--mode", "text"], env)[0], 2)
                     for _ in range(runs)]  # fmt: skip
        readd = []
        for _ in range(runs):
            wall, text = hg(["index", "add", str(docs), "--json"], env)
            assert json.loads(text[text.index("{") :])["counts"] == {"unchanged": n_docs}
            readd.append(round(wall, 2))
        help_s = [round(hg(["--help"], env)[0], 2) for _ in range(runs)]
        out["search_hybrid_s"] = {k: {"median": statistics.median(v), "runs": v}
                                  for k, v in searches.items()}  # fmt: skip
        out["search_text_s"] = {"median": statistics.median(text_mode), "runs": text_mode}
        out["readd_unchanged_s"] = {"median": statistics.median(readd), "runs": readd}
        out["help_s"] = {"median": statistics.median(help_s), "runs": help_s}
    finally:
        subprocess.run([*hg_exe(), "db", "stop"], env=env, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    results: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "loadavg_start": loadavg(),
            "fp32_gemm_gflops": round(gemm_gflops(), 1),
            "flop_per_token": FLOP_PER_TOKEN,
        },
    }  # fmt: skip
    import onnxruntime

    results["machine"]["onnxruntime"] = onnxruntime.__version__
    results["commands"] = commands(args.docs, args.rounds, env)
    results["cold_model"] = cold_model(args.rounds, env)
    results["throughput"] = throughput(args.quick, args.rounds)
    results["machine"]["loadavg_end"] = loadavg()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    report(results)


def report(r: dict[str, Any]) -> None:
    m, c, t = r["machine"], r["commands"], r["throughput"]
    print(f"\nmachine: {m['cpus']} CPUs, fp32 matrix product {m['fp32_gemm_gflops']} GFLOP/s, "
          f"load average {m['loadavg_start']} → {m['loadavg_end']}")  # fmt: skip
    print(f"\nCommands, cold (new process each; {c['documents']} SciFact files)   goal")
    print(f"  index search (hybrid), service   {c['search_hybrid_s']['onnx+service']['median']:6.2f} s   ≤ 1.5 s")
    print(f"  index search (hybrid), ONNX      {c['search_hybrid_s']['onnx']['median']:6.2f} s   (no service)")
    print(f"  index search (hybrid), torch     {c['search_hybrid_s']['torch']['median']:6.2f} s")
    print(f"  index search --mode text         {c['search_text_s']['median']:6.2f} s")
    print(f"  index add, all unchanged         {c['readd_unchanged_s']['median']:6.2f} s   ≤ 1 s")
    print(f"  harmonygraph --help              {c['help_s']['median']:6.2f} s")
    print(f"  first index add (graph written)  {c['first_add']['seconds']:6.2f} s")
    cm = r["cold_model"]
    print("\nCold model (import, load, embed one query; new process)")
    for k in ("onnx", "torch"):
        print(f"  {k:6} {cm[k]['median_process_s']:6.2f} s")
    print("\nThroughput (best of interleaved rounds)    chunks/s   tokens/s   GFLOP/s")
    for name, row in t.items():
        if name in ("agreement", "query_latency"):
            continue
        for k in ("onnx", "torch"):
            x = row[k]
            print(f"  {name:24} {k:6} {x['chunks_per_s']:9.1f} {x['tokens_per_s']:10} "
                  f"{x['gflops']:9.1f}   (load {row['loadavg']})")  # fmt: skip
    q = t["query_latency"]
    print(f"\nQuery latency warm: onnx p50 {q['onnx']['p50_ms']} ms, torch p50 {q['torch']['p50_ms']} ms")
    a = t["agreement"]
    print(f"Agreement over {a['texts']} texts: min cosine {a['min_cosine']:.7f} "
          f"(1 - cos ≤ {a['max_1_minus_cosine']:.1e}; goal ≤ 1e-4)")  # fmt: skip


if __name__ == "__main__":
    main()
