"""What the four trainers share: the settings every method's config inherits (``TrainCommon``),
trl/transformers arguments from a config, LoRA, losses from the log history, and the result every
trainer returns (what the manifest and the run record hold)."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrainCommon:
    """What every method shares; field names follow transformers' TrainingArguments."""

    learning_rate: float = 1e-5
    num_train_epochs: float = 1.0
    max_steps: int = -1
    per_device_train_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    max_length: int | None = 2048
    seed: int = 0
    logging_steps: int = 10
    bf16: bool = False
    use_cpu: bool = False
    gradient_checkpointing: bool = False
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] | str = "all-linear"
    trl_args: dict[str, Any] = field(default_factory=dict)


COMMON_ARGS = ("learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
               "gradient_accumulation_steps", "seed", "logging_steps", "bf16", "use_cpu")


@dataclass
class TrainResult:
    method: str
    out_dir: Path
    train_pair_ids: list[int]
    eval_pair_ids: list[int]
    counts: dict[str, int]
    stats: dict[str, Any] = field(default_factory=dict)
    log_history: list[dict[str, Any]] = field(default_factory=list)
    run_id: str | None = None


def is_main_process() -> bool:
    """Under ``accelerate launch``/``torchrun`` every process runs the command; only rank 0 records
    the run and writes files (trl's own ``save_model`` already saves on the main process only)."""
    return int(os.environ.get("RANK", "0")) == 0


def trainer_args(cfg: TrainCommon, out_dir: Path, **specific: Any) -> dict[str, Any]:
    """Keyword arguments for a trl config: the common fields, the method's own, then ``trl_args``.
    Checkpoints go under ``out_dir/checkpoints``; the final model is saved by the caller."""
    args = {name: getattr(cfg, name) for name in COMMON_ARGS}
    args.update(output_dir=str(out_dir / "checkpoints"), report_to=[], save_strategy="no",
                activation_checkpointing=cfg.gradient_checkpointing, dataloader_num_workers=0)
    args.update(specific)
    args.update(cfg.trl_args)
    return args


def peft_config(cfg: TrainCommon, task_type: str = "CAUSAL_LM"):
    if not cfg.lora:
        return None
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.lora_target_modules, task_type=task_type)


def losses(log_history: list[dict[str, Any]]) -> list[float]:
    return [float(x["loss"]) for x in log_history if "loss" in x]


def train_and_save(trainer: Any, out_dir: Path, merge_lora: bool = False) -> tuple[dict[str, Any], Any]:
    """Train, check the loss stayed finite, save model and tokenizer to ``out_dir``. With
    ``merge_lora`` a LoRA adapter is merged into the weights first (for models loaded without peft).
    Returns the stats and the trained (merged) model."""
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    got = losses(trainer.state.log_history)
    if not got or not all(math.isfinite(x) for x in got):
        raise RuntimeError(f"training produced no finite loss (losses: {got})")
    model = trainer.model
    if merge_lora and hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
        if is_main_process():
            model.save_pretrained(str(out_dir))
    else:
        trainer.save_model(str(out_dir))
    if trainer.processing_class is not None and is_main_process():
        trainer.processing_class.save_pretrained(str(out_dir))
    steps = int(trainer.state.global_step)
    return {"final_loss": got[-1], "first_loss": got[0], "steps": steps, "train_seconds": round(seconds, 3),
            "steps_per_second": round(steps / seconds, 4) if seconds > 0 else None}, model
