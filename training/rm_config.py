"""Settings of the reward model (``[train.rm]``): Explicit Criteria Injection or multi-head."""

from __future__ import annotations

from dataclasses import dataclass

from training.common import TrainCommon


@dataclass
class RMConfig(TrainCommon):
    """Explicit Criteria Injection reward model (PROTOCOLS.md section 1).

    ``variant``: ``criteria`` = Bradley-Terry on (pair, criterion) rows with trl's RewardTrainer;
    ``multihead`` = one regression head per rubric dimension (plain transformers Trainer).
    ``tie_policy``: a criterion both responses meet (or both miss) says nothing about which is better
    on it; ``skip`` drops that row (default), ``pair`` keeps it with the pair's overall preference."""

    variant: str = "criteria"
    tie_policy: str = "skip"
    criterion_template: str = "Judge the assistant's reply on this {kind} criterion: {text}"
    learning_rate: float = 1e-5
    max_length: int | None = 2048

    def __post_init__(self) -> None:
        if self.variant not in ("criteria", "multihead"):
            raise ValueError(f"rm variant must be 'criteria' or 'multihead' (got {self.variant!r})")
        if self.tie_policy not in ("skip", "pair"):
            raise ValueError(f"rm tie_policy must be 'skip' or 'pair' (got {self.tie_policy!r})")
