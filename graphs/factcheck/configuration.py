"""``[factcheck]``: fact-checking experiments (MedFact, PROTOCOLS.md section 4)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from agents.language import PromptLanguage
from graphs.common.config import PipelineConfig
from graphs.factcheck.methods import MethodSpec, parse_methods


class FactcheckConfig(PipelineConfig):
    """Fact-checking experiments (``carealign factcheck``); constants MedFact did not publish."""

    prompt_language: PromptLanguage = Field(
        "auto", description="language of every prompt: auto = each item's own (its 'lang' field, else detected "
        "from its text), or en / zh for all items")

    methods: str = Field("zero-shot,cot,sc@6,debate@3x2", description="comma-separated method specs, e.g. "
                         "zero-shot,cot,sc@5,debate@3x2,debate@3x2+judge,roles@3+triage,budget@800")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="of sampled agents (self-consistency, debate); "
                               "single checkers are greedy")
    allow_unsure: bool = Field(False, description="checkers may answer 'unsure' besides 'error' and 'correct'")
    vote_tie: Literal["correct", "error"] = Field("correct", description="the verdict of a tied vote ('correct' "
                                                  "is the cautious call)")
    localisation: Literal["sentence", "llm"] = Field("sentence", description="a flagged location is right when "
                                                     "its sentence id matches (sentence), or when the judge model "
                                                     "says it names the gold error (llm)")
    bootstrap_resamples: int = Field(1000, ge=10, description="resamples of the report's confidence intervals")
    bertscore_model: str = Field("", description="local folder holding microsoft/deberta-xlarge-mnli, for the "
                                 "report's MEDIQA-CORR BERTScore (needs the bert-score package; empty: not "
                                 "computed, nothing is downloaded)")
    bertscore_layers: int = Field(40, ge=1, description="the layer BERTScore reads (bert-score's choice for "
                                  "microsoft/deberta-xlarge-mnli)")
    bleurt_checkpoint: str = Field("", description="local BLEURT-20 checkpoint folder, for the report's MEDIQA-CORR "
                                   "BLEURT (needs google-research's bleurt package; empty: not computed)")
    compute_match_by: Literal["calls", "tokens"] = Field(
        "calls", description="the measured compute per text that pairs an interactive method with an "
        "independent-sampling one in the report: calls (failed ones included) or tokens")
    compute_match_tolerance: float = Field(0.1, ge=0.0, le=1.0, description="two methods are compute-matched when "
                                           "their measured compute per text differs by at most this fraction of "
                                           "the larger")

    # which jobs run and how they are reported, not what one method answers
    REPORT_ONLY: ClassVar[frozenset[str]] = frozenset({"methods", "bootstrap_resamples", "bertscore_model",
                                                       "bertscore_layers", "bleurt_checkpoint", "compute_match_by",
                                                       "compute_match_tolerance"})

    def method_specs(self) -> list[MethodSpec]:
        """The methods to run, parsed (``graphs.factcheck.methods``)."""
        return parse_methods(self.methods)

    def checking(self, seed: int) -> dict[str, Any]:
        """The settings that shape one method's answers (its job key), with the run's seed."""
        return self.shaping(exclude=self.REPORT_ONLY, seed=seed)
