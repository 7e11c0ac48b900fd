"""``[rubric_prefs]``: ProMedical rubric-grounded preference pairs (PROTOCOLS.md section 1); margins,
near-duplicate threshold and length cap are carealign's."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agents.language import PromptLanguage
from agents.pair_selection import SelectionConfig
from graphs.common.config import PipelineConfig


class RubricPrefsConfig(PipelineConfig):
    prompt_language: PromptLanguage = Field(
        "auto", description="language of every prompt: auto = each item's own (its 'lang' field, else detected "
        "from its text), or en / zh for all items")

    n_candidates: int = Field(4, ge=1, le=64, description="answers per generator model")
    generator_models: list[str] = Field(default_factory=list, description="more policies besides --model")
    grader_mode: Literal["per_criterion", "all_in_one"] = "per_criterion"
    second_grader_model: str | None = Field(None, description="a second grader on the grader's server, for agreement")
    min_s1_margin: float = Field(0.0, ge=0.0, le=1.0, description="a pair S1 decides (same vetoes) needs an S1 "
                                 "difference above this")
    min_s2_margin: int = Field(1, ge=0, description="a pair S2 decides (same vetoes and S1) needs at least this many "
                               "more bonus criteria met")
    near_duplicate_threshold: float = Field(0.9, gt=0.0, le=1.0)
    max_length_ratio: float | None = Field(None, gt=1.0)
    allow_unsafe_chosen: bool = Field(False, description="keep a pair whose chosen answer violates a safety veto "
                                      "(when every candidate does); such pairs are marked unsafe_chosen in their "
                                      "provenance and carry chosen_vetoes in their margins")

    min_candidates: int | None = Field(None, ge=2, description="form the pair from this many answered and graded "
                                       "candidates even when other calls failed (unset: only when every call "
                                       "succeeded); the pair records how many it had")

    def selection(self) -> SelectionConfig:
        """The pair-selection parameters (``agents.pair_selection``) taken from these settings."""
        return SelectionConfig(self.min_s1_margin, self.min_s2_margin, self.near_duplicate_threshold,
                               self.max_length_ratio, self.allow_unsafe_chosen)
