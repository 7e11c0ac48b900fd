"""Agent roles of the medication bench (ChiDrug, PROTOCOLS.md section 5): the answerer, the grader
of open answers, and the builder's item writer and label checker.

The answerer may always say "I don't know" (it is in the answer enum of a multiple-choice reply),
and states a confidence when asked, for calibration. The writer quotes the label text behind its
answer; the checker, a separate call, rejects items whose answer the label does not support.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model, model_validator

from agents.engine import CallContext, LLMEngine
from agents.language import PromptLanguage
from agents.prompts import prompt_for, prompt_hash, render

TASK_DESCRIPTIONS: dict[str, str] = json.loads(
    (Path(__file__).parent / "data" / "medication_tasks.json").read_text(encoding="utf-8"))
IDK = "I don't know"


def _ctx(ctx: CallContext, role: str, prompt: str) -> CallContext:
    return replace(ctx, role=role, prompt_name=prompt, prompt_hash=prompt_hash(prompt))


@cache
def answer_model(letters: tuple[str, ...] | None, with_confidence: bool) -> type[BaseModel]:
    """Multiple choice: ``answer`` is an option letter or "I don't know"; open: free text."""
    fields: dict[str, Any] = {"answer": (Literal[(*letters, IDK)], ...) if letters
                              else (str, Field(min_length=1, max_length=2000))}
    if with_confidence:
        fields["confidence"] = (float, Field(ge=0.0, le=1.0))
    return create_model(f"MedAnswer{len(letters) if letters else 'Open'}{'C' if with_confidence else ''}", **fields)


@dataclass(frozen=True)
class MedAnswer:
    answer: str
    confidence: float | None
    call_id: int | None


class MedicationAnswerer:
    role = "medication_answerer"
    prompt = "bench_medication_answer"

    def __init__(self, engine: LLMEngine, ask_confidence: bool = True, language: PromptLanguage = "auto"):
        self.engine, self.ask_confidence, self.language = engine, ask_confidence, language

    async def answer(self, item: dict[str, Any], ctx: CallContext, seed: int = 0) -> MedAnswer:
        """Asked in the item's language (its ``lang`` field, else detected from question and options)."""
        options = item.get("options")
        schema = answer_model(tuple(options) if options else None, self.ask_confidence)
        name = prompt_for(self.prompt, self.language, item.get("lang"), item["question"], options or {})
        messages = render(name, task=item["task"].replace("_", " "), question=item["question"],
                          options=options, ask_confidence=self.ask_confidence)
        res = await self.engine.chat(messages, schema=schema, ctx=_ctx(ctx, self.role, name), seed=seed,
                                     temperature=0.0)
        return MedAnswer(res.value.answer, getattr(res.value, "confidence", None), res.call_id)


class OpenGrade(BaseModel):
    explanation: str = Field(max_length=2000)
    correct: bool


class OpenAnswerGrader:
    role = "medication_grader"
    prompt = "bench_medication_grade"

    def __init__(self, engine: LLMEngine, language: PromptLanguage = "auto"):
        self.engine, self.language = engine, language

    async def grade(self, question: str, reference: str, answer: str, ctx: CallContext,
                    lang: str | None = None) -> tuple[bool, str, int | None]:
        name = prompt_for(self.prompt, self.language, lang, question, reference)
        messages = render(name, question=question, reference=reference, answer=answer)
        res = await self.engine.chat(messages, schema=OpenGrade, ctx=_ctx(ctx, self.role, name),
                                     temperature=0.0, seed=0)
        return res.value.correct, res.value.explanation, res.call_id


@cache
def written_item_model(n_options: int) -> type[BaseModel]:
    """The writer's reply: open (``n_options`` 0) or multiple choice with distinct options and an
    answer index in range, checked by pydantic so a bad draft goes back once for repair."""
    fields: dict[str, Any] = {"question": (str, Field(min_length=5, max_length=2000))}
    if n_options:
        fields["options"] = (list[str], Field(min_length=n_options, max_length=n_options))
        fields["answer_index"] = (int, Field(ge=0, le=n_options - 1))
    fields["reference_answer"] = (str, Field(min_length=1, max_length=2000))
    fields["evidence"] = (str, Field(min_length=3, max_length=4000))

    class _Distinct(BaseModel):
        @model_validator(mode="after")
        def _distinct_options(self):
            opts = getattr(self, "options", None)
            if opts is not None and len({o.strip().casefold() for o in opts}) != len(opts):
                raise ValueError("the options must all be different")
            if opts is not None and any(not o.strip() for o in opts):
                raise ValueError("an option is empty")
            return self

    return create_model(f"WrittenItem{n_options}", __base__=_Distinct, **fields)


@dataclass(frozen=True)
class WrittenItem:
    question: str
    options: list[str] | None
    answer_index: int | None
    reference_answer: str
    evidence: str
    call_id: int | None

    def as_item(self) -> dict[str, Any]:
        """The bench item fields (options keyed A, B, ...; the answer as a letter or the reference)."""
        if self.options is None:
            return {"question": self.question, "answer": self.reference_answer}
        letters = string.ascii_uppercase[:len(self.options)]
        return {"question": self.question, "options": dict(zip(letters, self.options, strict=True)),
                "answer": letters[self.answer_index or 0]}


class MedicationItemWriter:
    role = "medication_writer"
    prompt = "bench_medication_write"

    def __init__(self, engine: LLMEngine, temperature: float = 0.7, language: PromptLanguage = "auto"):
        self.engine, self.temperature, self.language = engine, temperature, language

    async def write(self, drug: str, task: str, section: str, text: str, other_drugs: list[str], n_options: int,
                    ctx: CallContext, seed: int = 0, lang: str | None = None) -> WrittenItem:
        """An item written in the label's language (``lang``, else detected from the label text)."""
        name = prompt_for(self.prompt, self.language, lang, text)
        messages = render(name, drug=drug, task=task.replace("_", " "), task_description=TASK_DESCRIPTIONS[task],
                          section=section.replace("_", " "), text=text, other_drugs=other_drugs, n_options=n_options)
        res = await self.engine.chat(messages, schema=written_item_model(n_options),
                                     ctx=_ctx(ctx, self.role, name), temperature=self.temperature, seed=seed)
        v = res.value
        return WrittenItem(v.question, getattr(v, "options", None), getattr(v, "answer_index", None),
                           v.reference_answer, v.evidence, res.call_id)


class LabelCheck(BaseModel):
    supported: bool
    reason: str = Field(min_length=1, max_length=2000)


class LabelChecker:
    role = "medication_checker"
    prompt = "bench_medication_check"

    def __init__(self, engine: LLMEngine, language: PromptLanguage = "auto"):
        self.engine, self.language = engine, language

    async def check(self, drug: str, section: str, text: str, item: WrittenItem,
                    ctx: CallContext, lang: str | None = None) -> tuple[bool, str, int | None]:
        name = prompt_for(self.prompt, self.language, lang, text)
        messages = render(name, drug=drug, section=section.replace("_", " "), text=text,
                          question=item.question, options=item.options, answer_index=item.answer_index,
                          reference_answer=item.reference_answer)
        res = await self.engine.chat(messages, schema=LabelCheck, ctx=_ctx(ctx, self.role, name),
                                     temperature=0.0, seed=0)
        return res.value.supported, res.value.reason, res.call_id
