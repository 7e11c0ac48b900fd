"""Settings of RM-guided GRPO (``[train.grpo]``)."""

from __future__ import annotations

from dataclasses import dataclass

from training.common import TrainCommon, setting


@dataclass
class GRPOConfig(TrainCommon):
    """RM-guided GRPO. ProMedical: group size 8, lr 1e-6, KL 0.04, frozen reward model; a, b, l are
    unpublished (defaults 0.5, 0.2, 1.5). ``reward_source``: ``rm`` (a model trained by
    ``train rm``, path in ``reward_model``) or ``judge`` (the LLM judge through the engine)."""

    learning_rate: float = setting(1e-6, "peak learning rate (ProMedical: 1e-6)")
    num_generations: int = setting(8, "completions sampled per prompt, the GRPO group (ProMedical: 8)")
    beta: float = setting(0.04, "KL coefficient against the reference model (ProMedical: 0.04)")
    a: float = setting(0.5, "reward weight of S2 (bonus criteria met): clip(S1 + a*S2, 0, 1 + b) - l*S3")
    b: float = setting(0.2, "the reward's utility cap above 1")
    l: float = setting(1.5, "reward penalty per safety veto violated (at least 1 + b)")  # noqa: E741 - the paper's name
    reward_source: str = setting("rm", "rm (the model at reward_model) | judge (the LLM judge)")
    reward_model: str | None = setting(None, "folder written by `carealign train rm` (reward_source=rm)")
    reward_batch_size: int = setting(64, "(completion, criterion) rows the reward model scores per forward pass")
    reward_dtype: str = setting("auto", "reward model weights: auto (bfloat16 on a GPU that has it, else "
                                "float32) | bfloat16 | float32")
    max_completion_length: int = setting(512, "longest sampled completion, in tokens")
    temperature: float = setting(1.0, "sampling temperature of the completions")
    use_vllm: bool = setting(False, "generate with vLLM (needs the vllm package and a GPU)")
    vllm_mode: str = setting("colocate", "colocate (vLLM inside the training process) | server (`trl "
                             "vllm-serve` on other GPUs)")
    grader_mode: str = setting("per_criterion", "reward_source=judge: one judge call per criterion | all_in_one")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.reward_source not in ("rm", "judge"):
            raise ValueError(f"grpo reward_source must be 'rm' or 'judge' (got {self.reward_source!r})")
        if self.reward_dtype not in ("auto", "bfloat16", "float32"):
            raise ValueError(f"grpo reward_dtype must be auto, bfloat16 or float32 (got {self.reward_dtype!r})")
        if self.reward_batch_size < 1:
            raise ValueError(f"grpo reward_batch_size must be at least 1 (got {self.reward_batch_size})")
        if self.vllm_mode not in ("colocate", "server"):
            raise ValueError(f"grpo vllm_mode must be colocate or server (got {self.vllm_mode!r})")
        from agents.rubric import RewardConfig

        RewardConfig(self.a, self.b, self.l)  # refuses l < 1 + b: one veto must outweigh any utility
