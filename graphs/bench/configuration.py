"""``[bench]``: the evaluation benches (rubric, strategy, medication, medication build)."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field

from agents.language import PromptLanguage
from benchmarks.datasets.medication import ABSTAIN_PHRASES, TASKS
from graphs.common.config import PipelineConfig

MedicationTask = Literal["indication", "dosage_administration", "contraindicated_population", "mechanism_of_action",
                         "drug_recommendation", "drug_interaction"]


class BenchConfig(PipelineConfig):
    """Evaluation benches (``carealign bench``); unpublished constants are settings with defaults."""

    prompt_language: PromptLanguage = Field(
        "auto", description="language of every prompt: auto = each item's own (its 'lang' field, else detected "
        "from its text), or en / zh for all items")

    # bench rubric
    rubric_mode: Literal["score", "pairwise", "meta"] = Field(
        "score", description="score (HealthBench) | pairwise (judge pairs) | meta (grader vs physicians)")
    grader_mode: Literal["per_criterion", "all_in_one"] = Field(
        "per_criterion", description="one grader call per rubric item, or all items in one call")
    n_bootstrap: int = Field(1000, ge=1, description="HealthBench bootstrap resamples")
    reward_model_batch_size: int = Field(32, ge=1, description="rows per forward pass when a trained reward model "
                                         "judges the pairs (--reward-model)")
    pairwise_swap: bool = Field(True, description="judge each pair in both orders; a preference counts only "
                                "when both agree (position-bias control, twice the calls)")
    # bench strategy
    strategy_mode: Literal["generate", "classify"] = Field(
        "generate", description="generate (next turn + strategy) | classify (label the gold turn)")
    # the old keys `strategies` / `prompt_strategies` are still read (for one release)
    strategy_set: str = Field("esconv", validation_alias=AliasChoices("strategy_set", "strategies"),
                              description="scored strategy set: esconv | extes | JSON file")
    prompt_strategy_set: str | None = Field(
        None, validation_alias=AliasChoices("prompt_strategy_set", "prompt_strategies"),
        description="set the model chooses from (none: the scored set)")
    strategy_mapping: str | None = Field(None, description="JSON {name: scored name} added to the aliases")
    strategy_temperature: float | None = Field(
        None, ge=0.0, le=2.0, description="sampling temperature of generate mode (none: the global "
        "temperature); classify is greedy")
    unknown_gold: Literal["error", "skip"] = Field("error", description="gold tags outside the set: error | skip")
    max_history_turns: int | None = Field(None, ge=0, description="dialogue turns shown (none: all)")
    # bench medication
    ask_confidence: bool = Field(True, description="ask for a stated confidence (for over-confidence and ECE)")
    ece_bins: int = Field(10, ge=1, le=100, description="equal-width confidence bins on [0, 1] for ECE")
    abstain_phrases: list[str] = Field(default_factory=lambda: list(ABSTAIN_PHRASES), min_length=1,
                                       description="open answers that mean \"I don't know\"")
    # bench medication build
    build_formats: list[Literal["mc", "open"]] = Field(default_factory=lambda: ["mc"], min_length=1,
                                                       description="item formats: mc, open or mc,open")
    build_tasks: list[MedicationTask] = Field(default_factory=lambda: list(TASKS), min_length=1,
                                              description="ChiDrug task types to write items for")
    build_n_options: int = Field(4, ge=2, le=26, description="options of a multiple-choice item")
    build_temperature: float = Field(0.7, ge=0.0, le=2.0, description="sampling temperature of the item writer")
