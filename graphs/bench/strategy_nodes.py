"""``carealign bench strategy``: strategy proficiency Q, weighted F1 and preference bias B on
ESConv-format dialogues (Kang et al. 2024, PROTOCOLS.md section 3).

    START -> choose_strategy -> END

``generate``: the model writes the supporter's next turn with a strategy from the prompted set;
``classify``: it labels the gold turn. The choice is an enum of the prompted set; a mapping carries
it into the scored set (the gold set). Each turn's result goes to ``bench_results`` (bench
``strategy``); the summary (Q, W-F1, B, confusion matrix, distributions) is the run's ``summary``.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph

from agents.bench_roles import StrategyAgent
from agents.engine import CallContext, LLMEngine
from agents.errors import LLMCallFailed
from agents.prompts import prompt_hash
from benchmarks.strategy_bench import summarise_strategies
from benchmarks.strategy_metrics import normalise_strategy
from graphs.bench_store import run_bench, store_result
from graphs.candidates import item_payload
from graphs.runner import WorkflowReport
from store import Store
from store.records import sha256_of

BENCH = "strategy"


@dataclass
class StrategyBenchSettings:
    mode: str = "generate"  # or classify
    seed: int = 0
    temperature: float | None = None  # of generate mode; None = the engine's; classify is greedy
    aliases: dict[str, str] = field(default_factory=dict)  # name -> scored name (mapping file + defaults)


@dataclass
class StrategyBenchDeps:
    store: Store
    model: LLMEngine
    strategies: list[dict[str, str]]  # the scored set (gold names)
    settings: StrategyBenchSettings
    dataset: str = ""
    prompt_strategies: list[dict[str, str]] | None = None  # the set the model chooses from [default: scored set]

    @property
    def offered(self) -> list[dict[str, str]]:
        return self.prompt_strategies or self.strategies

    @property
    def job_key(self) -> str:
        s = self.settings
        return sha256_of({
            "kind": "bench-strategy", "dataset": self.dataset, "mode": s.mode, "seed": s.seed,
            "temperature": s.temperature, "model": [self.model.model, self.model.request_params()],
            "strategies": self.strategies, "offered": self.offered, "aliases": s.aliases,
            "prompt": prompt_hash(f"bench_strategy_{s.mode}"),
        })[:32]


class StrategyBenchState(TypedDict, total=False):
    run_id: str
    item_id: int
    failures: Annotated[list[str], operator.add]
    outcome: str


def build_strategy_bench_graph(deps: StrategyBenchDeps):
    store, settings = deps.store, deps.settings
    agent = StrategyAgent(deps.model, deps.offered, settings.mode, settings.temperature)
    scored = [s["name"] for s in deps.strategies]

    async def choose_strategy(state: StrategyBenchState) -> dict[str, Any]:
        p = item_payload(store, state["item_id"])
        try:
            c = await agent.choose(p["history"], p.get("situation"),
                                   p["gold_response"] if settings.mode == "classify" else None,
                                   CallContext(run_id=state["run_id"], item_id=state["item_id"]), seed=settings.seed)
        except LLMCallFailed as exc:
            return {"failures": [f"strategy: {exc.reason}"], "outcome": "failed: no strategy"}
        mapped = normalise_strategy(c.strategy, scored, settings.aliases)
        store_result(store, state["run_id"], BENCH, state["item_id"], deps.model.model, {
            "gold": p["gold"], "predicted": c.strategy, "predicted_scored": mapped, "response": c.response,
            "correct": mapped == p["gold"], "mode": settings.mode,
        }, [c.call_id])
        return {"outcome": "correct" if mapped == p["gold"] else "wrong"}

    g = StateGraph(StrategyBenchState)
    g.add_node("choose_strategy", choose_strategy)
    g.add_edge(START, "choose_strategy")
    g.add_edge("choose_strategy", END)
    return g.compile()


async def run_strategy_bench(
    deps: StrategyBenchDeps, records: list[dict[str, Any]], run_config: dict[str, Any], **run: Any,
) -> tuple[WorkflowReport, dict[str, Any] | None]:
    """Run the bench, then store and return the summary (None when no turn has a result)."""
    def summarise(rows: list) -> dict[str, Any]:
        summary = summarise_strategies([r.metrics for r in rows], [s["name"] for s in deps.strategies],
                                       deps.settings.aliases)
        return {**summary, "mode": deps.settings.mode, "offered": [s["name"] for s in deps.offered]}

    return await run_bench(deps.store, BENCH, deps.job_key, build_strategy_bench_graph(deps), records,
                           deps.dataset, run_config, {"model": deps.model}, deps.model.model, summarise, **run)
