"""The checking graph's nodes: triage, a round of the agents' answers, the method's aggregate, and
the optional localisation judge.

Every answer is stored (``store.factcheck``) by the node that got it, before it returns, so an
interrupted run loses nothing and a re-run is answered from the request cache. The text and the
answers the nodes read back go through ``CheckMemory`` (``memory.py``): read once per text, written
with the other texts in flight in one transaction per wave; every node is a coroutine. The
checkers never see the gold label; only the localisation judge does, after the method answered.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from agents.engine import CallContext, LLMEngine
from agents.errors import LLMCallFailed
from agents.fact_checker import CheckAnswer as Answer
from agents.fact_checker import FactChecker, LocalisationJudge, load_roles
from agents.prompts import prompt_hashes
from graphs.common.fan_out import each, merged
from graphs.factcheck.configuration import FactcheckConfig
from graphs.factcheck.memory import CheckMemory
from graphs.factcheck.methods import MethodSpec
from graphs.factcheck.state import CheckState
from store import Store
from store.factcheck import AnswerRow
from store.records import sha256_of

PROMPTS = ("factcheck", "factcheck_debate", "factcheck_moderator", "factcheck_triage", "factcheck_location")


@dataclass
class FactcheckDeps:
    """What one method's job runs against: the store, the checker (and location judge), the method,
    the settings and the seed."""

    store: Store
    checker: LLMEngine
    method: MethodSpec
    config: FactcheckConfig
    seed: int = 0
    dataset: str = ""
    location_judge: LLMEngine | None = None  # with localisation 'llm'

    @property
    def job_key(self) -> str:
        """What shapes this job's output; the same key means the same job (resume, share, skip)."""
        return sha256_of({
            "kind": "factcheck", "dataset": self.dataset, "method": self.method.name, "model": self.checker.model,
            "params": self.checker.request_params(), "settings": self.config.checking(self.seed),
            "location_judge": self.location_judge.model if self.location_judge else None,
            "prompts": [prompt_hashes(p) for p in PROMPTS],
        })[:32]


def majority(answers: list[dict[str, Any]], tie: str) -> dict[str, Any]:
    """Majority verdict; its location is the most named sentence among the answers that agree
    (ties: the lowest agent). A tied vote goes to ``tie``."""
    counts = Counter(a["verdict"] for a in answers)
    top = max(counts.values())
    leaders = sorted(v for v, c in counts.items() if c == top)
    verdict = leaders[0] if len(leaders) == 1 else (tie if tie in leaders else leaders[0])
    agreeing = sorted((a for a in answers if a["verdict"] == verdict), key=lambda a: a["agent"])
    where = Counter(a["sentence_id"] for a in agreeing if a["sentence_id"] is not None)
    sentence = max(where, key=lambda k: (where[k], -min(a["agent"] for a in agreeing if a["sentence_id"] == k))) \
        if where else None
    source = next((a for a in agreeing if a["sentence_id"] == sentence), agreeing[0])
    return {"verdict": verdict, "sentence_id": sentence, "answer_id": source["id"],
            "votes": dict(sorted(counts.items())), "confidence": top / len(answers)}


def view(row: AnswerRow) -> dict[str, Any]:
    """An earlier answer as the next round's debaters (or the moderator) see it."""
    return {"verdict": row.verdict, "sentence_id": row.sentence_id, "correction": row.correction,
            "reasoning": row.reasoning or ""}


class FactcheckNodes:
    """Node functions bound to their dependencies (read only when a node runs, so the graph can be
    built without them to be drawn)."""

    def __init__(self, deps: FactcheckDeps | None):
        self.deps = deps

    @cached_property
    def job_key(self) -> str:
        return self.deps.job_key

    @cached_property
    def memory(self) -> CheckMemory:
        return CheckMemory(self.deps.store, self.job_key)

    @cached_property
    def checker(self) -> FactChecker:
        d = self.deps
        return FactChecker(d.checker, allow_unsure=d.config.allow_unsure,
                           min_reasoning_chars=d.method.min_reasoning_chars, language=d.config.prompt_language)

    @cached_property
    def roles(self) -> list[dict[str, Any]]:
        return load_roles() if self.deps.method.family == "roles" else []

    @cached_property
    def location_judge(self) -> LocalisationJudge | None:
        d = self.deps
        return LocalisationJudge(d.location_judge, d.config.prompt_language) if d.location_judge else None

    # -- helpers of the routing and the nodes ----------------------------------------------------
    def agents_now(self, state: CheckState) -> int:
        return self.deps.method.agents if state.get("team", True) else 1

    def rounds_now(self, state: CheckState) -> int:
        return self.deps.method.rounds if state.get("team", True) else 1

    async def text_of(self, item_id: int) -> tuple[list[str], str]:
        """The text's sentences and its checkers' prompt language (decided once per text)."""
        return (await self.memory.sentences(item_id),
                await self.memory.language(item_id, self.deps.config.prompt_language))

    def text_done(self, item_id: int, result: dict[str, Any]) -> None:
        """After ``aggregate``: forget the text unless the location judge still reads it."""
        judged = self.deps.location_judge is not None and result.get("final", {}).get("verdict") == "error"
        if not judged:
            self.memory.forget(item_id)

    async def save(self, run_id: str, item_id: int, role: str, rnd: int, agent: int, a: Answer,
                   details: dict[str, Any] | None = None) -> dict[str, Any]:
        d = self.deps
        row = await self.memory.save({
            "run_id": run_id, "job_key": self.job_key, "item_id": item_id, "method": d.method.name, "role": role,
            "round": rnd, "agent": agent, "verdict": a.verdict, "sentence_id": a.sentence_id, "span": a.span,
            "correction": a.correction, "confidence": a.confidence, "reasoning": a.reasoning,
            "llm_call_id": a.call_id, "model": d.checker.model, "details": details or {},
        })
        return {"id": row.id, "round": rnd, "agent": agent, "verdict": a.verdict, "sentence_id": a.sentence_id}

    # -- nodes -----------------------------------------------------------------------------------
    async def triage(self, state: CheckState) -> dict[str, Any]:
        """MDAgents: an easy text goes to one reasoning agent, a hard one to the team."""
        ctx = CallContext(run_id=state["run_id"], item_id=state["item_id"])
        try:
            sentences, lang = await self.text_of(state["item_id"])
            difficulty, call_id = await self.checker.triage(sentences, ctx, lang=lang)
        except LLMCallFailed as exc:  # no triage: the text gets the whole team
            return {"failures": [f"triage: {exc.reason}"], "team": True, "difficulty": "unknown"}
        await self.save(state["run_id"], state["item_id"], "triage", 0, -1,
                        Answer(difficulty, None, None, None, 1.0, "", call_id))
        return {"team": difficulty == "hard", "difficulty": difficulty}

    async def ask_agents(self, state: CheckState) -> dict[str, Any]:
        """One round: every agent of the method (one when triage found the text easy) answers at
        once, then the round ends."""
        rnd, team = state.get("round", 0), state.get("team", True)
        update = merged(await each(self.ask_agent(state["run_id"], state["item_id"], rnd, agent, team)
                                   for agent in range(self.agents_now(state))))
        return {**update, "round": rnd + 1}

    async def ask_agent(self, run_id: str, item_id: int, rnd: int, agent: int, team: bool) -> dict[str, Any]:
        """Round 0: the agent answers alone; later rounds (debate): it sees its own and the others'
        previous answers and may revise (Du et al. 2023)."""
        d, method = self.deps, self.deps.method
        sentences, lang = await self.text_of(item_id)
        ctx = CallContext(run_id=run_id, item_id=item_id)
        sampled = method.sampled and team
        params = {"seed": d.seed + agent + 1000 * rnd, "temperature": d.config.temperature if sampled else 0.0,
                  "lang": lang}
        specialist = self.roles[agent] if self.roles and team else None
        try:
            if rnd == 0:
                a = await self.checker.check(sentences, ctx, reasoned=method.reasoned, specialist=specialist,
                                             **params)
                role = "specialist" if specialist else "agent"
            else:
                before = await self.memory.round_answers(item_id, rnd - 1)
                own = next((view(r) for r in before if r.agent == agent), None)
                peers = [view(r) for r in before if r.agent != agent]
                a = await self.checker.check(sentences, ctx, peers=peers, own=own, **params)
                role = "debater"
        except LLMCallFailed as exc:
            return {"failures": [f"round {rnd} agent {agent}: {exc.reason}"]}
        return {"answers": [await self.save(run_id, item_id, role, rnd, agent, a,
                                            {"specialist": specialist["name"] if specialist else None})]}

    async def aggregate(self, state: CheckState) -> dict[str, Any]:
        """The method's answer: the single answer, a majority vote, or a judge / the moderator over
        the last round. The text's graph ends here unless the location judge follows."""
        result: dict[str, Any] = {}
        try:
            result = await self._aggregate(state)
            return result
        finally:
            self.text_done(state["item_id"], result)

    async def _aggregate(self, state: CheckState) -> dict[str, Any]:
        d, method = self.deps, self.deps.method
        last = max((a["round"] for a in state.get("answers", [])), default=None)
        answers = [a for a in state.get("answers", []) if a["round"] == last]
        if not answers:
            return {"outcome": "failed: no answer"}
        if state.get("failures"):  # a vote or judgment over fewer agents than the method asks for is not its answer
            return {"outcome": f"partial: {len(state['failures'])} call(s) failed; the final answer waits for them"}
        rnd, details = last or 0, {"answer_ids": [a["id"] for a in answers], "difficulty": state.get("difficulty")}
        team = state.get("team", True)
        if method.aggregate in ("judge", "moderator") and team:
            rows = await self.memory.round_answers(state["item_id"], rnd)
            names = [f"{r.details.get('specialist') or 'checker ' + str(r.agent + 1)}" for r in rows]
            try:
                sentences, lang = await self.text_of(state["item_id"])
                a = await self.checker.moderate(sentences,
                                                [{"role": n, **view(r)} for n, r in zip(names, rows, strict=True)],
                                                CallContext(run_id=state["run_id"], item_id=state["item_id"]),
                                                lang=lang)
            except LLMCallFailed as exc:
                return {"failures": [f"{method.aggregate}: {exc.reason}"], "outcome": "failed: no final answer"}
            await self.save(state["run_id"], state["item_id"], method.aggregate, rnd, -1, a)
        else:
            if method.aggregate == "vote" and team:
                vote = majority(answers, d.config.vote_tie)
                details.update(votes=vote["votes"])
                src_id, confidence = vote["answer_id"], vote["confidence"]
            else:
                src_id, confidence = answers[0]["id"], None
            src = await self.memory.answer(state["item_id"], src_id)
            a = Answer(src.verdict, src.sentence_id, src.span, src.correction,
                       confidence if confidence is not None else (src.confidence or 0.0), "", None)
            if method.aggregate == "vote" and team:
                a = Answer(vote["verdict"], vote["sentence_id"], a.span if a.verdict == vote["verdict"] else None,
                           a.correction if a.verdict == vote["verdict"] else None, confidence, "", None)
        final = await self.save(state["run_id"], state["item_id"], "final", rnd, -1, a, details)
        return {"final": final, "outcome": f"{a.verdict}"}

    async def judge_location(self, state: CheckState) -> dict[str, Any]:
        """Does the flagged location name the gold error? Asked only of texts that hold one. The
        text's graph ends here."""
        try:
            return await self._judge_location(state)
        finally:
            self.memory.forget(state["item_id"])

    async def _judge_location(self, state: CheckState) -> dict[str, Any]:
        payload = await self.memory.payload(state["item_id"])
        if payload.get("label") != "error" or (payload.get("error_sentence_id") is None
                                               and payload.get("error_span") is None):
            return {}  # a correct text, or a veracity-only one: no gold location to compare with
        final = await self.memory.answer(state["item_id"], state["final"]["id"])
        predicted = {"sentence_id": final.sentence_id, "span": final.span, "correction": final.correction}
        gold = {"sentence_id": payload.get("error_sentence_id"), "span": payload.get("error_span"),
                "correction": payload.get("correction")}
        try:
            same, call_id = await self.location_judge.same_error(
                payload["text"], gold, predicted, CallContext(run_id=state["run_id"], item_id=state["item_id"]),
                payload.get("lang"))
        except LLMCallFailed as exc:
            return {"failures": [f"location judge: {exc.reason}"]}
        await self.save(state["run_id"], state["item_id"], "location_judge", state["final"]["round"], -1,
                  Answer("match" if same else "no_match", None, None, None, 1.0, "", call_id))
        return {}
