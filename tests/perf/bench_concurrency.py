"""Does ``--concurrency K`` alone keep K requests in flight? (run by `make bench`; prints JSON)

``carealign generate`` over N instructions against the fake server (fixed latency, large capacity),
once with ``--concurrency K`` alone (items in flight derived from it) and once with the old default
of 8 items in flight. Ideal time = requests x latency / K (every slot busy all the time); the ratio
ideal / measured (from the first request to the last reply, so the process's start-up is left out)
says how much of the server the run used. The latency is long enough (1 s) that one process's CPU is
not what limits it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.fake_server import FakeOpenAIServer  # noqa: E402
from tests.helpers import write_jsonl  # noqa: E402


def run_once(server: FakeOpenAIServer, items: int, n: int, concurrency: int, item_concurrency: int | None,
             latency: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        src = write_jsonl(Path(tmp) / "q.jsonl", [{"prompt": f"Question {i} on fever?"} for i in range(items)])
        cfg = Path(tmp) / "c.toml"
        cfg.write_text("[generate]\n" + (f"item_concurrency = {item_concurrency}\n" if item_concurrency else ""))
        before, peak0 = len(server.requests), server.peak_concurrency
        server.peak_concurrency = 0
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "carealign.cli", "--config", str(cfg), "--db", str(Path(tmp) / "b.db"),
                        "--base-url", server.base_url, "--concurrency", str(concurrency), "generate", str(src),
                        "--n", str(n)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        requests = len(server.requests) - before
        arrivals = server.arrivals[before:]
        busy = arrivals[-1] + latency - arrivals[0]  # first request in to last reply out: no process start-up
        peak, server.peak_concurrency = server.peak_concurrency, max(peak0, server.peak_concurrency)
    ideal = requests * latency / concurrency
    return {"concurrency": concurrency, "item_concurrency": item_concurrency or "derived", "requests": requests,
            "command_seconds": round(seconds, 2), "serving_seconds": round(busy, 2), "ideal_seconds": round(ideal, 2),
            "ratio_of_ideal": round(ideal / busy, 3), "peak_requests_in_flight": peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--latency", type=float, default=1.0)
    ap.add_argument("--no-baseline", action="store_true", help="skip the run with the old 8 items in flight")
    args = ap.parse_args()
    with FakeOpenAIServer(latency=args.latency, capacity=2 * args.concurrency) as server:
        runs = [run_once(server, args.items, args.n, args.concurrency, None, args.latency)]
        if not args.no_baseline:
            runs.append(run_once(server, args.items, args.n, args.concurrency, 8, args.latency))
    print(json.dumps({"benchmark": "concurrency_alone", "latency_s": args.latency, "items": args.items,
                      "n": args.n, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
