"""What the four trainers share: the settings every method's config inherits (``TrainCommon``),
trl/transformers arguments from a config, LoRA, losses from the log history, checkpoints (where
they go, which one ``--resume`` means, who records them) and the result every trainer returns
(what the manifest and the run record hold).

Every field of a config is declared with ``setting(default, help)``: the help is what
``carealign train METHOD --list-settings`` prints, so a setting cannot be added without saying
what it does."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

CHECKPOINTS = "checkpoints"  # under the model folder: checkpoint-<step> folders (transformers' layout)
LOGS = "runs"  # under the model folder: TensorBoard event files


def setting(default: Any = MISSING, help: str = "", *, factory: Callable[[], Any] | None = None) -> Any:
    """A config field with its help text (``--list-settings`` prints it)."""
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class TrainCommon:
    """What every method shares; field names follow transformers' TrainingArguments."""

    learning_rate: float = setting(1e-5, "peak learning rate")
    num_train_epochs: float = setting(1.0, "passes over the training rows (max_steps wins when > 0)")
    max_steps: int = setting(-1, "optimizer steps to train for (-1: num_train_epochs decides)")
    per_device_train_batch_size: int = setting(4, "rows per device per step")
    gradient_accumulation_steps: int = setting(1, "steps whose gradients add up before one optimizer step")
    max_length: int | None = setting(2048, "longest tokenized row kept (longer rows are dropped or cut)")
    seed: int = setting(0, "random seed (model head init, data order, dropout)")
    logging_steps: int = setting(10, "log every N steps (never more than max_steps; the last step always logs)")
    bf16: bool = setting(False, "train in bfloat16 (GPUs that support it)")
    use_cpu: bool = setting(False, "train on the CPU even when a GPU is there")
    gradient_checkpointing: bool = setting(False, "recompute activations in the backward pass: less memory, "
                                           "about 30% slower")
    save_strategy: str = setting("steps", "when to write a checkpoint: steps | epoch | no")
    save_steps: int = setting(500, "with save_strategy=steps: write a checkpoint every N steps (and at the end)")
    save_total_limit: int | None = setting(2, "checkpoints kept on disk, oldest deleted first (none: all)")
    report_to: list[str] | str = setting("tensorboard", "where the training logs go: tensorboard (into "
                                         "OUT/runs), wandb, both as a list, or none")
    lora: bool = setting(False, "train a LoRA adapter instead of all weights")
    lora_r: int = setting(16, "LoRA rank")
    lora_alpha: int = setting(32, "LoRA scaling alpha")
    lora_dropout: float = setting(0.05, "dropout on the LoRA layers")
    lora_target_modules: list[str] | str = setting("all-linear", "modules that get LoRA layers")
    trl_args: dict[str, Any] = setting(help="any further trl/transformers argument, passed through unchanged "
                                       "(e.g. {deepspeed = \"ds.json\"})", factory=dict)

    def __post_init__(self) -> None:
        if self.save_strategy not in ("steps", "epoch", "no"):
            raise ValueError(f"save_strategy must be 'steps', 'epoch' or 'no' (got {self.save_strategy!r})")
        if self.save_steps < 1 or self.logging_steps < 1:
            raise ValueError("save_steps and logging_steps must be at least 1")
        if self.save_total_limit is not None and self.save_total_limit < 1:
            raise ValueError(f"save_total_limit must be at least 1 or none (got {self.save_total_limit})")
        report_targets(self.report_to)


COMMON_ARGS = ("learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
               "gradient_accumulation_steps", "seed", "bf16", "use_cpu", "save_strategy", "save_steps",
               "save_total_limit")
REPORTERS = ("tensorboard", "wandb")


def report_targets(report_to: list[str] | str) -> list[str]:
    """``report_to`` as transformers' list; ``none`` is no logger. An unknown logger, or one whose
    package is missing, is an error naming it before any training starts."""
    import importlib.util

    names = [report_to] if isinstance(report_to, str) else list(report_to)
    names = [n.strip().lower() for n in names if n and n.strip().lower() != "none"]
    for n in names:
        if n not in REPORTERS:
            raise ValueError(f"report_to: unknown logger {n!r}; choose tensorboard, wandb or none")
        module = "tensorboard" if n == "tensorboard" else "wandb"
        if importlib.util.find_spec(module) is None:
            hint = "pip install wandb, then wandb login" if n == "wandb" else "the train extra installs it"
            raise ValueError(f"report_to {n}: the {module} package is not installed ({hint}), "
                             "or set report_to=none")
    return names


@dataclass
class TrainResult:
    method: str
    out_dir: Path
    train_pair_ids: list[int]
    eval_pair_ids: list[int]  # the test split: the figures a model reports are measured here
    counts: dict[str, int]
    stats: dict[str, Any] = field(default_factory=dict)
    log_history: list[dict[str, Any]] = field(default_factory=list)
    run_id: str | None = None
    calibration_pair_ids: list[int] = field(default_factory=list)  # reward models: thresholds chosen here


@dataclass
class RunHooks:
    """What ``training.run.train_from_store`` hands every trainer's ``train_and_save`` without
    threading it through each method: the checkpoint to resume from and who records a saved one."""

    resume_from: str | None = None
    on_checkpoint: Callable[[dict[str, Any]], None] | None = None


NO_HOOKS = RunHooks()
RUN_HOOKS: ContextVar[RunHooks] = ContextVar("carealign_train_hooks", default=NO_HOOKS)  # noqa: B039 - never mutated


def is_main_process() -> bool:
    """Under ``accelerate launch``/``torchrun`` every process runs the command; only rank 0 records
    the run and writes files (trl's own ``save_model`` already saves on the main process only)."""
    return int(os.environ.get("RANK", "0")) == 0


def logging_steps(cfg: TrainCommon) -> int:
    """``logging_steps`` capped at ``max_steps``, so a short run logs its loss at all."""
    return min(cfg.logging_steps, cfg.max_steps) if cfg.max_steps > 0 else cfg.logging_steps


def trainer_args(cfg: TrainCommon, out_dir: Path, **specific: Any) -> dict[str, Any]:
    """Keyword arguments for a trl config: the common fields, the method's own, then ``trl_args``.
    Checkpoints go under ``out_dir/checkpoints``, TensorBoard logs under ``out_dir/runs``; the final
    model is saved by the caller."""
    args = {name: getattr(cfg, name) for name in COMMON_ARGS}
    targets = report_targets(cfg.report_to)
    if "tensorboard" in targets:  # transformers reads the folder from the environment
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(out_dir / LOGS)
    args.update(output_dir=str(out_dir / CHECKPOINTS), report_to=targets or "none",
                logging_steps=logging_steps(cfg), run_name=out_dir.name,
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


def checkpoints(out_dir: Path) -> list[Path]:
    """The checkpoint folders under a model folder, oldest step first."""
    root = Path(out_dir) / CHECKPOINTS
    found = [p for p in root.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def resolve_checkpoint(out_dir: Path, resume: str | None) -> Path | None:
    """``--resume``: ``latest`` (the newest checkpoint under ``OUT/checkpoints``) or a checkpoint
    folder. Anything else is an error naming what was looked for."""
    if resume is None:
        return None
    if resume == "latest":
        found = [p for p in checkpoints(out_dir) if (p / "trainer_state.json").is_file()]
        if not found:
            raise FileNotFoundError(f"--resume latest: no checkpoint under {Path(out_dir) / CHECKPOINTS}")
        return found[-1]
    path = Path(resume).expanduser()
    if not (path / "trainer_state.json").is_file():
        raise FileNotFoundError(f"--resume {resume}: not a checkpoint folder (no trainer_state.json)")
    return path


def _callbacks(hooks: RunHooks) -> list[Any]:
    from transformers import TrainerCallback

    class LogLastStep(TrainerCallback):
        """The last step always logs, so a run shorter than ``logging_steps`` has a loss."""

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201 - transformers' hook
            if state.max_steps and state.global_step >= state.max_steps:
                control.should_log = True
            return control

    class RecordCheckpoint(TrainerCallback):
        """Each saved checkpoint (step, folder, last loss) goes to the run record as it is written."""

        def on_save(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201 - transformers' hook
            if hooks.on_checkpoint is not None and state.is_world_process_zero:
                got = losses(state.log_history)
                hooks.on_checkpoint({"step": int(state.global_step),
                                     "path": str(Path(args.output_dir) / f"checkpoint-{state.global_step}"),
                                     "loss": got[-1] if got else None})
            return control

    return [LogLastStep(), RecordCheckpoint()]


def train_and_save(trainer: Any, out_dir: Path, merge_lora: bool = False) -> tuple[dict[str, Any], Any]:
    """Train (from the checkpoint ``RUN_HOOKS`` names, if any), check the loss stayed finite, save
    model and tokenizer to ``out_dir``. With ``merge_lora`` a LoRA adapter is merged into the weights
    first (for models loaded without peft). Returns the stats and the trained (merged) model."""
    hooks = RUN_HOOKS.get()
    for cb in _callbacks(hooks):
        trainer.add_callback(cb)
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=hooks.resume_from)
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
    stats = {"final_loss": got[-1], "first_loss": got[0], "steps": steps, "train_seconds": round(seconds, 3),
             "steps_per_second": round(steps / seconds, 4) if seconds > 0 else None}
    if hooks.resume_from:
        stats["resumed_from"] = str(hooks.resume_from)
    return stats, model
