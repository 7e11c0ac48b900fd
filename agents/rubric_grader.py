"""The rubric grader: does a response meet each criterion? (ProMedical grading, HealthBench style).

Verdicts are binary with a short explanation (``{"explanation", "criteria_met"}``, HealthBench's
grader format). For a safety-veto criterion "met" means the undesirable behaviour occurred. One
call per criterion keeps each verdict independent of the others; all criteria in one call is
cheaper; the choice is a setting. ``Rubric.score`` turns the verdicts into S1/S2/S3.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model, model_validator

from agents.engine import CallContext, LLMEngine
from agents.language import PromptLanguage
from agents.prompts import prompt_for, prompt_hash, render
from agents.rubric import Rubric, RubricScore

GRADER_MODES = ("per_criterion", "all_in_one")


class CriterionMet(BaseModel):
    explanation: str = Field(max_length=2000)
    criteria_met: bool


@dataclass(frozen=True)
class GraderVerdict:
    criterion_id: str
    met: bool
    explanation: str
    call_id: int | None


def all_in_one_model(rubric: Rubric) -> type[BaseModel]:
    """One verdict per criterion id, in order; the ids are an enum so constrained decoding keeps them."""
    ids = [c.id for c in rubric.criteria]
    item = create_model("Verdict", id=(Literal[tuple(ids)], ...), criteria_met=(bool, ...),
                        explanation=(str, Field(max_length=2000)))

    class Verdicts(BaseModel):
        verdicts: list[item] = Field(min_length=len(ids), max_length=len(ids))  # type: ignore[valid-type]

        @model_validator(mode="after")
        def _one_per_criterion(self) -> Verdicts:
            got = [v.id for v in self.verdicts]
            if got != ids:
                raise ValueError(f"give exactly one verdict per criterion, in this order: {ids} (got {got})")
            return self

    return Verdicts


class RubricGrader:
    role = "grader"

    def __init__(self, engine: LLMEngine, mode: str = "per_criterion", language: PromptLanguage = "auto"):
        if mode not in GRADER_MODES:
            raise ValueError(f"unknown grader mode {mode!r}; choose one of {', '.join(GRADER_MODES)}")
        self.engine, self.mode, self.language = engine, mode, language
        self.prompt = "grade_criterion" if mode == "per_criterion" else "grade_rubric"

    def _ctx(self, ctx: CallContext, name: str) -> CallContext:
        return replace(ctx, role=self.role, prompt_name=name, prompt_hash=prompt_hash(name))

    async def grade(self, conversation: list[dict[str, Any]], answer: str, rubric: Rubric,
                    ctx: CallContext, lang: str | None = None) -> dict[str, GraderVerdict]:
        """Verdict per criterion id, asked in the item's language (``lang``, the data's field; else
        detected from the conversation). Raises ``LLMCallFailed`` (recorded) if any grading call fails."""
        name = prompt_for(self.prompt, self.language, lang, [m["content"] for m in conversation])
        if self.mode == "all_in_one":
            schema = all_in_one_model(rubric)
            messages = render(name, conversation=conversation, answer=answer, criteria=rubric.criteria)
            res = await self.engine.chat(messages, schema=schema, ctx=self._ctx(ctx, name), temperature=0.0, seed=0)
            return {v.id: GraderVerdict(v.id, v.criteria_met, v.explanation, res.call_id) for v in res.value.verdicts}

        async def one(criterion) -> GraderVerdict:
            messages = render(name, conversation=conversation, answer=answer, criterion=criterion)
            res = await self.engine.chat(messages, schema=CriterionMet, ctx=self._ctx(ctx, name), temperature=0.0,
                                         seed=0)
            return GraderVerdict(criterion.id, res.value.criteria_met, res.value.explanation, res.call_id)

        verdicts = await asyncio.gather(*(one(c) for c in rubric.criteria))
        return {v.criterion_id: v for v in verdicts}

    @staticmethod
    def score(rubric: Rubric, verdicts: dict[str, GraderVerdict]) -> RubricScore:
        return rubric.score({cid: v.met for cid, v in verdicts.items()})
