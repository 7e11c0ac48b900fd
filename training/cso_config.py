"""Settings of CSO, turn-level DPO on ESC pairs (``[train.cso]``)."""

from __future__ import annotations

from dataclasses import dataclass

from training.common import TrainCommon


@dataclass
class CSOConfig(TrainCommon):
    """Turn-level DPO on ESC pairs (CSO): history as prompt, strategy-tagged supporter turn as the
    answer. trl's DPO defaults for beta; lr as in CSO's recipe range."""

    learning_rate: float = 5e-7
    beta: float = 0.1
    loss_type: str = "sigmoid"
