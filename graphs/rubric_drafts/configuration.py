"""``[rubrics]``: drafting rubrics for instructions that have none (``carealign rubrics draft``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agents.language import PromptLanguage
from graphs.common.config import PipelineConfig


class RubricDraftsConfig(PipelineConfig):
    """Rubric drafting (``carealign rubrics draft``); the writer runs on the judge's server."""

    prompt_language: PromptLanguage = Field(
        "auto", description="language of every prompt: auto = each item's own (its 'lang' field, else detected "
        "from its text), or en / zh for all items")

    writer_model: str | None = Field(None, description="model that drafts rubrics [default: the judge model]")
    fewshot_k: int = Field(3, ge=0, le=20, description="approved rubrics shown as examples per draft")
    temperature: float = Field(0.2, ge=0.0, le=2.0)
    pool_scan_limit: int = Field(2000, ge=1, description="newest pool rubrics considered for examples")
    seed_pool: bool = Field(True, description="add the shipped example rubrics to the pool")
    review: Literal["later", "inline"] = Field("later", description="inline: pause after each draft for review")
