"""Embedded model speed: tokens per second through the full client path vs llama.cpp called
directly (run by `make bench`; prints JSON).

Both sides decode the same prompts greedily (temperature 0) with the same GGUF, context size and
thread count. "client path" is ``LLMEngine.chat`` -> HTTP -> llama.cpp's OpenAI-compatible server
(what every workflow uses); "direct" is ``llama_cpp.Llama.create_chat_completion`` in-process. The
ratio shows what the server and client layers cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agents.backends import OpenAICompatBackend  # noqa: E402
from agents.engine import CallContext, EngineConfig, LLMEngine  # noqa: E402
from agents.limits import Limiter  # noqa: E402
from agents.local_server import LocalServer, LocalServerConfig, resolve_model_file  # noqa: E402

PROMPTS = [
    "What is a normal resting heart rate for an adult?",
    "What are the warning signs of a stroke?",
    "How should insulin be stored?",
    "When should a fever in a child be checked by a doctor?",
]


async def client_path(base_url: str, model: str, max_tokens: int) -> dict:
    engine = LLMEngine(OpenAICompatBackend(base_url, timeout=300),
                       EngineConfig(model=model, temperature=0.0, max_tokens=max_tokens, cache=False),
                       Limiter(1), store=None)
    await engine.chat([{"role": "user", "content": "warm up"}], ctx=CallContext(), max_tokens=8)
    engine.usage.completion_tokens = 0
    t = time.perf_counter()
    for p in PROMPTS:
        await engine.chat([{"role": "user", "content": p}], ctx=CallContext(), seed=0)
    seconds = time.perf_counter() - t
    await engine.aclose()
    return {"completion_tokens": engine.usage.completion_tokens, "seconds": round(seconds, 3),
            "tokens_per_s": round(engine.usage.completion_tokens / seconds, 1)}


def direct(model_path: Path, n_ctx: int, threads: int, max_tokens: int) -> dict:
    from llama_cpp import Llama

    llm = Llama(model_path=str(model_path), n_ctx=n_ctx, n_threads=threads, verbose=False)
    llm.create_chat_completion([{"role": "user", "content": "warm up"}], max_tokens=8)
    tokens, t = 0, time.perf_counter()
    for p in PROMPTS:
        out = llm.create_chat_completion([{"role": "user", "content": p}], max_tokens=max_tokens,
                                         temperature=0.0, seed=0)
        tokens += out["usage"]["completion_tokens"]
    seconds = time.perf_counter() - t
    return {"completion_tokens": tokens, "seconds": round(seconds, 3), "tokens_per_s": round(tokens / seconds, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--n-ctx", type=int, default=4096)
    args = ap.parse_args()
    threads = max(1, os.cpu_count() or 1)
    path, name = resolve_model_file(args.model)
    cfg = LocalServerConfig(model=args.model, n_ctx=args.n_ctx, n_threads=threads)
    with LocalServer(cfg) as srv:
        via_client = asyncio.run(client_path(srv.base_url, srv.model_name, args.max_tokens))
    in_process = direct(path, args.n_ctx, threads, args.max_tokens)
    print(json.dumps({
        "benchmark": "embedded_model", "model": name, "threads": threads, "max_tokens": args.max_tokens,
        "prompts": len(PROMPTS), "client_path": via_client, "direct": in_process,
        "client_over_direct": round(via_client["tokens_per_s"] / in_process["tokens_per_s"], 3),
    }, indent=2))


if __name__ == "__main__":
    main()
