"""The pairwise rubric bench judged by a trained reward model instead of an LLM
(``carealign bench rubric --reward-model PATH FILE``).

The run is a bench run like the LLM judge's: bench ``rubric_pairwise``, one result per pair in the
same shape (preference, veto flags, gold, kind), the same summary (pairwise accuracy by kind,
safety P/R/F1) plus per-criterion accuracy, so ``bench compare`` puts the two side by side. The
model is identified by its folder and a key over its files (a retrained model is a new job).

This pipeline knows nothing of torch: the command hands it ``score_pair`` (payload -> verdict,
``training.rm_eval.pairwise_verdict``). Scoring runs in a worker thread, one pair at a time, so the
event loop keeps renewing the run's claims while the model works.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from benchmarks.datasets.rubric_bench import summarise_pairwise
from graphs.bench.configuration import BenchConfig
from graphs.bench.results import BenchJob
from graphs.bench.state import RubricBenchState
from store import Store
from store.bench import store_result
from store.lookups import item_payload
from store.records import sha256_of

if TYPE_CHECKING:
    from store.models import BenchResult

PairScorer = Callable[[dict[str, Any]], dict[str, Any]]
BENCH = "rubric_pairwise"


@dataclass
class RewardModelBenchDeps:
    """The store, the scorer of one pair, the model's name (its folder) and key (its files), the
    ``[bench]`` settings and the dataset name."""

    store: Store
    score_pair: PairScorer
    model: str
    model_key: str
    config: BenchConfig
    dataset: str = ""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def job_key(self) -> str:
        return sha256_of({"kind": "bench-rubric-reward-model", "dataset": self.dataset,
                          "reward_model": self.model_key})[:32]

    @property
    def job(self) -> BenchJob:
        return BenchJob(self.store, BENCH, self.job_key, self.dataset, self.model, self.config)


class RewardModelNodes:
    def __init__(self, deps: RewardModelBenchDeps | None):
        self.deps = deps

    async def score_pair(self, state: RubricBenchState) -> dict[str, Any]:
        d = self.deps
        p = item_payload(d.store, state["item_id"])
        async with d.lock:  # one model, one tokenizer: pairs go through it one after the other
            v = await asyncio.to_thread(d.score_pair, p)
        for c in v["per_criterion"]:
            c["correct"] = c["preferred"] == p["gold"]
        store_result(d.store, state["run_id"], BENCH, state["item_id"], d.model, {
            **v, "gold": p["gold"], "kind": p["kind"], "gold_veto": p["gold_veto"],
            "correct": v["preferred"] == p["gold"], "judge": "reward_model",
        }, [])
        return {"outcome": "correct" if v["preferred"] == p["gold"] else "wrong"}

    def summarise(self, rows: list[BenchResult]) -> dict[str, Any]:
        """The LLM judge's pairwise summary, plus each criterion's own accuracy: how often the
        response scoring higher on it is the gold one (per criterion text, and per kind)."""
        results = [r.metrics for r in rows]
        by_text: dict[str, list[bool]] = defaultdict(list)
        by_kind: dict[str, list[bool]] = defaultdict(list)
        kinds: dict[str, str] = {}
        for r in results:
            for c in r.get("per_criterion", []):
                by_text[c["criterion"]].append(c["correct"])
                by_kind[c["kind"]].append(c["correct"])
                kinds[c["criterion"]] = c["kind"]
        every = [x for v in by_text.values() for x in v]
        return {**summarise_pairwise(results), "judge": "reward_model", "grader_model": self.deps.model,
                "criterion_accuracy": sum(every) / len(every) if every else None, "criterion_rows": len(every),
                "per_criterion_kind": {k: {"accuracy": sum(v) / len(v), "n": len(v)}
                                       for k, v in sorted(by_kind.items())},
                "per_criterion": {t: {"accuracy": sum(v) / len(v), "n": len(v), "kind": kinds[t]}
                                  for t, v in sorted(by_text.items())}}
