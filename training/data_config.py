"""Which stored pairs train a model, and how they are split (``[train.data]``)."""

from __future__ import annotations

from dataclasses import dataclass

from training.common import setting


@dataclass
class DataConfig:
    """Which stored pairs train a model, and how they are split. The split is a hash of the pair's
    group (item and prompt, see ``training.data.split_groups``) with ``split_salt``, so it never
    depends on the order pairs were stored in, and a prompt never lands on both sides.

    Three disjoint splits: ``test`` (the first ``eval_fraction`` of the hash range: every method's
    held-out pairs, the same whichever method trains), ``calibration`` (the next
    ``calibration_fraction``; reward models choose their thresholds there, other methods train on
    it) and ``train`` (the rest)."""

    kinds: list[str] = setting(help="pair kinds to train on (empty: rubric for rm/grpo, esc for cso/sft)",
                               factory=list)
    run_ids: list[str] = setting(help="only pairs from these runs (empty: all)", factory=list)
    min_margin: float | None = setting(None, "only pairs with at least this margin")
    language: str | None = setting(None, "only pairs in this language")
    eval_fraction: float = setting(0.1, "share of pair groups held out as the test split (reported figures)")
    calibration_fraction: float = setting(0.1, "reward models: share of pair groups whose judged candidates "
                                          "choose the thresholds (other methods train on them)")
    split_salt: str = setting("carealign-split-v1", "salt of the split hash (another salt, another split)")
    max_pairs: int | None = setting(None, "use at most this many pairs (the first by id)")

    def __post_init__(self) -> None:
        for name in ("eval_fraction", "calibration_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1) (got {getattr(self, name)})")
        if self.eval_fraction + self.calibration_fraction >= 1.0:
            raise ValueError(f"eval_fraction + calibration_fraction must stay below 1 (got {self.eval_fraction} + "
                             f"{self.calibration_fraction}): nothing would be left to train on")
