"""Debate's compute as the report counted it before issue 17 and as it counts it now, on the fake
OpenAI server with a checker whose replies sometimes fail validation (prints JSON).

A share of the debate replies (``--broken``) is not JSON, before and after the repair round, and
a share of requests (``--faults``) first answers HTTP 500 and is retried. "before" is the old
count (only the calls behind stored answers, per scored text); "after" is ``benchmarks.factcheck_report``'s: every
call the job made, failed ones included, HTTP attempts with retries and repair rounds, failed
calls, tokens, per text of the job.

    .venv/bin/python tests/perf/bench_honest_compute.py --texts 12 --method debate@2x2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from agents.backends import OpenAICompatBackend  # noqa: E402
from agents.engine import EngineConfig, LLMEngine  # noqa: E402
from agents.limits import Limiter  # noqa: E402
from benchmarks.factcheck_report import method_result  # noqa: E402
from graphs.factcheck.configuration import FactcheckConfig  # noqa: E402
from graphs.factcheck.graph import run_factcheck  # noqa: E402
from graphs.factcheck.methods import parse_method  # noqa: E402
from graphs.factcheck.nodes import FactcheckDeps  # noqa: E402
from store import Store  # noqa: E402
from store.models import CheckAnswer, LLMCall  # noqa: E402
from tests.fake_server import FakeOpenAIServer, Reply  # noqa: E402


def share(body: dict, salt: str) -> float:
    """A stable number in [0, 1) per request (its messages and seed), so a retry is treated alike."""
    key = json.dumps([body["messages"], body.get("seed"), salt], sort_keys=True).encode()
    return zlib.crc32(key) / 2**32


def checker(broken: float):
    def respond(body: dict) -> str:
        if share(body, "broken") < broken:
            return "I am not sure how to answer in that format."
        flag = share(body, "verdict") < 0.5
        return json.dumps({"reasoning": "Checked each sentence.", "verdict": "error" if flag else "correct",
                           "error_sentence_id": 1 if flag else None, "error_span": None,
                           "correction": "fixed" if flag else None, "confidence": 0.7})
    return respond


def records(n: int) -> list[dict]:
    return [{"payload": {"text": f"Text number {i}. Claim {i}.", "label": "error" if i % 2 else "correct",
                         "sentences": [f"Text number {i}.", f"Claim {i}."],
                         **({"error_sentence_id": 1} if i % 2 else {})}} for i in range(n)]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--texts", type=int, default=12)
    ap.add_argument("--method", default="debate@2x2")
    ap.add_argument("--broken", type=float, default=0.15, help="share of replies that are not JSON")
    ap.add_argument("--faults", type=float, default=0.1, help="share of requests first answered HTTP 500")
    args = ap.parse_args()
    seen: set[str] = set()

    def fault(body: dict) -> Reply | None:
        key = json.dumps([body["messages"], body.get("seed")], sort_keys=True)
        if key not in seen and share(body, "fault") < args.faults:
            seen.add(key)
            return Reply(status=500)
        return None

    with FakeOpenAIServer() as server, tempfile.TemporaryDirectory() as tmp:
        server.responder, server.fault = checker(args.broken), fault
        store = Store(f"sqlite:///{tmp}/b.db")
        store.ensure_schema()
        engine = LLMEngine(OpenAICompatBackend(server.base_url, timeout=30, max_connections=8),
                           EngineConfig(model="bench", max_tokens=128, max_retries=2, backoff_max=0.01),
                           Limiter(8), store)
        deps = FactcheckDeps(store, engine, parse_method(args.method), FactcheckConfig(), dataset="bench")
        report = await run_factcheck(deps, records(args.texts), {"method": args.method})
        r = method_result(store, deps.job_key, n_resamples=10)
        with store.session() as s:  # the old count: only the calls behind stored answers, per scored text
            used = {i for i in s.scalars(select(CheckAnswer.llm_call_id).where(CheckAnswer.job_key == deps.job_key))
                    if i is not None}
            old_calls, old_tokens = s.execute(select(
                func.count(LLMCall.id), func.coalesce(func.sum(LLMCall.prompt_tokens + LLMCall.completion_tokens), 0),
            ).where(LLMCall.id.in_(used))).one()
        await engine.aclose()
        store.dispose()
    per = lambda x, n: round(x / n, 2) if n else None  # noqa: E731
    print(json.dumps({
        "method": args.method, "texts": args.texts, "scored": r.n_texts, "done": report.summary.done,
        "nominal_calls_per_text": parse_method(args.method).calls,
        "before": {"calls": old_calls, "tokens": old_tokens, "failed_printed": None,
                   "calls_per_text": per(old_calls, r.n_texts), "tokens_per_text": per(old_tokens, r.n_texts)},
        "after": {"calls": r.calls, "attempts": r.attempts, "failed": r.failed_calls, "tokens": r.tokens,
                  "calls_per_text": round(r.calls_per_text, 2), "attempts_per_text": round(r.attempts_per_text, 2),
                  "failed_per_text": round(r.failed_per_text, 2), "tokens_per_text": round(r.tokens_per_text, 1)},
        "http_requests": len(server.requests)}, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
