"""Settings of the SFT baseline (``[train.sft]``)."""

from __future__ import annotations

from dataclasses import dataclass

from training.common import TrainCommon, setting


@dataclass
class SFTConfig(TrainCommon):
    """SFT baseline on preferred turns/answers (the chosen side of each pair), loss on the answer only."""

    learning_rate: float = setting(2e-5, "peak learning rate")
