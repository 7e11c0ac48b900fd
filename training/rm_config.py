"""Settings of the reward model (``[train.rm]``): Explicit Criteria Injection or multi-head."""

from __future__ import annotations

from dataclasses import dataclass

from training.common import TrainCommon, setting

# PROTOCOLS.md section 1 asks for "a Bradley-Terry model whose input carries the criterion"; this is
# how the criterion is stated (in the system message, see ``training.criteria.inject``).
CRITERION_TEMPLATE = "Judge the assistant's reply on this {kind} criterion: {text}"


@dataclass
class RMConfig(TrainCommon):
    """Explicit Criteria Injection reward model (PROTOCOLS.md section 1).

    ``variant``: ``criteria`` = Bradley-Terry on (pair, criterion) rows with trl's RewardTrainer;
    ``multihead`` = one regression head per rubric dimension (plain transformers Trainer).
    ``tie_policy``: a criterion both responses meet (or both miss) says nothing about which is better
    on it; ``skip`` drops that row (default), ``pair`` keeps it with the pair's overall preference."""

    variant: str = setting("criteria", "criteria (Bradley-Terry, criterion in the input) | multihead "
                           "(one regression head per rubric dimension)")
    tie_policy: str = setting("skip", "a criterion both answers meet or both miss: skip the row | pair (keep "
                              "it with the pair's order)")
    criterion_template: str = setting(CRITERION_TEMPLATE, "how the criterion is stated in the system message "
                                      "({kind}, {text})")
    score_batch_size: int = setting(32, "rows per forward pass when the trained model scores (calibration, "
                                    "evaluation)")
    learning_rate: float = setting(1e-5, "peak learning rate")
    max_length: int | None = setting(2048, "longest tokenized row kept (longer rows are dropped)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.variant not in ("criteria", "multihead"):
            raise ValueError(f"rm variant must be 'criteria' or 'multihead' (got {self.variant!r})")
        if self.tie_policy not in ("skip", "pair"):
            raise ValueError(f"rm tie_policy must be 'skip' or 'pair' (got {self.tie_policy!r})")
        if self.score_batch_size < 1:
            raise ValueError(f"score_batch_size must be at least 1 (got {self.score_batch_size})")
