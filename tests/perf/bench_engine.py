"""Engine throughput against the fake OpenAI server (run by `make bench`; prints JSON).

The server runs in its own process with a fixed per-request latency L and at most C requests
processed at once. For 1, 16, 64 and 256 requests in flight (the engine's limiter), it measures
completed requests per second through the full client path (limiter, HTTP, validation, a row in
the SQLite store per call) and compares with the ideal min(in_flight, C) / L. Then the same work is
run again against the store's cache: calls made and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agents.backends import OpenAICompatBackend  # noqa: E402
from agents.engine import CallContext, EngineConfig, LLMEngine  # noqa: E402
from agents.limits import Limiter  # noqa: E402
from store import Store  # noqa: E402


def start_server(latency: float, capacity: int) -> tuple[subprocess.Popen, str]:
    ready = Path(tempfile.mkdtemp()) / "ready.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_server", "--latency", str(latency), "--capacity", str(capacity),
         "--ready-file", str(ready)], cwd=ROOT,
    )
    deadline = time.monotonic() + 30
    while not ready.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("fake server did not start")
        time.sleep(0.05)
    time.sleep(0.05)
    return proc, json.loads(ready.read_text())["base_url"]


async def run_level(base_url: str, store: Store, in_flight: int, n_requests: int, tag: str) -> dict:
    backend = OpenAICompatBackend(base_url, timeout=60, max_connections=in_flight)
    engine = LLMEngine(backend, EngineConfig(model="fake-model", max_tokens=16), Limiter(in_flight), store)
    # distinct per level and pass, so a level never hits the cache a previous one filled
    messages = [{"role": "user", "content": f"How should I store insulin? ({tag})"}]

    async def one(i: int) -> None:
        await engine.chat(messages, ctx=CallContext(role=tag), seed=i)

    # warm up the connection pool so the timing measures steady state
    await asyncio.gather(*(engine.chat(messages, ctx=CallContext(role="warmup"), seed=-1 - i)
                           for i in range(min(in_flight, 8))))
    engine.usage.calls = 0
    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n_requests)))
    seconds = time.perf_counter() - start
    await engine.aclose()
    return {"seconds": seconds, "calls": engine.usage.calls, "cache_hits": engine.usage.cache_hits,
            "failures": engine.usage.failures}


async def main_async(args: argparse.Namespace) -> dict:
    proc, base_url = start_server(args.latency, args.capacity)
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(str(Path(tmp) / "bench.db"))
            store.ensure_schema()
            for in_flight in args.levels:
                ideal = min(in_flight, args.capacity) / args.latency
                n = max(args.min_requests, int(ideal * args.seconds))
                tag = f"level{in_flight}"
                r = await run_level(base_url, store, in_flight, n, tag)
                assert r["calls"] == n, "a measured level must make every call"
                rps = n / r["seconds"]
                results.append({"in_flight": in_flight, "requests": n, "seconds": round(r["seconds"], 3),
                                "requests_per_s": round(rps, 1), "ideal_per_s": round(ideal, 1),
                                "fraction_of_ideal": round(rps / ideal, 3), "failures": r["failures"]})
                if in_flight == max(args.levels):
                    rerun = await run_level(base_url, store, in_flight, n, tag)
                    cached = {"requests": n, "calls_made": rerun["calls"], "cache_hits": rerun["cache_hits"],
                              "seconds": round(rerun["seconds"], 3),
                              "requests_per_s": round(n / rerun["seconds"], 1)}
            store.dispose()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return {"latency_s": args.latency, "server_capacity": args.capacity,
            "store": "sqlite", "levels": results, "cached_rerun": cached}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, nargs="+", default=[1.0, 0.2],
                    help="seconds per request at the server (L); one run per value. 1 s is closer to a real "
                         "LLM call; 0.2 s is a stress case where, on 2 cores, the pure-Python fake server and "
                         "the client compete for CPU")
    ap.add_argument("--capacity", type=int, default=64, help="requests the server processes at once (C)")
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 16, 64, 256])
    ap.add_argument("--seconds", type=float, default=4.0, help="target duration per level at the ideal rate")
    ap.add_argument("--min-requests", type=int, default=20)
    args = ap.parse_args()
    runs = []
    for latency in args.latency:
        runs.append(asyncio.run(main_async(argparse.Namespace(**{**vars(args), "latency": latency}))))
    print(json.dumps({"benchmark": "engine_throughput", "cores": os.cpu_count(), "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
