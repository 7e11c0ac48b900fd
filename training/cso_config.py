"""Settings of CSO, turn-level DPO on ESC pairs (``[train.cso]``)."""

from __future__ import annotations

from dataclasses import dataclass

from training.common import TrainCommon, setting


@dataclass
class CSOConfig(TrainCommon):
    """Turn-level DPO on ESC pairs (CSO): history as prompt, strategy-tagged supporter turn as the
    answer. trl's DPO defaults for beta; lr as in CSO's recipe range."""

    learning_rate: float = setting(5e-7, "peak learning rate")
    beta: float = setting(0.1, "DPO beta: how far the policy may move from the reference")
    loss_type: str = setting("sigmoid", "trl DPO loss (sigmoid, ipo, hinge, ...)")
