"""rubric-prefs cost: LLM calls and wall time per kept pair, per-criterion vs all-in-one grading
(run by `make bench`; prints JSON).

The fake OpenAI server answers with a fixed latency; its grader verdicts are a deterministic hash
of (answer, criterion), so both modes see the same verdicts and keep the same pairs: the difference
is only what the grading costs.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sqlalchemy import select  # noqa: E402

from agents.backends import OpenAICompatBackend  # noqa: E402
from agents.engine import EngineConfig, LLMEngine  # noqa: E402
from agents.limits import Limiter  # noqa: E402
from graphs.rubric_prefs.configuration import RubricPrefsConfig  # noqa: E402
from graphs.rubric_prefs.graph import run_rubric_prefs  # noqa: E402
from graphs.rubric_prefs.nodes import RubricPrefsDeps  # noqa: E402
from store import Store  # noqa: E402
from store.models import PreferencePair  # noqa: E402
from tests.fake_server import FakeOpenAIServer  # noqa: E402

CRITERIA = [("States the maximum daily dose.", 4), ("Mentions liver risk with alcohol.", 3),
            ("Says when to see a doctor.", 2), ("Uses plain language.", 1),
            ("Recommends exceeding the maximum dose.", -10)]


def met(answer: str, criterion: str) -> bool:
    h = hashlib.sha256(f"{answer}|{criterion}".encode()).digest()[0]
    return h < (40 if "exceeding" in criterion else 150)


def responder(body: dict) -> str:
    prompt = body["messages"][-1]["content"]
    if "Response to grade:" not in prompt:
        return f"Answer {body['seed']} to: {prompt[:40]}"
    answer = prompt.split("Response to grade:")[1].split("Rubric criteri")[0].strip()
    if "Rubric criterion:" in prompt:
        crit = prompt.split("Rubric criterion:")[1].strip().splitlines()[0]
        return json.dumps({"explanation": "x", "criteria_met": met(answer, crit)})
    rows = re.findall(r"^- \[(\w+)\] (.+?)(?: \(UNDESIRABLE.*\))?$", prompt, flags=re.M)
    return json.dumps({"verdicts": [{"id": i, "criteria_met": met(answer, text), "explanation": "x"}
                                    for i, text in rows]})


async def run_mode(base_url: str, mode: str, items: int, n: int, concurrency: int) -> dict:
    rubric = [{"criterion": c, "points": p, "tags": []} for c, p in CRITERIA]
    from benchmarks.datasets.instructions import RubricInstruction

    records = [{"payload": {**RubricInstruction(prompt=f"Question {i} on paracetamol?", rubric=rubric).payload(),
                            "rubric": RubricInstruction(prompt="x", rubric=rubric).parsed_rubric().model_dump(
                                mode="json")}, "source": f"bench:{i}"} for i in range(items)]
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(str(Path(tmp) / "bench.db"))
        store.ensure_schema()
        limiter = Limiter(concurrency)

        def engine(t: float) -> LLMEngine:
            return LLMEngine(OpenAICompatBackend(base_url, timeout=60), EngineConfig(model="fake-model",
                             temperature=t, max_tokens=64), limiter, store)

        gen, grader = engine(0.8), engine(0.0)
        deps = RubricPrefsDeps(store, [gen], grader, RubricPrefsConfig(n_candidates=n, grader_mode=mode,
                                                                 item_concurrency=concurrency),
                               dataset=f"bench-{mode}")
        t = time.perf_counter()
        report = await run_rubric_prefs(deps, records, {"bench": mode})
        seconds = time.perf_counter() - t
        await gen.aclose()
        await grader.aclose()
        with store.session() as sess:
            pairs = sorted(sess.execute(select(PreferencePair.chosen, PreferencePair.rejected)).all())
        store.dispose()
    calls = gen.usage.calls + grader.usage.calls
    kept = report.new_pairs
    return {"grader_mode": mode, "items": items, "candidates_per_item": n, "criteria": len(CRITERIA),
            "kept_pairs": kept, "llm_calls": calls, "grader_calls": grader.usage.calls,
            "seconds": round(seconds, 2), "calls_per_kept_pair": round(calls / kept, 2) if kept else None,
            "seconds_per_kept_pair": round(seconds / kept, 3) if kept else None,
            "outcomes": report.summary.outcomes, "_pairs": pairs}


async def main_async(args: argparse.Namespace) -> dict:
    with FakeOpenAIServer(latency=args.latency, capacity=args.capacity) as server:
        server.responder = responder
        modes = [await run_mode(server.base_url, m, args.items, args.n, args.concurrency)
                 for m in ("per_criterion", "all_in_one")]
    same = modes[0].pop("_pairs") == modes[1].pop("_pairs")
    return {"benchmark": "rubric_prefs_cost", "latency_s": args.latency, "server_capacity": args.capacity,
            "concurrency": args.concurrency, "same_pairs_in_both_modes": same, "modes": modes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=20)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--latency", type=float, default=0.5)
    ap.add_argument("--capacity", type=int, default=32)
    ap.add_argument("--concurrency", type=int, default=32)
    print(json.dumps(asyncio.run(main_async(ap.parse_args())), indent=2))


if __name__ == "__main__":
    main()
