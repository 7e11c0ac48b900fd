"""``carealign factcheck run``: one checking graph runs every method of ``graphs.factcheck_methods``.

    START -> (triage) -> ask_agent (x agents, fan-out) -> end_round -> ... (x rounds)
          -> aggregate -> (judge_location) -> END

Round 0: every agent answers alone (self-consistency samples, debaters, specialists, or the one
checker). Each later round (debate): every agent sees its own and the others' previous answers and
may revise (Du et al. 2023). ``aggregate`` gives the method's answer: the single answer, a majority
vote, a judge over the last round, or the moderator over the specialists. With triage (MDAgents),
an easy text goes to one reasoning agent and a hard one to the team. Every answer of every agent
in every round is stored (``check_answers``), so over-criticism can be followed round by round.
The checkers never see the gold label; only the optional localisation judge does, after the fact.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from sqlalchemy import select

from agents.engine import CallContext, LLMEngine
from agents.errors import LLMCallFailed
from agents.fact_checker import CheckAnswer as Answer
from agents.fact_checker import FactChecker, LocalisationJudge, load_roles
from agents.prompts import prompt_hash
from graphs.candidates import item_payload
from graphs.factcheck_methods import MethodSpec
from graphs.runner import WorkflowReport, run_workflow
from store import Store, insert_ignore
from store.models import CheckAnswer
from store.records import sha256_of

PROMPTS = ("factcheck", "factcheck_debate", "factcheck_moderator", "factcheck_triage", "factcheck_location")


@dataclass
class FactCheckSettings:
    temperature: float = 0.7  # of sampled agents (self-consistency, debate); single checkers are greedy
    seed: int = 0
    allow_unsure: bool = False
    vote_tie: str = "correct"  # a tied vote: 'correct' (the cautious call) or 'error'
    localisation: str = "sentence"  # or 'llm': a judge decides whether a flagged location is the gold error


@dataclass
class FactCheckDeps:
    store: Store
    checker: LLMEngine
    method: MethodSpec
    settings: FactCheckSettings
    dataset: str = ""
    location_judge: LLMEngine | None = None

    @property
    def job_key(self) -> str:
        s = self.settings
        return sha256_of({
            "kind": "factcheck", "dataset": self.dataset, "method": self.method.name, "model": self.checker.model,
            "params": self.checker.request_params(), "settings": s.__dict__,
            "location_judge": self.location_judge.model if self.location_judge else None,
            "prompts": [prompt_hash(p) for p in PROMPTS],
        })[:32]


class CheckState(TypedDict, total=False):
    run_id: str
    item_id: int
    round: int
    team: bool  # false when triage sent the text to one agent
    difficulty: str
    answers: Annotated[list[dict[str, Any]], operator.add]  # ids and verdicts, not text
    failures: Annotated[list[str], operator.add]
    final: dict[str, Any]
    outcome: str


class AgentTask(TypedDict):
    run_id: str
    item_id: int
    round: int
    agent: int
    team: bool


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


def build_factcheck_graph(deps: FactCheckDeps):
    store, method, settings, job_key = deps.store, deps.method, deps.settings, deps.job_key
    checker = FactChecker(deps.checker, allow_unsure=settings.allow_unsure,
                          min_reasoning_chars=method.min_reasoning_chars)
    roles = load_roles() if method.family == "roles" else []
    loc_judge = LocalisationJudge(deps.location_judge) if deps.location_judge else None

    def sentences_of(item_id: int) -> list[str]:
        return list(item_payload(store, item_id)["sentences"])

    def save(state_run: str, item_id: int, role: str, rnd: int, agent: int, a: Answer,
             details: dict[str, Any] | None = None) -> dict[str, Any]:
        with store.session() as s:
            insert_ignore(s, CheckAnswer, [{
                "run_id": state_run, "job_key": job_key, "item_id": item_id, "method": method.name, "role": role,
                "round": rnd, "agent": agent, "verdict": a.verdict, "sentence_id": a.sentence_id, "span": a.span,
                "correction": a.correction, "confidence": a.confidence, "reasoning": a.reasoning,
                "llm_call_id": a.call_id, "model": deps.checker.model, "details": details or {},
            }], ["job_key", "item_id", "role", "round", "agent"])
            row_id = s.scalar(select(CheckAnswer.id).where(
                CheckAnswer.job_key == job_key, CheckAnswer.item_id == item_id, CheckAnswer.role == role,
                CheckAnswer.round == rnd, CheckAnswer.agent == agent))
        return {"id": row_id, "round": rnd, "agent": agent, "verdict": a.verdict, "sentence_id": a.sentence_id}

    def agents_now(state: CheckState) -> int:
        return method.agents if state.get("team", True) else 1

    def rounds_now(state: CheckState) -> int:
        return method.rounds if state.get("team", True) else 1

    def fan_out(state: CheckState) -> list[Send]:
        rnd = state.get("round", 0)
        return [Send("ask_agent", AgentTask(run_id=state["run_id"], item_id=state["item_id"], round=rnd, agent=i,
                                            team=state.get("team", True)))
                for i in range(agents_now(state))]

    def start(state: CheckState) -> list[Send] | str:
        return "triage" if method.triage else fan_out(state)

    async def triage(state: CheckState) -> dict[str, Any]:
        ctx = CallContext(run_id=state["run_id"], item_id=state["item_id"])
        try:
            difficulty, call_id = await checker.triage(sentences_of(state["item_id"]), ctx)
        except LLMCallFailed as exc:  # no triage: the text gets the whole team
            return {"failures": [f"triage: {exc.reason}"], "team": True, "difficulty": "unknown"}
        save(state["run_id"], state["item_id"], "triage", 0, -1,
             Answer(difficulty, None, None, None, 1.0, "", call_id))
        return {"team": difficulty == "hard", "difficulty": difficulty}

    def previous(item_id: int, rnd: int) -> list[CheckAnswer]:
        with store.session() as s:
            return list(s.scalars(select(CheckAnswer).where(
                CheckAnswer.job_key == job_key, CheckAnswer.item_id == item_id, CheckAnswer.round == rnd,
                CheckAnswer.role.in_(("agent", "specialist", "debater"))).order_by(CheckAnswer.agent)))

    def view(row: CheckAnswer) -> dict[str, Any]:
        return {"verdict": row.verdict, "sentence_id": row.sentence_id, "correction": row.correction,
                "reasoning": row.reasoning or ""}

    async def ask_agent(task: AgentTask) -> dict[str, Any]:
        rnd, agent, sentences = task["round"], task["agent"], sentences_of(task["item_id"])
        ctx = CallContext(run_id=task["run_id"], item_id=task["item_id"])
        sampled = method.sampled and task["team"]
        params = {"seed": settings.seed + agent + 1000 * rnd, "temperature": settings.temperature if sampled else 0.0}
        specialist = roles[agent] if roles and task["team"] else None
        try:
            if rnd == 0:
                a = await checker.check(sentences, ctx, reasoned=method.reasoned, specialist=specialist, **params)
                role = "specialist" if specialist else "agent"
            else:
                before = previous(task["item_id"], rnd - 1)
                own = next((view(r) for r in before if r.agent == agent), None)
                peers = [view(r) for r in before if r.agent != agent]
                a = await checker.check(sentences, ctx, peers=peers, own=own, **params)
                role = "debater"
        except LLMCallFailed as exc:
            return {"failures": [f"round {rnd} agent {agent}: {exc.reason}"]}
        return {"answers": [save(task["run_id"], task["item_id"], role, rnd, agent, a,
                                 {"specialist": specialist["name"] if specialist else None})]}

    def end_round(state: CheckState) -> dict[str, Any]:
        return {"round": state.get("round", 0) + 1}

    def after_round(state: CheckState) -> list[Send] | str:
        done_round = state["round"] - 1
        got = [a for a in state.get("answers", []) if a["round"] == done_round]
        if got and state["round"] < rounds_now(state):
            return fan_out(state)
        return "aggregate"

    async def aggregate(state: CheckState) -> dict[str, Any]:
        last = max((a["round"] for a in state.get("answers", [])), default=None)
        answers = [a for a in state.get("answers", []) if a["round"] == last]
        if not answers:
            return {"outcome": "failed: no answer"}
        rnd, details = last or 0, {"answer_ids": [a["id"] for a in answers], "difficulty": state.get("difficulty")}
        team = state.get("team", True)
        if method.aggregate in ("judge", "moderator") and team:
            rows = previous(state["item_id"], rnd)
            names = [f"{r.details.get('specialist') or 'checker ' + str(r.agent + 1)}" for r in rows]
            try:
                a = await checker.moderate(sentences_of(state["item_id"]),
                                           [{"role": n, **view(r)} for n, r in zip(names, rows, strict=True)],
                                           CallContext(run_id=state["run_id"], item_id=state["item_id"]))
            except LLMCallFailed as exc:
                return {"failures": [f"{method.aggregate}: {exc.reason}"], "outcome": "failed: no final answer"}
            save(state["run_id"], state["item_id"], method.aggregate, rnd, -1, a)
        else:
            if method.aggregate == "vote" and team:
                vote = majority(answers, settings.vote_tie)
                details.update(votes=vote["votes"])
                src_id, confidence = vote["answer_id"], vote["confidence"]
            else:
                src_id, confidence = answers[0]["id"], None
            with store.session() as s:
                src = s.get(CheckAnswer, src_id)
                a = Answer(src.verdict, src.sentence_id, src.span, src.correction,
                           confidence if confidence is not None else (src.confidence or 0.0), "", None)
            if method.aggregate == "vote" and team:
                a = Answer(vote["verdict"], vote["sentence_id"], a.span if a.verdict == vote["verdict"] else None,
                           a.correction if a.verdict == vote["verdict"] else None, confidence, "", None)
        final = save(state["run_id"], state["item_id"], "final", rnd, -1, a, details)
        return {"final": final, "outcome": f"{a.verdict}"}

    def needs_location_judge(state: CheckState) -> str:
        if loc_judge is None or "final" not in state or state["final"]["verdict"] != "error":
            return END
        return "judge_location"

    async def judge_location(state: CheckState) -> dict[str, Any]:
        payload = item_payload(store, state["item_id"])
        if payload.get("label") != "error":
            return {}
        with store.session() as s:
            final = s.get(CheckAnswer, state["final"]["id"])
            predicted = {"sentence_id": final.sentence_id, "span": final.span, "correction": final.correction}
        gold = {"sentence_id": payload.get("error_sentence_id"), "span": payload.get("error_span"),
                "correction": payload.get("correction")}
        try:
            same, call_id = await loc_judge.same_error(payload["text"], gold, predicted,
                                                       CallContext(run_id=state["run_id"], item_id=state["item_id"]))
        except LLMCallFailed as exc:
            return {"failures": [f"location judge: {exc.reason}"]}
        save(state["run_id"], state["item_id"], "location_judge", state["final"]["round"], -1,
             Answer("match" if same else "no_match", None, None, None, 1.0, "", call_id))
        return {}

    g = StateGraph(CheckState)
    g.add_node("triage", triage)
    g.add_node("ask_agent", ask_agent)
    g.add_node("end_round", end_round)
    g.add_node("aggregate", aggregate)
    g.add_node("judge_location", judge_location)
    g.add_conditional_edges(START, start, ["triage", "ask_agent"])
    g.add_conditional_edges("triage", fan_out, ["ask_agent"])
    g.add_edge("ask_agent", "end_round")
    g.add_conditional_edges("end_round", after_round, ["ask_agent", "aggregate"])
    g.add_conditional_edges("aggregate", needs_location_judge, ["judge_location", END])
    g.add_edge("judge_location", END)
    return g.compile()


def check_outcome(state: dict[str, Any]) -> tuple[bool, str, list[str]]:
    """An item is done when the method gave a final answer (an agent failing on the way is noted)."""
    failures = list(state.get("failures", []))
    return "final" in state, state.get("outcome", "no outcome"), failures


async def run_factcheck(deps: FactCheckDeps, records: list[dict[str, Any]], run_config: dict[str, Any], *,
                        item_concurrency: int = 8, lease_seconds: float = 600.0, redo: bool = False,
                        on_item: Callable[[Any], None] | None = None) -> WorkflowReport:
    engines = {"checker": deps.checker}
    if deps.location_judge is not None:
        engines["location_judge"] = deps.location_judge
    return await run_workflow(deps.store, "factcheck", deps.job_key, build_factcheck_graph(deps), records,
                              deps.dataset, {**run_config, "method": deps.method.name}, check_outcome, engines,
                              item_concurrency=item_concurrency, lease_seconds=lease_seconds, redo=redo,
                              on_item=on_item)
