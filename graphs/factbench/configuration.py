"""``[factbench]``: building a MedFact-style fact-check benchmark."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from agents.error_injector import ERROR_TYPES_FILE, ErrorType, load_error_types
from agents.filter_panel import CRITERIA_FILE, Criterion, load_criteria
from agents.language import PromptLanguage
from graphs.common.config import PipelineConfig


class FactbenchConfig(PipelineConfig):
    """Fact-check benchmark construction (``carealign factbench``); every constant here is carealign's.
    The injector runs on the generator (--model), the filter panel on the judge server."""

    prompt_language: PromptLanguage = Field(
        "auto", description="language of every prompt: auto = each item's own (its 'lang' field, else detected "
        "from its text), or en / zh for all items")

    error_types_file: str | None = Field(None, description="JSON taxonomy [default: agents/data/error_types.json]")
    error_types: list[str] = Field(default_factory=list, description="types to inject, in order [default: all]")
    criteria_file: str | None = Field(None, description="criteria [default: agents/data/factbench_criteria.json]")
    type_choice: Literal["round_robin", "all"] = Field(
        "round_robin", description="per source: variants_per_source types taken round-robin, or every type")
    variants_per_source: int = Field(1, ge=1, le=64, description="error types per source (round_robin)")
    injector_model: str | None = Field(None, description="[default: --model]")
    injector_temperature: float = Field(0.7, ge=0.0, le=2.0, description="sampling temperature of the injector")
    filter_models: list[str] = Field(default_factory=list,
                                     description="judge models of the panel [default: the judge model]")
    vote: Literal["majority", "all", "any"] = Field("majority", description="per criterion, over its judges")
    min_criteria: int | None = Field(None, ge=1, description="criteria that must pass [default: all]")
    diff_gap_chars: int = Field(6, ge=1, description="unchanged characters that separate two edits")
    fewshot_k: int = Field(2, ge=0, le=20, description="expert examples per criterion prompt")
    round: int = Field(1, ge=1, description="filtering round (examples come from reviews of earlier rounds)")
    review_size: int = Field(20, ge=1, description="variants in a review sample (half accepted, half rejected)")
    review_seed: int = Field(0, description="seed of the review sample")
    mine_methods: str = Field("zero-shot,cot", description="checker methods (graphs.factcheck.methods specs)")
    mine_checker_models: list[str] = Field(default_factory=list, description="more checker models besides --model")
    mine_drop_easy: bool = Field(True, description="drop items every checker gets right")
    mine_require_location: bool = Field(True, description="an error counts as found only at its sentence")
    dedup_threshold: float = Field(0.9, gt=0.0, le=1.0, description="Jaccard similarity of near-duplicates")
    export_require_mined: bool = Field(False, description="export only items that were mined")
    export_balance: bool = Field(True, description="balance correct and erroneous texts")

    # what shapes a build job's variants and decisions (its job key, with the seed)
    BUILD: ClassVar[tuple[str, ...]] = ("round", "variants_per_source", "type_choice", "injector_temperature",
                                        "diff_gap_chars", "vote", "min_criteria", "fewshot_k", "prompt_language")

    def build_shaping(self, seed: int) -> dict[str, Any]:
        return {**self.model_dump(mode="json", include=set(self.BUILD)), "seed": seed}

    def taxonomy(self) -> tuple[list[ErrorType], list[Criterion]]:
        """The error types to inject (the file's, or the chosen names in order) and the filter criteria."""
        source = self.error_types_file or ERROR_TYPES_FILE
        types = load_error_types(source)
        if self.error_types:
            by_name = {t.name: t for t in types}
            unknown = [n for n in self.error_types if n not in by_name]
            if unknown:
                raise ValueError(f"setting factbench.error_types: unknown error types {unknown} "
                                 f"(in {source}: {', '.join(by_name)})")
            types = [by_name[n] for n in self.error_types]
        return types, load_criteria(self.criteria_file or CRITERIA_FILE)
