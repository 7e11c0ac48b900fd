"""The generate graph's nodes: write the candidates (duplicates dropped), judge them, choose the pair.

Each node writes what it made before returning, so an interrupted run loses nothing and a re-run is
answered from the request cache. What they read (the item, its candidates) and write goes through
``ItemMemory``: read once per item and kept for its life, written in batches with the other items in
flight. Every node is a coroutine: none blocks, so none needs a thread. A node that asks several
things asks them at once (``graphs.common.fan_out``)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from agents.engine import CallContext, LLMEngine
from agents.errors import LLMCallFailed
from agents.roles import RubricJudge, SimpleRubric, conversation_of
from graphs.common.candidates import waiting_for_calls
from graphs.common.fan_out import each, merged
from graphs.common.item_memory import ItemMemory
from graphs.generate.configuration import GenerateConfig
from graphs.generate.state import GenerateState
from store import Store


@dataclass
class GenerateDeps:
    """What the nodes run against: the store, the two engines, the rubric, the settings and the seed."""

    store: Store
    generator: LLMEngine
    judge: LLMEngine
    rubric: SimpleRubric
    config: GenerateConfig
    seed: int = 0


class GenerateNodes:
    """Node functions bound to their dependencies (read only when a node runs, so the graph can be
    built without them to be drawn)."""

    def __init__(self, deps: GenerateDeps | None):
        self.deps = deps
        self._graders: dict[str, RubricJudge] = {}

    @cached_property
    def memory(self) -> ItemMemory:
        return ItemMemory(self.deps.store)

    def grader_in(self, language: str) -> RubricJudge:
        """The judge for items whose prompt language is ``language`` (one per language, made once)."""
        if language not in self._graders:
            d = self.deps
            self._graders[language] = RubricJudge(d.judge, d.rubric, d.config.judge_mode, d.config.judge_scoring,
                                                  language=language)
        return self._graders[language]

    async def write_candidates(self, state: GenerateState) -> dict[str, Any]:
        """The item's N answers at once, each stored as it comes; exact duplicates (after
        whitespace/case normalisation) are then dropped: judged once, paired never."""
        d = self.deps
        return await self.memory.write_candidates(state["item_id"], state["run_id"],
                                                  [(d.generator, i) for i in range(d.config.n_candidates)],
                                                  d.seed, d.config.prompt_language)

    async def judge_candidates(self, state: GenerateState) -> dict[str, Any]:
        """Every distinct candidate judged at once."""
        return merged(await each(self.judge_candidate(state["run_id"], state["item_id"], cid)
                                 for cid in state["distinct_ids"]))

    async def judge_candidate(self, run_id: str, item_id: int, cid: int) -> dict[str, Any]:
        d = self.deps
        ctx = CallContext(run_id=run_id, item_id=item_id)
        rows = await self.memory.candidates(item_id, [cid])
        if cid not in rows:
            raise KeyError(f"candidate {cid} is not in the store")
        try:
            language = await self.memory.language(item_id, d.config.prompt_language)
            grades = await self.grader_in(language).grade(await self.memory.payload(item_id), rows[cid].text, ctx)
        except LLMCallFailed as exc:
            return {"failures": [f"judge[candidate {cid}]: {exc.reason}"]}
        scores = {name: g.score for name, g in grades.items()}
        jids = await self.memory.add_judgments([
            {"run_id": run_id, "candidate_id": cid, "llm_call_id": g.call_id, "criterion": name,
             "criterion_kind": "generic", "score": g.score, "reason": g.reason,
             "details": {**g.reading.as_dict(), "mode": d.config.judge_mode}, "judge_model": d.judge.model}
            for name, g in grades.items()
        ])
        return {"graded": [{"candidate_id": cid, "weighted": d.rubric.weighted(scores), "scores": scores,
                            "judgment_ids": jids}]}

    async def select_pair(self, state: GenerateState) -> dict[str, Any]:
        """Best vs worst once every call succeeded (or ``min_candidates`` were graded): a pair is never
        formed from fewer candidates than asked unless the settings allow it, and then it says so.
        The item's graph ends here: what was kept in memory for it is dropped."""
        try:
            return await self._select_pair(state)
        finally:
            self.memory.forget(state["item_id"])

    async def _select_pair(self, state: GenerateState) -> dict[str, Any]:
        d = self.deps
        graded = sorted(state.get("graded", []), key=lambda g: (-g["weighted"], g["candidate_id"]))
        failures = state.get("failures", [])
        if failures and (d.config.min_candidates is None or len(graded) < d.config.min_candidates):
            return {"paired": False, "outcome": waiting_for_calls(state, len(state.get("candidate_ids", [])),
                                                                  d.config.n_candidates)}
        if len(graded) < 2:
            return {"paired": False, "outcome": f"no pair: {len(graded)} graded distinct candidate(s)"}
        best, worst = graded[0], graded[-1]
        margin = best["weighted"] - worst["weighted"]
        if margin < d.config.min_margin:
            return {"paired": False, "outcome": f"no pair: margin {margin:.2f} < {d.config.min_margin}"}
        rows = await self.memory.candidates(state["item_id"], [best["candidate_id"], worst["candidate_id"]])
        chosen, rejected = rows[best["candidate_id"]], rows[worst["candidate_id"]]
        payload = await self.memory.payload(state["item_id"])
        pair = {
            "kind": "generic", "run_id": state["run_id"], "item_id": state["item_id"],
            "prompt": conversation_of(payload), "chosen": chosen.text, "rejected": rejected.text,
            "chosen_candidate_id": chosen.id, "rejected_candidate_id": rejected.id, "margin": margin,
            "margins": {k: best["scores"][k] - worst["scores"][k] for k in best["scores"]},
            "language": payload.get("lang"),
            "provenance": {
                "rubric": d.rubric.name, "judge_model": d.judge.model, "generator_model": d.generator.model,
                "llm_call_ids": [chosen.llm_call_id, rejected.llm_call_id],
                "judgment_ids": best["judgment_ids"] + worst["judgment_ids"],
                "candidates": {"graded": len(graded), "asked": d.config.n_candidates, "failed_calls": len(failures)},
            },
        }
        new = await self.memory.add_pair(pair)
        return {"paired": True, "outcome": "pair stored" if new else "pair already stored"}
