"""Agent roles of the rubric and strategy benches: the pairwise judge and the strategy agent.

The pairwise judge is how an LLM judge is scored in ProMedical's pairwise mode (PROTOCOLS.md
section 1): it says which of two responses is better and whether each violates a safety veto. The
strategy agent either writes the supporter's next turn with a strategy tag or labels the gold turn
(Kang et al. 2024); its reply model makes the strategy an enum of the chosen set, so constrained
decoding and validation both keep it inside the set.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from agents.engine import CallContext, ChatResult, LLMEngine
from agents.language import PromptLanguage
from agents.prompts import prompt_for, prompt_hash, render

STRATEGY_MODES = ("generate", "classify")


class PairVerdict(BaseModel):
    explanation: str = Field(max_length=4000)
    preferred: Literal["a", "b"]
    a_violates_veto: bool
    b_violates_veto: bool


@dataclass(frozen=True)
class PairJudgement:
    preferred: str | None  # None: the two orders disagreed (a position-biased verdict)
    a_violates_veto: bool
    b_violates_veto: bool
    explanation: str
    call_id: int | None
    call_ids: tuple[int | None, ...] = ()
    position_consistent: bool | None = None  # None when the pair was judged in one order only


class PairwiseJudge:
    role = "pairwise_judge"
    prompt = "bench_pairwise"

    def __init__(self, engine: LLMEngine, language: PromptLanguage = "auto"):
        self.engine, self.language = engine, language

    async def judge(self, conversation: list[dict[str, Any]], response_a: str, response_b: str,
                    criteria: list[dict[str, Any]], ctx: CallContext, lang: str | None = None) -> PairJudgement:
        """``criteria``: ``{"kind", "text"}`` dicts shown to the judge (may be empty); asked in the
        conversation's language (``lang``, else detected). Raises ``LLMCallFailed`` (recorded) when
        no valid verdict came back."""
        name = prompt_for(self.prompt, self.language, lang, [m["content"] for m in conversation])
        messages = render(name, conversation=conversation, response_a=response_a, response_b=response_b,
                          criteria=criteria)
        ctx = replace(ctx, role=self.role, prompt_name=name, prompt_hash=prompt_hash(name))
        res = await self.engine.chat(messages, schema=PairVerdict, ctx=ctx, temperature=0.0, seed=0)
        v = res.value
        return PairJudgement(v.preferred, v.a_violates_veto, v.b_violates_veto, v.explanation, res.call_id,
                             (res.call_id,))

    async def judge_both_orders(self, conversation: list[dict[str, Any]], response_a: str, response_b: str,
                                criteria: list[dict[str, Any]], ctx: CallContext,
                                lang: str | None = None) -> PairJudgement:
        """Position-bias control: judge (A, B) and (B, A). A preference counts only when both orders
        agree (else ``preferred`` is None, scored as wrong); a response is flagged as violating a veto
        when either order flags it."""
        first, second = await asyncio.gather(self.judge(conversation, response_a, response_b, criteria, ctx, lang),
                                             self.judge(conversation, response_b, response_a, criteria, ctx, lang))
        back = {"a": "b", "b": "a"}[second.preferred]
        consistent = first.preferred == back
        return PairJudgement(first.preferred if consistent else None,
                             first.a_violates_veto or second.b_violates_veto,
                             first.b_violates_veto or second.a_violates_veto,
                             f"A/B: {first.explanation}\nB/A: {second.explanation}", first.call_id,
                             (first.call_id, second.call_id), consistent)


@cache
def strategy_reply_model(names: tuple[str, ...], with_response: bool) -> type[BaseModel]:
    """``{"strategy": <enum of names>}`` plus the supporter's ``response`` when generating."""
    fields: dict[str, Any] = {"strategy": (Literal[names], ...)}
    if with_response:
        fields["response"] = (str, Field(min_length=1, max_length=4000))
    return create_model("StrategyTurn" if with_response else "StrategyLabel", **fields)


@dataclass(frozen=True)
class StrategyChoice:
    strategy: str
    response: str | None
    call_id: int | None


class StrategyAgent:
    """``generate``: the supporter's next turn with its strategy; ``classify``: the strategy of the
    gold supporter turn. ``strategies``: ``{"name", "definition"}`` dicts (definition optional)."""

    role = "strategy_agent"

    def __init__(self, engine: LLMEngine, strategies: list[dict[str, str]], mode: str = "generate",
                 temperature: float | None = None, language: PromptLanguage = "auto"):
        if mode not in STRATEGY_MODES:
            raise ValueError(f"unknown strategy mode {mode!r}; choose one of {', '.join(STRATEGY_MODES)}")
        names = tuple(s["name"] for s in strategies)
        if not names or len(set(names)) != len(names):
            raise ValueError("the strategy set must list at least one strategy, each name once")
        self.engine, self.strategies, self.mode, self.temperature = engine, strategies, mode, temperature
        self.language = language
        self.prompt = f"bench_strategy_{mode}"
        self.reply_model = strategy_reply_model(names, mode == "generate")

    async def choose(self, history: list[dict[str, str]], situation: str | None, response: str | None,
                     ctx: CallContext, seed: int = 0, lang: str | None = None) -> StrategyChoice:
        """``history``: ``{"speaker": "seeker"|"supporter", "text"}`` turns; ``response``: the gold
        turn to label (classify mode only). Asked in the conversation's language (``lang``, else
        detected from the situation and the turns)."""
        name = prompt_for(self.prompt, self.language, lang, situation or "", [t["text"] for t in history],
                          response or "")
        messages = render(name, strategies=self.strategies, history=history, situation=situation,
                          response=response)
        ctx = replace(ctx, role=self.role, prompt_name=name, prompt_hash=prompt_hash(name))
        params: dict[str, Any] = {"seed": seed}
        if self.mode == "classify":
            params["temperature"] = 0.0
        elif self.temperature is not None:
            params["temperature"] = self.temperature
        res: ChatResult = await self.engine.chat(messages, schema=self.reply_model, ctx=ctx, **params)
        return StrategyChoice(res.value.strategy, getattr(res.value, "response", None), res.call_id)
