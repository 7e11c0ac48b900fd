"""The strategy bench's node: choose (generate) or label (classify) one turn's strategy, and score it.

The choice is an enum of the offered set; the aliases carry it into the scored set (the gold set).
Each turn's result goes to ``bench_results`` (bench ``strategy``); the summary (Q, W-F1, B,
confusion matrix, distributions) comes from ``benchmarks.datasets.strategy``."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from agents.bench_roles import StrategyAgent
from agents.engine import CallContext, LLMEngine
from agents.errors import LLMCallFailed
from agents.prompts import prompt_hashes
from benchmarks.datasets.strategy import summarise_strategies
from benchmarks.strategy_metrics import normalise_strategy
from graphs.bench.configuration import BenchConfig
from graphs.bench.results import BenchJob
from graphs.bench.state import StrategyBenchState
from store import Store
from store.bench import store_result
from store.lookups import item_payload
from store.records import sha256_of

if TYPE_CHECKING:
    from store.models import BenchResult

BENCH = "strategy"


@dataclass
class StrategyBenchDeps:
    """The store, the model, the ``[bench]`` settings and the run-time data read from files: the
    scored set (gold names), the set offered to the model [default: the scored set] and the aliases
    (name -> scored name: defaults, the set's own, the mapping file)."""

    store: Store
    model: LLMEngine
    strategies: list[dict[str, str]]
    config: BenchConfig
    seed: int = 0
    dataset: str = ""
    prompt_strategies: list[dict[str, str]] | None = None
    aliases: dict[str, str] = field(default_factory=dict)

    @property
    def offered(self) -> list[dict[str, str]]:
        return self.prompt_strategies or self.strategies

    @property
    def job_key(self) -> str:
        mode = self.config.strategy_mode
        return sha256_of({
            "kind": "bench-strategy", "dataset": self.dataset, "mode": mode, "seed": self.seed,
            "temperature": self.config.strategy_temperature, "model": [self.model.model, self.model.request_params()],
            "strategies": self.strategies, "offered": self.offered, "aliases": self.aliases,
            "prompt": prompt_hashes(f"bench_strategy_{mode}"),
        })[:32]

    @property
    def job(self) -> BenchJob:
        return BenchJob(self.store, BENCH, self.job_key, self.dataset, self.model.model, self.config)


class StrategyNodes:
    """Node functions bound to their dependencies (read only when a node runs)."""

    def __init__(self, deps: StrategyBenchDeps | None):
        self.deps = deps

    @cached_property
    def agent(self) -> StrategyAgent:
        d = self.deps
        return StrategyAgent(d.model, d.offered, d.config.strategy_mode, d.config.strategy_temperature,
                             d.config.prompt_language)

    async def choose_strategy(self, state: StrategyBenchState) -> dict[str, Any]:
        d, mode = self.deps, self.deps.config.strategy_mode
        p = item_payload(d.store, state["item_id"])
        try:
            c = await self.agent.choose(p["history"], p.get("situation"),
                                        p["gold_response"] if mode == "classify" else None,
                                        CallContext(run_id=state["run_id"], item_id=state["item_id"]), seed=d.seed,
                                        lang=p.get("lang"))
        except LLMCallFailed as exc:
            return {"failures": [f"strategy: {exc.reason}"], "outcome": "failed: no strategy"}
        mapped = normalise_strategy(c.strategy, [s["name"] for s in d.strategies], d.aliases)
        store_result(d.store, state["run_id"], BENCH, state["item_id"], d.model.model, {
            "gold": p["gold"], "predicted": c.strategy, "predicted_scored": mapped, "response": c.response,
            "correct": mapped == p["gold"], "mode": mode,
        }, [c.call_id])
        return {"outcome": "correct" if mapped == p["gold"] else "wrong"}

    def summarise(self, rows: list[BenchResult]) -> dict[str, Any]:
        d = self.deps
        summary = summarise_strategies([r.metrics for r in rows], [s["name"] for s in d.strategies], d.aliases)
        return {**summary, "mode": d.config.strategy_mode, "offered": [s["name"] for s in d.offered]}
