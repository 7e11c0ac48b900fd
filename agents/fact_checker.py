"""Fact-checking agents (MedFact, PROTOCOLS.md section 4): checker, debater, moderator, triage, and
the localisation judge.

Every checker sees the text as numbered sentences (the dataset's sentence ids) and answers with a
verdict, the erroneous sentence and span, a correction and a confidence. The reply model is built
per text so the sentence id is range-checked by pydantic, not only by the decoder's schema. Budget
forcing (a minimum reasoning length before the verdict) is a validation rule too: a reply that
reasons less is sent back once through the engine's repair round, then recorded as a failure.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, create_model, model_validator

from agents.data_files import load_entries
from agents.engine import CallContext, ChatResult, LLMEngine
from agents.language import PromptLanguage
from agents.prompts import prompt_for, prompt_hash, render

ROLES_FILE = Path(__file__).parent / "data" / "checker_roles.json"


class _VerdictBase(BaseModel):
    @model_validator(mode="after")
    def _located_when_wrong(self) -> _VerdictBase:
        if self.verdict == "error" and self.error_sentence_id is None and not (self.error_span or "").strip():
            raise ValueError("an 'error' verdict needs error_sentence_id or error_span")
        if self.verdict != "error":
            self.error_sentence_id, self.error_span, self.correction = None, None, None
        return self


MAX_ENUM_SENTENCES = 256


def sentence_id_type(n_sentences: int) -> Any:
    """The ids 0..n-1 as an enum: llama.cpp's grammar enforces enums but ignores integer bounds, so
    a bound alone lets a small model name sentence 9 of 8. Very long texts fall back to a range."""
    if 0 < n_sentences <= MAX_ENUM_SENTENCES:
        return Literal[tuple(range(n_sentences))]
    return Annotated[int, Field(ge=0, le=max(n_sentences - 1, 0))]


@cache
def verdict_model(n_sentences: int, allow_unsure: bool = False, min_reasoning_chars: int = 0,
                  reasoning: bool = True) -> type[BaseModel]:
    """The reply model for a text of ``n_sentences`` sentences (ids 0..n-1). With ``reasoning`` the
    reasoning field comes first, so the model reasons before it commits to a verdict."""
    verdicts = ("correct", "error", "unsure") if allow_unsure else ("correct", "error")
    fields: dict[str, Any] = {}
    if reasoning:
        fields["reasoning"] = (str, Field(min_length=min_reasoning_chars, max_length=max(8000, min_reasoning_chars * 4),
                                          description=f"at least {min_reasoning_chars} characters"
                                          if min_reasoning_chars else "step by step"))
    fields.update(
        verdict=(Literal[verdicts], ...),
        error_sentence_id=(sentence_id_type(n_sentences) | None, None),
        error_span=(str | None, Field(default=None, max_length=2000)),
        correction=(str | None, Field(default=None, max_length=2000)),
        confidence=(float, Field(ge=0.0, le=1.0)),
    )
    return create_model(f"Verdict{n_sentences}{'u' if allow_unsure else ''}{min_reasoning_chars}"
                        f"{'r' if reasoning else ''}", __base__=_VerdictBase, **fields)


class TriageReply(BaseModel):
    reasoning: str = Field(max_length=2000)
    difficulty: Literal["easy", "hard"]


class LocationMatch(BaseModel):
    explanation: str = Field(max_length=2000)
    same_error: bool


@dataclass(frozen=True)
class CheckAnswer:
    verdict: str
    sentence_id: int | None
    span: str | None
    correction: str | None
    confidence: float
    reasoning: str
    call_id: int | None

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "sentence_id": self.sentence_id, "span": self.span,
                "correction": self.correction, "confidence": self.confidence, "reasoning": self.reasoning}


def load_roles(path: Path = ROLES_FILE) -> list[dict[str, str]]:
    """Specialist roles for role-based collaboration: data, not code (``name``, ``focus``)."""
    return load_entries(path, "role", ("name", "focus"), "name")


def numbered(sentences: list[str]) -> list[dict[str, Any]]:
    return [{"id": i, "text": s} for i, s in enumerate(sentences)]


class FactChecker:
    """One checking agent. ``style`` is ``direct`` (verdict only) or ``reasoned`` (reasoning first);
    ``role`` makes it a specialist; ``peers`` (debate) are the other agents' latest answers. Every
    prompt is in the text's language: ``lang`` (the data's field) or detected from the sentences,
    unless the ``language`` setting names one."""

    role_name = "checker"

    def __init__(self, engine: LLMEngine, *, allow_unsure: bool = False, min_reasoning_chars: int = 0,
                 language: PromptLanguage = "auto"):
        self.engine, self.allow_unsure, self.min_reasoning_chars = engine, allow_unsure, min_reasoning_chars
        self.language = language

    def _prompt(self, prompt: str, sentences: list[str], lang: str | None) -> str:
        return prompt_for(prompt, self.language, lang, sentences)

    def _ctx(self, ctx: CallContext, prompt: str, role: str) -> CallContext:
        return replace(ctx, role=role, prompt_name=prompt, prompt_hash=prompt_hash(prompt))

    async def check(self, sentences: list[str], ctx: CallContext, *, reasoned: bool = True,
                    specialist: dict[str, str] | None = None, peers: list[dict[str, Any]] | None = None,
                    own: dict[str, Any] | None = None, seed: int = 0, temperature: float = 0.0,
                    lang: str | None = None) -> CheckAnswer:
        model = verdict_model(len(sentences), self.allow_unsure, self.min_reasoning_chars, reasoned)
        prompt = self._prompt("factcheck_debate" if peers is not None else "factcheck", sentences, lang)
        messages = render(prompt, sentences=numbered(sentences), reasoned=reasoned, specialist=specialist,
                          peers=peers or [], own=own, allow_unsure=self.allow_unsure,
                          min_reasoning_chars=self.min_reasoning_chars)
        role = "debater" if peers is not None else ("specialist" if specialist else self.role_name)
        res = await self.engine.chat(messages, schema=model, ctx=self._ctx(ctx, prompt, role), seed=seed,
                                     temperature=temperature)
        return _answer(res)

    async def moderate(self, sentences: list[str], team: list[dict[str, Any]], ctx: CallContext,
                       lang: str | None = None) -> CheckAnswer:
        """The moderator weighs the specialists' answers and gives the team's verdict."""
        model = verdict_model(len(sentences), self.allow_unsure, 0, True)
        prompt = self._prompt("factcheck_moderator", sentences, lang)
        messages = render(prompt, sentences=numbered(sentences), team=team, allow_unsure=self.allow_unsure)
        res = await self.engine.chat(messages, schema=model, ctx=self._ctx(ctx, prompt, "moderator"),
                                     seed=0, temperature=0.0)
        return _answer(res)

    async def triage(self, sentences: list[str], ctx: CallContext, lang: str | None = None) -> tuple[str, int | None]:
        """MDAgents-style difficulty triage: easy texts go to one agent, hard ones to the team."""
        prompt = self._prompt("factcheck_triage", sentences, lang)
        messages = render(prompt, sentences=numbered(sentences))
        res = await self.engine.chat(messages, schema=TriageReply, ctx=self._ctx(ctx, prompt, "triage"),
                                     seed=0, temperature=0.0)
        return res.value.difficulty, res.call_id


class LocalisationJudge:
    """Does a predicted error location/correction point at the same error as the gold one? (The
    MedFact paper's LLM-judged localisation; sentence-id match is the deterministic default.)"""

    prompt = "factcheck_location"

    def __init__(self, engine: LLMEngine, language: PromptLanguage = "auto"):
        self.engine, self.language = engine, language

    async def same_error(self, text: str, gold: dict[str, Any], predicted: dict[str, Any],
                         ctx: CallContext, lang: str | None = None) -> tuple[bool, int | None]:
        name = prompt_for(self.prompt, self.language, lang, text)
        messages = render(name, text=text, gold=gold, predicted=predicted)
        res = await self.engine.chat(messages, schema=LocationMatch, seed=0, temperature=0.0,
                                     ctx=replace(ctx, role="location_judge", prompt_name=name,
                                                 prompt_hash=prompt_hash(name)))
        return bool(res.value.same_error), res.call_id


def _answer(res: ChatResult) -> CheckAnswer:
    v = res.value
    return CheckAnswer(v.verdict, v.error_sentence_id, v.error_span, v.correction, float(v.confidence),
                       getattr(v, "reasoning", ""), res.call_id)
