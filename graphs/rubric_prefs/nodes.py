"""The rubric-prefs graph's nodes: answer (exact duplicates dropped), grade per criterion, choose safety first.

Each node writes what it made before returning, so an interrupted run loses nothing and a re-run is
answered from the request cache. What they read (the item, its rubric, its candidates) and write
goes through ``ItemMemory``: read once per item and kept for its life, written in batches with the
other items in flight (a candidate's judgments and scores in one transaction per wave). Every node
is a coroutine: none blocks, so none needs a thread. A node that asks several things asks them at
once (``graphs.common.fan_out``)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from agents.engine import CallContext, LLMEngine
from agents.errors import LLMCallFailed
from agents.pair_selection import Graded, select_pair
from agents.prompts import prompt_hashes
from agents.roles import AnswerGenerator, conversation_of
from agents.rubric import Rubric, RubricScore
from agents.rubric_grader import RubricGrader
from graphs.common.candidates import waiting_for_calls
from graphs.common.fan_out import each, merged
from graphs.common.item_memory import MAX_ITEMS, ItemMemory
from graphs.rubric_prefs.configuration import RubricPrefsConfig
from graphs.rubric_prefs.state import RubricPrefsState
from store import Store
from store.batching import BatchQueue
from store.hot_path import GradedCandidate, insert_graded
from store.records import sha256_of


@dataclass
class RubricPrefsDeps:
    store: Store
    generators: list[LLMEngine]
    grader: LLMEngine
    config: RubricPrefsConfig
    seed: int = 0
    dataset: str = ""
    second_grader: LLMEngine | None = None  # graded too, for agreement; never decides a pair

    @property
    def job_key(self) -> str:
        """What shapes this job's output; the same key means the same job (resume, share, skip)."""
        c = self.config
        return sha256_of({
            "kind": "rubric-prefs", "dataset": self.dataset,
            "generators": [[g.model, g.request_params()] for g in self.generators], "grader": self.grader.model,
            "grader_mode": c.grader_mode, "n": c.n_candidates, "seed": self.seed,
            "selection": c.selection().__dict__,
            "second_grader": self.second_grader.model if self.second_grader else None,
            "prompts": [prompt_hashes(AnswerGenerator.prompt), prompt_hashes("grade_criterion"),
                        prompt_hashes("grade_rubric")],
        })[:32]


class RubricPrefsNodes:
    def __init__(self, deps: RubricPrefsDeps | None):
        self.deps = deps
        self._rubrics: OrderedDict[int, Rubric] = OrderedDict()  # item -> its rubric, validated once

    @cached_property
    def memory(self) -> ItemMemory:
        return ItemMemory(self.deps.store)

    @cached_property
    def _write_graded(self) -> BatchQueue[GradedCandidate, list[int]]:
        store = self.deps.store
        return BatchQueue(lambda graded: insert_graded(store, graded))

    @cached_property
    def grader(self) -> RubricGrader:
        return RubricGrader(self.deps.grader, self.deps.config.grader_mode, self.deps.config.prompt_language)

    @cached_property
    def second(self) -> RubricGrader | None:
        d = self.deps
        return RubricGrader(d.second_grader, d.config.grader_mode, d.config.prompt_language) if d.second_grader \
            else None

    async def load(self, item_id: int) -> tuple[dict[str, Any], Rubric]:
        """The item's payload and its rubric (validated once per item)."""
        payload = await self.memory.payload(item_id)
        rubric = self._rubrics.get(item_id)
        if rubric is None:
            rubric = self._rubrics[item_id] = Rubric.model_validate(payload["rubric"])
            while len(self._rubrics) > MAX_ITEMS:
                self._rubrics.popitem(last=False)
        return payload, rubric

    async def write_candidates(self, state: RubricPrefsState) -> dict[str, Any]:
        """Every generator's N answers at once, each stored as it comes; exact duplicates are then
        dropped: graded once (near duplicates are handled at selection)."""
        d = self.deps
        return await self.memory.write_candidates(
            state["item_id"], state["run_id"], [(g, i) for g in d.generators for i in range(d.config.n_candidates)],
            d.seed, d.config.prompt_language)

    async def grade_candidates(self, state: RubricPrefsState) -> dict[str, Any]:
        """Every distinct candidate graded at once."""
        return merged(await each(self.grade_candidate(state["run_id"], state["item_id"], cid)
                                 for cid in state["distinct_ids"]))

    async def grade_candidate(self, run_id: str, item_id: int, cid: int) -> dict[str, Any]:
        d = self.deps
        payload, rubric = await self.load(item_id)
        found = await self.memory.candidates(item_id, [cid])
        if cid not in found:
            raise KeyError(f"candidate {cid} is not in the store")
        answer = found[cid].text
        ctx = CallContext(run_id=run_id, item_id=item_id)
        try:
            # the item's prompt language, as the grader would choose it, decided once per item
            lang = await self.memory.language(item_id, d.config.prompt_language)
            verdicts = await self.grader.grade(conversation_of(payload), answer, rubric, ctx, lang)
            extra = await self.second.grade(conversation_of(payload), answer, rubric, ctx, lang) if self.second else {}
        except LLMCallFailed as exc:
            return {"failures": [f"grade[candidate {cid}]: {exc.reason}"]}
        score = RubricGrader.score(rubric, verdicts)
        by_id = {c.id: c for c in rubric.criteria}

        def rows(found: dict, model: str, role: str) -> list[dict[str, Any]]:
            return [{"run_id": run_id, "candidate_id": cid, "llm_call_id": v.call_id,
                     "criterion": by_id[crit].text, "criterion_kind": by_id[crit].kind.value, "met": v.met,
                     "score": 1.0 if v.met else 0.0, "reason": v.explanation, "judge_model": model,
                     "details": {"criterion_id": crit, "dimension": by_id[crit].dimension,
                                 "mode": d.config.grader_mode, "grader": role}}
                    for crit, v in found.items()]

        jids = await self._write_graded.submit(GradedCandidate(
            rows(verdicts, d.grader.model, "primary"),
            rows(extra, d.second_grader.model, "second") if self.second else [],
            {"candidate_id": cid, "job_key": d.job_key, "run_id": run_id, "s1": score.s1, "s2": score.s2,
             "s3": score.s3, "grader_model": d.grader.model}))
        return {"graded": [{"candidate_id": cid, "s1": score.s1, "s2": score.s2, "s3": score.s3,
                            "judgment_ids": jids}]}

    async def select_pair(self, state: RubricPrefsState) -> dict[str, Any]:
        """Safety first, once every call succeeded (or ``min_candidates`` were graded). The item's
        graph ends here: what was kept in memory for it is dropped."""
        try:
            return await self._select_pair(state)
        finally:
            self.memory.forget(state["item_id"])
            self._rubrics.pop(state["item_id"], None)

    async def _select_pair(self, state: RubricPrefsState) -> dict[str, Any]:
        d = self.deps
        graded = {g["candidate_id"]: g for g in state.get("graded", [])}
        failures = state.get("failures", [])
        asked = d.config.n_candidates * len(d.generators)
        if failures and (d.config.min_candidates is None or len(graded) < d.config.min_candidates):
            return {"paired": False, "outcome": waiting_for_calls(state, len(state.get("candidate_ids", [])), asked)}
        rows = await self.memory.candidates(state["item_id"], graded)
        pool = [Graded(cid, rows[cid].text, RubricScore(g["s1"], g["s2"], g["s3"]))
                for cid, g in sorted(graded.items())]
        sel = select_pair(pool, d.config.selection())
        if not sel.kept:
            return {"paired": False, "outcome": f"no pair: {sel.reason}"}
        payload, rubric = await self.load(state["item_id"])
        chosen, rejected = rows[sel.chosen.candidate_id], rows[sel.rejected.candidate_id]
        m = sel.margins
        pair = {
            "kind": "rubric", "run_id": state["run_id"], "item_id": state["item_id"],
            "prompt": conversation_of(payload), "chosen": chosen.text, "rejected": rejected.text,
            "chosen_candidate_id": chosen.id, "rejected_candidate_id": rejected.id,
            # one unit per number: the margin column is the S1 difference; the veto (s3) and S2
            # differences are in margins, each filterable on its own (db export --min-veto-margin ...)
            "margin": m["s1"],
            "margins": {**m, "chosen_vetoes": float(sel.chosen.score.s3)} if sel.unsafe_chosen else m,
            "language": payload.get("lang"),
            "provenance": {
                "job_key": d.job_key, "grader_model": d.grader.model, "grader_mode": d.config.grader_mode,
                "generator_models": [chosen.model, rejected.model],
                "llm_call_ids": [chosen.llm_call_id, rejected.llm_call_id],
                "judgment_ids": graded[chosen.id]["judgment_ids"] + graded[rejected.id]["judgment_ids"],
                "rubric_criteria": [c.id for c in rubric.criteria], "rubric_id": payload.get("rubric_id"),
                "selection": sel.reason, "decided_by": sel.decided_by, "unsafe_chosen": sel.unsafe_chosen,
                "length_ratio": sel.length_ratio, "dropped": {str(k): v for k, v in sel.dropped.items()},
                "candidates": {"graded": len(graded), "asked": asked, "failed_calls": len(failures)},
            },
        }
        new = await self.memory.add_pair(pair)
        return {"paired": True, "outcome": "pair stored" if new else "pair already stored"}
