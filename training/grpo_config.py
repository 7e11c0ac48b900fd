"""Settings of RM-guided GRPO (``[train.grpo]``)."""

from __future__ import annotations

from dataclasses import dataclass

from training.common import TrainCommon


@dataclass
class GRPOConfig(TrainCommon):
    """RM-guided GRPO. ProMedical: group size 8, lr 1e-6, KL 0.04, frozen reward model; a, b, l are
    unpublished (defaults 0.5, 0.2, 1.5). ``reward_source``: ``rm`` (a model trained by
    ``train rm``, path in ``reward_model``) or ``judge`` (the LLM judge through the engine)."""

    learning_rate: float = 1e-6
    num_generations: int = 8
    beta: float = 0.04
    a: float = 0.5
    b: float = 0.2
    l: float = 1.5  # noqa: E741 - the paper's name
    reward_source: str = "rm"
    reward_model: str | None = None
    max_completion_length: int = 512
    temperature: float = 1.0
    use_vllm: bool = False
    vllm_mode: str = "colocate"
    grader_mode: str = "per_criterion"

    def __post_init__(self) -> None:
        if self.reward_source not in ("rm", "judge"):
            raise ValueError(f"grpo reward_source must be 'rm' or 'judge' (got {self.reward_source!r})")
        from agents.rubric import RewardConfig

        RewardConfig(self.a, self.b, self.l)  # refuses l < 1 + b: one veto must outweigh any utility
