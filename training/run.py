"""One entry point for every method: record a ``train-<method>`` run, train, write the manifest and
the model card next to the model, and finish the run with the training stats (or the error)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from store import Store
from training.common import TrainResult, is_main_process
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


def train_from_store(store: Store, method: str, model_path: str, out_dir: Path, data: DataConfig, cfg: Any,
                     run_id: str | None = None, **extra: Any) -> TrainResult:
    """Train ``method`` on the selected pairs and save to ``out_dir`` (with ``training_manifest.json``
    and ``README.md``). ``run_id``: a run already started with ``manifest.start_run`` (the GRPO judge
    records its calls under it), else one is started here. ``extra`` goes to the method's trainer
    (GRPO: ``scores``)."""
    train = _trainer(method)
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    main = is_main_process()  # under accelerate launch, only rank 0 records the run and writes the manifest
    if main and run_id is None:
        run_id = start_run(store, method, data, cfg, model_path, out_dir)
    try:
        result = train(store, model_path, out_dir, data, cfg, **extra)
    except BaseException as exc:
        if created and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # leave no empty model folder behind a failed start
        if main and run_id is not None:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            end_run(store, run_id, None, status, f"{type(exc).__name__}: {exc}")
        raise
    result.run_id = run_id
    if main and run_id is not None:
        write_manifest(store, result, data, cfg, model_path)
        end_run(store, run_id, result)
    return result
