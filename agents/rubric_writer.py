"""The rubric writer: drafts a ProMedical rubric for an instruction that has none.

ProMedical's pipeline (PROTOCOLS.md section 1) drafts rubrics with a strong model and a *dynamic*
few-shot pool: the examples shown are the approved rubrics closest to the new instruction, and
physicians' corrections join the pool so later drafts learn from them. This agent does the drafting
and the choice of examples; where the pool lives (the store) and who reviews are the graph's job.

The reply schema keeps kind and dimension consistent and asks for rough weights; the weights are
then normalised here (models are poor at making numbers sum to 1), and criterion ids are assigned
in order (``p1``, ``b1``, ``v1`` ...), so a draft is always a valid ``Rubric``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from agents.engine import CallContext, LLMEngine
from agents.language import PromptLanguage
from agents.prompts import prompt_for, prompt_hash, render
from agents.rubric import (
    BONUS_DIMENSIONS,
    PROFICIENCY_DIMENSIONS,
    VETO_DIMENSIONS,
    CriterionKind,
    Origin,
    Rubric,
    RubricCriterion,
)
from agents.text_similarity import similarity

DIMENSIONS_OF = {CriterionKind.PROFICIENCY: PROFICIENCY_DIMENSIONS, CriterionKind.BONUS: BONUS_DIMENSIONS,
                 CriterionKind.VETO: VETO_DIMENSIONS}
Dimension = Literal[PROFICIENCY_DIMENSIONS + BONUS_DIMENSIONS + VETO_DIMENSIONS]  # type: ignore[valid-type]


class DraftCriterion(BaseModel):
    kind: CriterionKind
    dimension: Dimension
    text: str = Field(min_length=8, max_length=600)
    weight: float | None = Field(default=None, ge=0, le=100, description="relative importance, proficiency only")


class DraftRubric(BaseModel):
    criteria: list[DraftCriterion] = Field(min_length=3, max_length=20)

    @model_validator(mode="after")
    def _coherent(self) -> DraftRubric:
        for n, c in enumerate(self.criteria):
            if c.dimension not in DIMENSIONS_OF[c.kind]:
                raise ValueError(f"criteria[{n}]: dimension {c.dimension!r} is not a {c.kind.value} dimension "
                                 f"({', '.join(DIMENSIONS_OF[c.kind])})")
        kinds = {c.kind for c in self.criteria}
        for needed in (CriterionKind.PROFICIENCY, CriterionKind.VETO):
            if needed not in kinds:
                raise ValueError(f"the rubric needs at least one {needed.value} criterion")
        if len({c.text.strip().lower() for c in self.criteria}) != len(self.criteria):
            raise ValueError("two criteria have the same text")
        return self

    def to_rubric(self) -> Rubric:
        """Ids by kind and order; proficiency weights normalised to sum 1 (equal when none given)."""
        prof = [c for c in self.criteria if c.kind is CriterionKind.PROFICIENCY]
        raw = [c.weight or 0.0 for c in prof]
        total = sum(raw)
        weights = [w / total for w in raw] if total > 0 and all(w > 0 for w in raw) else [1 / len(prof)] * len(prof)
        weights[-1] += 1.0 - sum(weights)
        by_kind: dict[CriterionKind, int] = {}
        out, wi = [], iter(weights)
        for c in self.criteria:
            by_kind[c.kind] = by_kind.get(c.kind, 0) + 1
            out.append(RubricCriterion(
                id=f"{c.kind.value[0]}{by_kind[c.kind]}", text=c.text.strip(), kind=c.kind, dimension=c.dimension,
                weight=next(wi) if c.kind is CriterionKind.PROFICIENCY else None, origin=Origin.GENERATED))
        return Rubric(criteria=out)


@dataclass(frozen=True)
class PoolExample:
    """An approved rubric offered as a few-shot example."""

    rubric_id: int
    instruction: list[dict[str, Any]]
    rubric: dict[str, Any]
    origin: str


@dataclass(frozen=True)
class Draft:
    rubric: Rubric
    call_id: int | None
    example_ids: list[int]


def _text(conversation: list[dict[str, Any]]) -> str:
    return "\n".join(m["content"] for m in conversation)


def choose_examples(conversation: list[dict[str, Any]], pool: list[PoolExample], k: int) -> list[PoolExample]:
    """The k pool rubrics whose instructions are most similar to this one; on equal similarity a
    human-edited rubric first (it carries a reviewer's correction), then the newest."""
    target = _text(conversation)
    ranked = sorted(pool, key=lambda e: (-similarity(target, _text(e.instruction)),
                                         e.origin != Origin.HUMAN_EDITED.value, -e.rubric_id))
    return ranked[:k]


class RubricWriter:
    role = "rubric_writer"
    prompt = "rubric_writer"

    def __init__(self, engine: LLMEngine, fewshot_k: int = 3, temperature: float = 0.2,
                 language: PromptLanguage = "auto"):
        self.engine, self.fewshot_k, self.temperature, self.language = engine, fewshot_k, temperature, language

    async def draft(self, conversation: list[dict[str, Any]], pool: list[PoolExample], ctx: CallContext, *,
                    reference: str | None = None, rejected: list[str | None] | None = None,
                    seed: int = 0, lang: str | None = None) -> Draft:
        """Draft a rubric; ``rejected`` are reviewers' reasons for earlier drafts of the same
        instruction, shown so the new draft avoids what was wrong. The prompt is in the instruction's
        language (``lang``, the data's field; else detected). Raises ``LLMCallFailed``."""
        examples = choose_examples(conversation, pool, self.fewshot_k)
        name = prompt_for(self.prompt, self.language, lang, _text(conversation))
        messages = render(name, conversation=conversation, reference=reference,
                          examples=[{"conversation": e.instruction, "rubric": _example_json(e.rubric)}
                                    for e in examples],
                          rejected=[r for r in (rejected or []) if r])
        ctx = replace(ctx, role=self.role, prompt_name=name, prompt_hash=prompt_hash(name))
        res = await self.engine.chat(messages, schema=DraftRubric, ctx=ctx, temperature=self.temperature, seed=seed)
        return Draft(res.value.to_rubric(), res.call_id, [e.rubric_id for e in examples])


def _example_json(rubric: dict[str, Any]) -> str:
    """An approved rubric in the reply format the writer is asked for."""
    parsed = Rubric.model_validate(rubric)
    return json.dumps({"criteria": [
        {"kind": c.kind.value, "dimension": c.dimension, "text": c.text,
         **({"weight": round(c.weight, 3)} if c.weight is not None else {})}
        for c in parsed.criteria]}, ensure_ascii=False)
