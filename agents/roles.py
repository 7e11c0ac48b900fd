"""Agent roles of the first workflow: an answer generator and a rubric judge.

A role owns its prompt template and its reply schema; it knows nothing of graphs or the store
beyond the ``CallContext`` it passes to the engine for traceability.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, create_model

from agents.engine import CallContext, ChatResult, LLMEngine
from agents.language import PromptLanguage
from agents.prompts import prompt_for, prompt_hash, render
from agents.scoring import ScoreReading, read_score

RUBRICS_DIR = Path(__file__).parent / "rubrics"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True)
class Criterion:
    name: str
    description: str
    weight: float


@dataclass(frozen=True)
class SimpleRubric:
    name: str
    criteria: tuple[Criterion, ...]

    def weighted(self, scores: dict[str, float]) -> float:
        total = sum(c.weight for c in self.criteria)
        return sum(c.weight * scores[c.name] for c in self.criteria) / total


def load_rubric(path_or_name: str | Path = "generic_medical") -> SimpleRubric:
    """Load a rubric JSON file (``{"name", "criteria": [{"name", "description", "weight"}]}``)."""
    path = Path(path_or_name)
    if not path.suffix:
        path = RUBRICS_DIR / f"{path_or_name}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"rubric file {str(path)!r} does not exist") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not valid UTF-8 JSON: {exc}") from None
    crits = []
    for i, c in enumerate(data.get("criteria") or []):
        where = f"{path}: criteria[{i}]"
        if not isinstance(c, dict) or not _NAME.match(str(c.get("name", ""))):
            raise ValueError(f"{where}: field 'name' must be a lower-case identifier")
        if not isinstance(c.get("weight"), (int, float)) or c["weight"] <= 0:
            raise ValueError(f"{where}: field 'weight' must be a positive number")
        crits.append(Criterion(c["name"], str(c.get("description", "")), float(c["weight"])))
    if not crits:
        raise ValueError(f"{path}: field 'criteria' must list at least one criterion")
    return SimpleRubric(str(data.get("name", path.stem)), tuple(crits))


class CriterionVerdict(BaseModel):
    score: int = Field(ge=0, le=10, description="0 = fails completely, 10 = fully meets the criterion")
    reason: str = Field(max_length=600)


def judge_reply_model(rubric: SimpleRubric) -> type[BaseModel]:
    """One required field per criterion, so constrained decoding cannot skip or rename one."""
    fields: dict[str, Any] = {c.name: (CriterionVerdict, ...) for c in rubric.criteria}
    return create_model(f"Grades_{rubric.name}", **fields)


def conversation_of(payload: dict[str, Any]) -> list[dict[str, str]]:
    """The user-side conversation of an instruction item (single prompt or multi-turn messages)."""
    if payload.get("messages"):
        return [{"role": m["role"], "content": m["content"]} for m in payload["messages"]]
    return [{"role": "user", "content": payload["prompt"]}]


def question_text(payload: dict[str, Any]) -> str:
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in conversation_of(payload)) \
        if payload.get("messages") else payload["prompt"]


def item_prompt(name: str, language: str, payload: dict[str, Any]) -> str:
    """``name`` in the language of an instruction item (its ``lang`` field, else its text), unless
    the ``language`` setting names one."""
    return prompt_for(name, language, payload.get("lang"), [m["content"] for m in conversation_of(payload)])


class AnswerGenerator:
    """``language``: the prompt language setting (``auto``: each item's own)."""

    role = "generator"
    prompt = "answer"

    def __init__(self, engine: LLMEngine, language: PromptLanguage = "auto"):
        self.engine, self.language = engine, language

    async def answer(self, payload: dict[str, Any], seed: int, ctx: CallContext, **params: Any) -> ChatResult:
        name = item_prompt(self.prompt, self.language, payload)
        system = render(name)[0]
        messages = [system, *conversation_of(payload)]
        ctx.role, ctx.prompt_name, ctx.prompt_hash = self.role, name, prompt_hash(name)
        return await self.engine.chat(messages, ctx=ctx, seed=seed, **params)


JUDGE_MODES = ("all_in_one", "per_criterion")
JUDGE_SCORING = ("sampled", "expected")


@dataclass(frozen=True)
class CriterionGrade:
    score: float
    reading: ScoreReading
    reason: str
    call_id: int | None


class RubricJudge:
    """Grades an answer against a rubric: all criteria in one call (cheap), or one call per
    criterion (HealthBench style: no criterion's grade leans on another's). With ``scoring =
    "expected"`` each score is the probability-weighted mean over the integers the judge considered
    (``agents.scoring``), which needs a server that returns ``top_logprobs``."""

    role = "judge"

    def __init__(self, engine: LLMEngine, rubric: SimpleRubric, mode: str = "all_in_one",
                 scoring: str = "sampled", top_logprobs: int = 10, language: PromptLanguage = "auto"):
        if mode not in JUDGE_MODES:
            raise ValueError(f"unknown judge mode {mode!r}; choose one of {', '.join(JUDGE_MODES)}")
        if scoring not in JUDGE_SCORING:
            raise ValueError(f"unknown judge scoring {scoring!r}; choose one of {', '.join(JUDGE_SCORING)}")
        self.engine, self.rubric, self.mode, self.scoring = engine, rubric, mode, scoring
        self.top_logprobs, self.language = top_logprobs, language
        self.prompt = "judge" if mode == "all_in_one" else "judge_criterion"
        self.reply_model = judge_reply_model(rubric) if mode == "all_in_one" else CriterionVerdict

    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"temperature": 0.0, "seed": 0}
        if self.scoring == "expected":
            params.update(logprobs=True, top_logprobs=self.top_logprobs)
        return params

    def _ctx(self, ctx: CallContext, name: str) -> CallContext:
        return replace(ctx, role=self.role, prompt_name=name, prompt_hash=prompt_hash(name))

    async def grade(self, payload: dict[str, Any], answer: str, ctx: CallContext) -> dict[str, CriterionGrade]:
        question = question_text(payload)
        name = item_prompt(self.prompt, self.language, payload)
        if self.mode == "all_in_one":
            messages = render(name, question=question, answer=answer, criteria=self.rubric.criteria)
            res = await self.engine.chat(messages, schema=self.reply_model, ctx=self._ctx(ctx, name), **self._params())
            lp = res.logprobs[0] if res.logprobs else None
            return {c.name: self._grade(res, getattr(res.value, c.name), lp, c.name) for c in self.rubric.criteria}

        async def one(c: Criterion) -> CriterionGrade:
            messages = render(name, question=question, answer=answer, criterion=c)
            res = await self.engine.chat(messages, schema=self.reply_model, ctx=self._ctx(ctx, name), **self._params())
            return self._grade(res, res.value, res.logprobs[0] if res.logprobs else None, None)

        grades = await asyncio.gather(*(one(c) for c in self.rubric.criteria))
        return {c.name: g for c, g in zip(self.rubric.criteria, grades, strict=True)}

    def _grade(self, res: ChatResult, verdict: CriterionVerdict, logprobs: Any, key: str | None) -> CriterionGrade:
        reading = read_score(res.text, logprobs if self.scoring == "expected" else None, key)
        if reading.sampled != verdict.score:  # the regex must agree with the validated reply
            reading = ScoreReading(verdict.score, None, 0.0)
        return CriterionGrade(float(reading.value), reading, verdict.reason, res.call_id)
