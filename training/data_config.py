"""Which stored pairs train a model, and how they are split (``[train.data]``)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DataConfig:
    """Which stored pairs train a model, and how they are split. The split is a hash of the pair's
    group (item and prompt, see ``training.data.split_groups``) with ``split_salt``, so it never
    depends on the order pairs were stored in, and a prompt never lands on both sides."""

    kinds: list[str] = field(default_factory=list)  # empty = the method's default kind
    run_ids: list[str] = field(default_factory=list)
    min_margin: float | None = None
    language: str | None = None
    eval_fraction: float = 0.1
    split_salt: str = "carealign-split-v1"
    max_pairs: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must be in [0, 1) (got {self.eval_fraction})")
