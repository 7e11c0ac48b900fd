"""One entry point for every method: record a ``train-<method>`` run, train (or resume from a
checkpoint), record each checkpoint in the run as it is written, write the manifest and the model
card next to the model, and finish the run with the training stats (or the error)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from store import Store
from store import training as queries
from training.common import RUN_HOOKS, RunHooks, TrainResult, checkpoints, is_main_process, resolve_checkpoint
from training.data_config import DataConfig
from training.manifest import end_run, start_run, write_manifest


def _trainer(method: str):
    if method == "rm":
        from training.rm_trainer import train_reward_model

        return train_reward_model
    if method == "grpo":
        from training.grpo_trainer import train_grpo

        return train_grpo
    if method == "cso":
        from training.cso_trainer import train_cso

        return train_cso
    if method == "sft":
        from training.sft_trainer import train_sft

        return train_sft
    raise ValueError(f"unknown training method {method!r}; choose rm, grpo, cso or sft")


def resume_point(store: Store, out_dir: Path, resume: str | None) -> tuple[Path | None, str | None]:
    """The checkpoint ``--resume`` names and the run that wrote it (None when no run recorded it)."""
    checkpoint = resolve_checkpoint(out_dir, resume)
    if checkpoint is None:
        return None, None
    with store.session() as s:
        return checkpoint, queries.run_of_checkpoint(s, str(checkpoint.resolve()))


def train_from_store(store: Store, method: str, model_path: str, out_dir: Path, data: DataConfig, cfg: Any,
                     run_id: str | None = None, resume: str | None = None, **extra: Any) -> TrainResult:
    """Train ``method`` on the selected pairs and save to ``out_dir`` (with ``training_manifest.json``
    and ``README.md``). ``run_id``: a run already started with ``manifest.start_run`` (the GRPO judge
    records its calls under it), else one is started here. ``resume``: ``latest`` or a checkpoint
    folder; the run that wrote it, if still marked running (its process was killed), is marked
    interrupted and named by the new run. ``extra`` goes to the method's trainer (GRPO: ``scores``)."""
    from transformers import set_seed

    train = _trainer(method)
    out_dir = Path(out_dir)
    checkpoint, earlier = resume_point(store, out_dir, resume)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    main = is_main_process()  # under accelerate launch, only rank 0 records the run and writes the manifest
    if main and run_id is None:
        run_id = start_run(store, method, data, cfg, model_path, out_dir,
                           resumed_from=str(checkpoint) if checkpoint else None, resumes_run=earlier)
    if main and earlier is not None:
        with store.session() as s:
            queries.mark_resumed(s, earlier, run_id)

    def record(saved: dict[str, Any]) -> None:
        with store.session() as s:
            queries.record_checkpoint(s, run_id, {**saved, "path": str(Path(saved["path"]).resolve())})

    hooks = RunHooks(str(checkpoint) if checkpoint else None, record if main and run_id else None)
    token = RUN_HOOKS.set(hooks)
    try:
        set_seed(getattr(cfg, "seed", 0))  # the reward head and LoRA are initialised before the trainer seeds
        result = train(store, model_path, out_dir, data, cfg, **extra)
    except BaseException as exc:
        if created and out_dir.is_dir() and not checkpoints(out_dir):
            shutil.rmtree(out_dir, ignore_errors=True)  # a failed start leaves no folder behind
        if main and run_id is not None:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            end_run(store, run_id, None, status, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        RUN_HOOKS.reset(token)
    result.run_id = run_id
    if main and run_id is not None:
        write_manifest(store, result, data, cfg, model_path)
        end_run(store, run_id, result)
    return result
