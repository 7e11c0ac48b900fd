"""Embedded model speed: output tokens per second through the full client path, on llama.cpp's
native server and on llama-cpp-python's server, at several requests in flight, against llama.cpp
called in-process (run by `make bench`; prints JSON).

Every configuration decodes the same prompts greedily (temperature 0) with the same GGUF, context
per request and thread count. "client path" is ``LLMEngine.chat`` -> HTTP -> the server (what every
workflow uses), with ``inflight`` requests sent at once (the engine's limiter); the native server
gets as many slots as requests in flight. "direct" is ``llama_cpp.Llama.create_chat_completion``
in-process, one request at a time: the ratio to it shows what the server and client layers cost,
and what decoding requests together gains. The ``local_parallel`` default comes from this table.

    .venv/bin/python tests/perf/bench_embedded.py [--servers native,python] [--inflight 1,2,4,8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agents.backends import OpenAICompatBackend  # noqa: E402
from agents.engine import CallContext, EngineConfig, LLMEngine  # noqa: E402
from agents.errors import LLMUnavailable  # noqa: E402
from agents.limits import Limiter  # noqa: E402
from agents.local_server import LocalServer, LocalServerConfig, resolve_model_file, usable_cores  # noqa: E402

QUESTIONS = [
    "What is a normal resting heart rate for an adult?",
    "What are the warning signs of a stroke?",
    "How should insulin be stored?",
    "When should a fever in a child be checked by a doctor?",
    "What can cause a persistent dry cough?",
    "How much water should an adult drink per day?",
    "What are common side effects of ibuprofen?",
    "How can I tell a cold from the flu?",
]


# every workflow sends a system prompt; with one, both servers render the same chat prompt
# (without, SmolLM2's Jinja template adds a default one that llama.cpp's built-in template does not)
SYSTEM = "You are a careful medical assistant. Answer briefly."


def prompts(n: int) -> list[list[dict[str, str]]]:
    """``n`` distinct chats (no two share a cached prefix beyond the system prompt)."""
    return [[{"role": "system", "content": SYSTEM},
             {"role": "user", "content": f"({i + 1}) {QUESTIONS[i % len(QUESTIONS)]}"}] for i in range(n)]


def rate(tokens: int, seconds: float) -> dict:
    return {"completion_tokens": tokens, "seconds": round(seconds, 3), "tokens_per_s": round(tokens / seconds, 1)}


async def client_path(base_url: str, model: str, style: str, chats: list[list[dict]], inflight: int,
                      max_tokens: int) -> dict:
    engine = LLMEngine(OpenAICompatBackend(base_url, timeout=600, response_format_style=style),
                       EngineConfig(model=model, temperature=0.0, max_tokens=max_tokens, cache=False),
                       Limiter(inflight), store=None)
    await engine.chat([{"role": "user", "content": "warm up"}], ctx=CallContext(), max_tokens=8)
    engine.usage.completion_tokens = 0
    t = time.perf_counter()
    await asyncio.gather(*(engine.chat(chat, ctx=CallContext(), seed=0) for chat in chats))
    seconds = time.perf_counter() - t
    tokens = engine.usage.completion_tokens
    await engine.aclose()
    return rate(tokens, seconds)


def serve_and_measure(kind: str, model: str, n_ctx: int, threads: int, inflight: int, chats: list[list[dict]],
                      max_tokens: int) -> dict:
    cfg = LocalServerConfig(model=model, n_ctx=n_ctx, n_threads=threads, server=kind, parallel=inflight)
    with LocalServer(cfg) as srv:
        style = "json_schema" if srv.kind == "native" else "json_object"
        return asyncio.run(client_path(srv.base_url, srv.model_name, style, chats, inflight, max_tokens))


def direct(model_path: Path, n_ctx: int, threads: int, chats: list[list[dict]], max_tokens: int) -> dict:
    from llama_cpp import Llama

    llm = Llama(model_path=str(model_path), n_ctx=n_ctx, n_threads=threads, verbose=False)
    llm.create_chat_completion([{"role": "user", "content": "warm up"}], max_tokens=8)
    tokens, t = 0, time.perf_counter()
    for chat in chats:
        out = llm.create_chat_completion(chat, max_tokens=max_tokens,
                                         temperature=0.0, seed=0)
        tokens += out["usage"]["completion_tokens"]
    return rate(tokens, time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--n-ctx", type=int, default=2048, help="context per request (per slot)")
    ap.add_argument("--requests", type=int, default=16, help="requests per configuration")
    ap.add_argument("--servers", default="native,python")
    ap.add_argument("--inflight", default="1,2,4,8", help="requests in flight (= native slots)")
    ap.add_argument("--no-direct", action="store_true", help="skip llama.cpp in-process")
    args = ap.parse_args()
    threads = usable_cores()
    path, name = resolve_model_file(args.model)
    chats = prompts(args.requests)
    results: list[dict] = []
    for kind in args.servers.split(","):
        for inflight in (int(n) for n in args.inflight.split(",")):
            try:
                measured = serve_and_measure(kind, args.model, args.n_ctx, threads, inflight, chats, args.max_tokens)
            except LLMUnavailable as exc:  # e.g. the native server is not built: say so, measure the rest
                results.append({"server": kind, "inflight": inflight, "error": str(exc).splitlines()[0]})
                continue
            results.append({"server": kind, "inflight": inflight, **measured})
            print(json.dumps(results[-1]), file=sys.stderr)
    report: dict = {
        "benchmark": "embedded_model", "model": name, "threads": threads, "max_tokens": args.max_tokens,
        "n_ctx_per_request": args.n_ctx, "requests": len(chats), "client_path": results,
    }
    if not args.no_direct:
        report["direct"] = direct(path, args.n_ctx, threads, chats, args.max_tokens)
        for r in results:
            if "tokens_per_s" in r:
                r["over_direct"] = round(r["tokens_per_s"] / report["direct"]["tokens_per_s"], 3)
    best = max((r for r in results if r["server"] == "native" and "tokens_per_s" in r),
               key=lambda r: r["tokens_per_s"], default=None)
    if best is not None:
        report["best_native_inflight"] = best["inflight"]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
