"""The multi-criteria filter panel: is an injected error a good benchmark item?

Each criterion (``agents/data/factbench_criteria.json``: the error is real, detectable from the text
alone, the text reads naturally, exactly one error, the original is correct) is a separate question
put to every judge model, so a verdict is about one thing and can be reviewed on its own. A
criterion passes by a vote of its judges (majority, all or any; a tied majority fails: an item is
only kept when the judges are sure), and an item is accepted when enough criteria pass (all, by
default). Criterion-specific few-shot examples (expert disagreements from earlier review rounds)
go into that criterion's prompt only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from agents.data_files import load_entries
from agents.engine import CallContext, LLMEngine
from agents.error_injector import ErrorType
from agents.language import PromptLanguage
from agents.prompts import prompt_for, prompt_hash, render

CRITERIA_FILE = Path(__file__).parent / "data" / "factbench_criteria.json"
VOTES = ("majority", "all", "any")


@dataclass(frozen=True)
class Criterion:
    id: str
    name: str
    question: str


def load_criteria(path: str | Path = CRITERIA_FILE) -> list[Criterion]:
    """A JSON list of ``{"id", "name", "question"}``; ids must be unique."""
    return [Criterion(c["id"], c["name"], c["question"])
            for c in load_entries(path, "criterion", ("id", "name", "question"), "id")]


class FilterVerdict(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)
    verdict: Literal["pass", "fail"]


@dataclass(frozen=True)
class Verdict:
    criterion: str
    judge: int  # index of the judge model in the panel
    model: str
    passed: bool
    reason: str
    call_id: int | None


@dataclass(frozen=True)
class Example:
    """An expert-corrected verdict shown with one criterion: ``met`` is the expert's verdict."""

    text: str
    sentence_id: int
    original: str
    replacement: str
    error_type: str
    met: bool
    note: str


def criterion_passes(verdicts: list[bool], vote: str) -> bool:
    if not verdicts:
        return False
    if vote == "all":
        return all(verdicts)
    if vote == "any":
        return any(verdicts)
    return sum(verdicts) * 2 > len(verdicts)  # majority; a tie fails


def accept(passed: dict[str, bool], min_criteria: int | None = None) -> bool:
    """Accepted when every criterion passes, or at least ``min_criteria`` of them when given."""
    need = len(passed) if min_criteria is None else min_criteria
    return sum(passed.values()) >= need


class FilterPanel:
    role = "factbench_filter"
    prompt = "factbench_filter"

    def __init__(self, judges: list[LLMEngine], criteria: list[Criterion], language: PromptLanguage = "auto"):
        if not judges:
            raise ValueError("the filter panel needs at least one judge model")
        self.judges, self.criteria, self.language = judges, criteria, language

    async def judge(self, criterion: Criterion, judge: int, *, source: str, variant: dict[str, Any],
                    error_type: ErrorType, examples: list[Example], ctx: CallContext, seed: int,
                    lang: str | None = None) -> Verdict:
        """One judge's verdict on one criterion, asked in the source text's language (``lang``, else
        detected). Raises ``LLMCallFailed``."""
        name = prompt_for(self.prompt, self.language, lang, source)
        messages = render(name, criterion=criterion, examples=examples, error_type=error_type, source=source,
                          variant=variant["text"], sentence_id=variant["sentence_id"], original=variant["original"],
                          replacement=variant["replacement"], rationale=variant["rationale"])
        engine = self.judges[judge]
        res = await engine.chat(messages, schema=FilterVerdict, seed=seed, temperature=0.0,
                                ctx=replace(ctx, role=self.role, prompt_name=name, prompt_hash=prompt_hash(name)))
        return Verdict(criterion.id, judge, engine.model, res.value.verdict == "pass", res.value.reason.strip(),
                       res.call_id)
