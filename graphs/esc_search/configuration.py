"""``[esc]``: emotional-support strategy search (CSO, PROTOCOLS.md section 3)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from agents.esc import JudgeWeights
from agents.language import PromptLanguage
from graphs.common.config import PipelineConfig

# Budgets decide where a search stops, not what the tree looks like: a larger budget continues the
# same tree (same tree id).
BUDGET_FIELDS = frozenset({"iterations", "early_stop_patience", "max_llm_calls"})
WEIGHT_FIELDS = ("weight_empathy", "weight_information", "weight_humanoid", "weight_strategy", "reward_bias")


class EscSearchConfig(PipelineConfig):
    """Emotional-support strategy search (``carealign esc-search``, CSO / PROTOCOLS.md section 3).
    c_puct, rollout depth, the 0.5 / 2 thresholds, the judge weights and bias and the prior
    temperature are CSO's; the rest are carealign's. The judge is the run's judge model, the
    strategist, supporter and seeker run on the generator."""

    prompt_language: PromptLanguage = Field(
        "auto", description="language of every prompt: auto = each item's own (its 'lang' field, else detected "
        "from its text), or en / zh for all items")

    strategy_set: str = Field("extes", description="extes | esconv | a JSON file of the same shape")
    iterations: int = Field(100, ge=0, description="MCTS iterations per tree (a budget; a resume continues)")
    c_puct: float = Field(1.0, ge=0.0, description="PUCB exploration constant")
    rollout_depth: int = Field(4, ge=0, le=32, description="greedy rollout turns per simulation")
    max_new_turns: int = Field(8, ge=1, le=64, description="supporter turns the search may add after the gold ones")
    gold_turns: int = Field(2, ge=0, description="seed supporter turns kept as gold (Q=1, N=100)")
    q_min: float = Field(0.5, ge=-3.0, le=1.0, description="preferred path: Q >= q_min on every node")
    n_min: int = Field(2, ge=0, description="preferred path: N >= n_min on every node")
    rejected_rule: Literal["protocol", "margin"] = Field(
        "protocol", description="which generated siblings are rejected turns: protocol = PROTOCOLS.md section 3's "
        "Q <= rejected_q_max; margin = Q <= preferred Q - margin (never as good as the preferred turn)")
    rejected_q_max: float = Field(0.5, ge=-3.0, le=1.0, description="rejected sibling under the protocol rule: "
                                  "Q <= this")
    margin: float = Field(0.25, ge=0.0, description="rejected sibling under the margin rule: Q <= preferred Q - margin")
    weight_empathy: float = Field(0.1, ge=0.0, description="judge weight of Empathy in the turn score")
    weight_information: float = Field(0.1, ge=0.0, description="judge weight of Information in the turn score")
    weight_humanoid: float = Field(0.1, ge=0.0, description="judge weight of Humanoid in the turn score")
    weight_strategy: float = Field(0.7, ge=0.0, description="judge weight of Strategy in the turn score")
    reward_bias: float = Field(-3.0, description="added to the mean turn score")
    prior_temperature: float = Field(5.0, gt=0.0, description="prior = softmax(rating / this)")
    expand_k: int = Field(3, ge=1, le=16, description="siblings written per supporter call")
    early_stop_patience: int | None = Field(30, ge=1, description="stop a tree after this many iterations "
                                            "without a new turn in a pair; unset = never")
    max_llm_calls: int | None = Field(None, ge=1, description="per tree")
    unvisited_q: float = Field(0.0, description="Q of a never-visited strategy in selection")
    batch_expand: bool = Field(True, description="write the expand_k siblings in one supporter call")
    lazy_seeker: bool = Field(True, description="simulate a sibling's seeker reply only when it is evaluated")
    reuse_rollouts: bool = Field(True, description="keep a rollout's turns and make its first step a node")
    batch_judge: bool = Field(True, description="judge all new turns of a simulation in one call")
    item_concurrency: int = Field(4, ge=1, le=1024, description="seed dialogues searched at once per worker")
    cache_ratings: bool = Field(True, description="ask the strategist once per node (off: the reference pattern)")
    cache_scores: bool = Field(True, description="judge each turn once (off: the reference pattern)")

    def weights(self) -> JudgeWeights:
        return JudgeWeights(self.weight_empathy, self.weight_information, self.weight_humanoid,
                            self.weight_strategy, self.reward_bias)

    def tree_shaping(self, seed: int) -> dict[str, Any]:
        """Everything that shapes a tree (its id): every setting but budgets and claim-loop ones."""
        shaping = self.shaping(exclude=BUDGET_FIELDS | set(WEIGHT_FIELDS), seed=seed)
        return {**shaping, "weights": self.weights().__dict__}

