"""``[generate]``: N candidate answers per instruction, judged against a short rubric; best vs worst
becomes a preference pair when the judge's scores are far enough apart."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agents.language import PromptLanguage
from graphs.common.config import PipelineConfig


class GenerateConfig(PipelineConfig):
    prompt_language: PromptLanguage = Field(
        "auto", description="language of every prompt: auto = each item's own (its 'lang' field, else detected "
        "from its text), or en / zh for all items")

    n_candidates: int = Field(4, ge=2, le=64, description="candidate answers per instruction")
    min_margin: float = Field(1.0, ge=0.0, le=10.0,
                              description="minimum gap of weighted judge scores (0-10) for a pair")
    rubric: str = Field("generic_medical", description="rubric JSON file or built-in name (agents/rubrics)")
    judge_mode: Literal["all_in_one", "per_criterion"] = Field(
        "all_in_one", description="one judge call per answer, or one per criterion")
    judge_scoring: Literal["sampled", "expected"] = Field(
        "sampled", description="the sampled integer, or the probability-weighted mean (needs top_logprobs)")

    min_candidates: int | None = Field(None, ge=2, description="form the pair from this many answered and graded "
                                       "candidates even when other calls failed (unset: only when every call "
                                       "succeeded); the pair records how many it had")
