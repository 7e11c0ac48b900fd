"""esc-search cost: LLM calls per kept pair and pairs per 100 calls, carealign vs the reference
call pattern, on the same seeds and the fake server with a fixed latency (prints JSON).

"reference" re-implements the CSO code's call pattern on the same MCTS and agents: the strategist
is asked at every visit of a node (no prior cache), one sibling per supporter call with its seeker
reply at once, a fresh rollout (its own strategist calls) and one judge call per supporter turn at
every simulation, an ended node re-judged whenever it is selected again, and no early stop.
"carealign" is the default settings (priors cached per node, expand_k siblings per call, lazy seeker,
rollout turns reused as nodes, each turn judged once with all new turns in one call, early stop).
Both keep pairs with the same thresholds (Q >= 0.5, N >= 2, margin 0.25), so margins are not lowered
to win calls; the reference's own rule (margin 0) is reported too, and "carealign_no_early_stop" shows
what the early stop costs in pairs. ``llm_calls`` counts replies (a request shared by two identical
concurrent asks counts for both); ``server_requests`` what the server saw.

The scripted agents are deterministic (hashes of strategy and turn): the seeker ends after 1-3 new
turns, the judge's scores depend on the strategy and the turn. Seeds: ../shared FailedESConv.json
when present, else synthetic dialogues.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agents.backends import OpenAICompatBackend  # noqa: E402
from agents.engine import CallContext, EngineConfig, LLMEngine  # noqa: E402
from agents.esc import load_strategy_set  # noqa: E402
from benchmarks.datasets.esconv import read_esconv_json  # noqa: E402
from graphs.esc_search.configuration import EscSearchConfig  # noqa: E402
from graphs.esc_search.domain import EscDomain, max_depth, pair_members, search_config, tree_pairs  # noqa: E402
from graphs.esc_search.seed import seed_tree  # noqa: E402
from mcts import MCTS, CallCounter, extract_pairs  # noqa: E402
from tests.fake_server import FakeOpenAIServer  # noqa: E402

SHARED_SEEDS = ROOT.parent / "shared" / "data" / "esconv" / "FailedESConv.json"


def h(*parts: object) -> int:
    return hashlib.sha256("|".join(map(str, parts)).encode()).digest()[0]


def responder(body: dict) -> str:
    system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
    turns = len(re.findall(r"^(?:\d+\. )?Supporter: ", user, flags=re.M))
    if system.startswith("You rate"):
        names = re.findall(r"^- ([^:\n]+): ", user.split("Strategies:")[1], flags=re.M)
        return json.dumps({n: h(n, turns) % 11 for n in names})
    if system.startswith("You are the supporter"):
        if "alternative versions" in user:
            names = re.findall(r"^- ([^:\n]+): ", user.split("one per strategy below")[1], flags=re.M)
            return json.dumps({n: f"<{n}> turn {turns + 1}" for n in names})
        name = user.split("using this strategy:\n")[1].split(":")[0]
        return json.dumps({"response": f"<{name}> turn {turns + 1}"})
    if system.startswith("You play"):
        opening = user.split("Conversation so far:")[1].strip().splitlines()[0]
        gold = 2
        return json.dumps({"reply": f"seeker {turns}", "end_conversation": turns >= gold + 1 + h(opening) % 3})
    numbers = [int(n) for n in user.split("Score the supporter turns ")[1].split(".")[0].split(", ")]
    lines = {n: (s, t) for n, s, t in re.findall(r"^(\d+)\. Supporter: <([^>]+)> turn (\d+)", user, flags=re.M)}
    scores = {}
    for n in numbers:
        strategy, turn = lines[str(n)]
        v = 2 + (h(strategy, turn) % 3 if h(strategy) % 2 else h(strategy, turn) % 2)
        scores[f"turn {n}"] = {"empathy": v, "information": v, "humanoid": 3, "strategy": v}
    return json.dumps(scores)


class ReferenceMCTS(MCTS):
    """The reference's call pattern on the same search: priors asked at every visit, and an ended node
    simulated (re-judged) again whenever it is selected."""

    async def _priors(self, node):
        node.priors = None
        return await super()._priors(node)

    async def iterate(self):
        for node in self.tree:
            if node.ended:
                node.reward = None
        return await super().iterate()


REFERENCE = dict(batch_expand=False, lazy_seeker=False, reuse_rollouts=False, cache_ratings=False, batch_judge=False,
                 cache_scores=False, expand_k=1, early_stop_patience=None)
MODES = {"reference": REFERENCE, "carealign": {}, "carealign_no_early_stop": {"early_stop_patience": None}}


def seeds(n: int) -> list[dict]:
    if SHARED_SEEDS.exists():
        return [r["payload"] for r in read_esconv_json(SHARED_SEEDS)[:n]]
    return [{"situation": f"situation {i}", "emotion": "sadness", "problem": "job crisis", "turns": [
        {"speaker": "seeker", "text": f"Hello, I am seeker {i}."},
        {"speaker": "supporter", "parts": [{"strategy": "Question", "text": "What is on your mind?"}]},
        {"speaker": "seeker", "text": "I lost my job."},
        {"speaker": "supporter", "parts": [{"strategy": "Reflection of feelings", "text": "That sounds hard."}]},
        {"speaker": "seeker", "text": "It is."}]} for i in range(n)]


async def run_mode(base_url: str, mode: str, payloads: list[dict], iterations: int) -> dict:
    config = EscSearchConfig(iterations=iterations, **MODES[mode])
    strategies = load_strategy_set(config.strategy_set)
    cfg = EngineConfig(model="fake-model", temperature=0.7, max_tokens=256)
    from agents.limits import Limiter

    limiter = Limiter(64)
    gen = LLMEngine(OpenAICompatBackend(base_url, timeout=60), cfg, limiter, None)
    judge = LLMEngine(OpenAICompatBackend(base_url, timeout=60), EngineConfig(model="judge-model"), limiter, None)

    async def one(i: int, payload: dict) -> dict:
        tree = seed_tree(f"bench-{mode}-{i}", payload, config.gold_turns)
        counter = CallCounter()
        domain = EscDomain(gen, judge, strategies, config, 0, counter, CallContext(), max_depth(config, tree))
        cls = ReferenceMCTS if mode == "reference" else MCTS
        report = await cls(domain, tree, search_config(config, 0, tree), counter=counter,
                           qualifies=pair_members(tree, config)).run()
        kept = tree_pairs(tree, config)
        loose = extract_pairs(tree, q_min=config.q_min, n_min=config.n_min, margin=0.0)
        return {"calls": counter.count, "iterations": report.iterations, "pairs": len(kept),
                "pairs_margin0": len(loose), "margins": [p.margin for p in kept], "stop": report.stop_reason}

    t = time.perf_counter()
    results = await asyncio.gather(*(one(i, p) for i, p in enumerate(payloads)))
    seconds = time.perf_counter() - t
    await gen.aclose()
    await judge.aclose()
    calls = sum(r["calls"] for r in results)
    pairs = sum(r["pairs"] for r in results)
    margins = [m for r in results for m in r["margins"]]
    requests = gen.usage.calls + judge.usage.calls
    return {"mode": mode, "trees": len(payloads), "iterations": sum(r["iterations"] for r in results),
            "llm_calls": calls, "server_requests": requests, "kept_pairs": pairs,
            "kept_pairs_reference_rule_margin0": sum(r["pairs_margin0"] for r in results),
            "calls_per_kept_pair": round(calls / pairs, 2) if pairs else None,
            "requests_per_kept_pair": round(requests / pairs, 2) if pairs else None,
            "pairs_per_100_calls": round(100 * pairs / calls, 2) if calls else None,
            "calls_per_iteration": round(calls / max(1, sum(r["iterations"] for r in results)), 2),
            "mean_margin": round(sum(margins) / len(margins), 3) if margins else None,
            "min_margin": round(min(margins), 3) if margins else None, "seconds": round(seconds, 2),
            "stop_reasons": sorted({r["stop"] for r in results})}


async def main_async(args: argparse.Namespace) -> dict:
    payloads = seeds(args.seeds)
    with FakeOpenAIServer(latency=args.latency) as server:
        server.responder = responder
        modes = [await run_mode(server.base_url, m, payloads, args.iterations) for m in MODES]
    ref, ours = modes[:2]
    ratio = (ref["calls_per_kept_pair"] / ours["calls_per_kept_pair"]
             if ref["calls_per_kept_pair"] and ours["calls_per_kept_pair"] else None)
    return {"benchmark": "esc_search_cost", "latency_s": args.latency, "seeds": len(payloads),
            "seed_source": "FailedESConv.json" if SHARED_SEEDS.exists() else "synthetic",
            "iterations_budget": args.iterations, "modes": modes,
            "calls_per_pair_reduction": round(ratio, 2) if ratio else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--latency", type=float, default=0.005)
    print(json.dumps(asyncio.run(main_async(ap.parse_args())), indent=2))


if __name__ == "__main__":
    main()
