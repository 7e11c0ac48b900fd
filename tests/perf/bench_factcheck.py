"""Fact-checking throughput: texts per second and calls per text for each method, against the fake
OpenAI server with a fixed latency, at LLM concurrency 1, 16 and 128 (run by `make bench`; prints JSON).

Every combination starts from an empty store, so nothing is answered from the cache. Items run
with item concurrency equal to the LLM concurrency; the process-wide limiter bounds the requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agents.backends import OpenAICompatBackend  # noqa: E402
from agents.engine import EngineConfig, LLMEngine  # noqa: E402
from agents.limits import Limiter  # noqa: E402
from graphs.factcheck.configuration import FactcheckConfig  # noqa: E402
from graphs.factcheck.graph import run_factcheck  # noqa: E402
from graphs.factcheck.methods import parse_method  # noqa: E402
from graphs.factcheck.nodes import FactcheckDeps  # noqa: E402
from store import Store  # noqa: E402
from tests.fake_server import FakeOpenAIServer  # noqa: E402


def responder(body: dict) -> str:
    prompt = body["messages"][-1]["content"]
    if "How hard is it to verify" in prompt:
        n = int(re.search(r"Text number (\d+)", prompt).group(1))
        return json.dumps({"reasoning": "r", "difficulty": "hard" if n % 2 else "easy"})
    n = int(re.search(r"Text number (\d+)", prompt).group(1))
    flag = (n + body.get("seed", 0)) % 3 == 0
    return json.dumps({"reasoning": "Checked each sentence in turn.", "verdict": "error" if flag else "correct",
                       "error_sentence_id": 1 if flag else None, "confidence": 0.7})


def records(n: int) -> list[dict]:
    return [{"payload": {"text": f"Text number {i}. Claim {i}.", "label": "error" if i % 2 else "correct",
                         "sentences": [f"Text number {i}.", f"Claim {i}."],
                         **({"error_sentence_id": 1} if i % 2 else {})}} for i in range(n)]


async def one(base_url: str, method: str, concurrency: int, texts: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/b.db")
        store.ensure_schema()
        engine = LLMEngine(OpenAICompatBackend(base_url, timeout=30, max_connections=max(concurrency, 8)),
                           EngineConfig(model="bench", max_tokens=64, cache=False), Limiter(concurrency), store)
        deps = FactcheckDeps(store, engine, parse_method(method), FactcheckConfig(item_concurrency=concurrency),
                             dataset=f"bench-{method}")
        start = time.perf_counter()
        report = await run_factcheck(deps, records(texts), {})
        wall = time.perf_counter() - start
        calls = engine.usage.calls
        await engine.aclose()
        store.dispose()
    return {"method": method, "concurrency": concurrency, "texts": texts, "done": report.summary.done,
            "wall_s": round(wall, 3), "texts_per_s": round(texts / wall, 2), "calls": calls,
            "calls_per_text": round(calls / texts, 2), "nominal_calls_per_text": parse_method(method).calls}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--texts", type=int, default=48)
    ap.add_argument("--latency", type=float, default=0.05, help="seconds per fake-server reply")
    ap.add_argument("--methods", default="zero-shot,cot,sc@5,debate@3x2,roles@3+triage")
    ap.add_argument("--concurrency", default="1,16,128")
    args = ap.parse_args()
    results = []
    with FakeOpenAIServer(latency=args.latency) as server:
        server.responder = responder
        for method in args.methods.split(","):
            for c in (int(x) for x in args.concurrency.split(",")):
                results.append(await one(server.base_url, method, c, args.texts))
                print(json.dumps(results[-1]), file=sys.stderr)
    print(json.dumps({"bench": "factcheck", "latency_s": args.latency, "results": results}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
