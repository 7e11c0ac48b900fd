"""CSO: turn-level DPO on ESC strategy pairs (PROTOCOLS.md section 3) with trl's ``DPOTrainer``.

An ``esc`` pair is one supporter turn: the dialogue history up to that turn is the prompt, the
preferred and the rejected strategy-tagged supporter turns are chosen and rejected, exactly as the
ESC search stored them. Any pair kind works (``[train.data] kinds``); ``esc`` is the default.
"""

from __future__ import annotations

from pathlib import Path

from store import Store
from training.common import TrainResult, peft_config, train_and_save, trainer_args
from training.cso_config import CSOConfig
from training.data import load_split, preference_records, to_dataset
from training.data_config import DataConfig


def train_cso(store: Store, model_path: str, out_dir: Path, data: DataConfig, cfg: CSOConfig) -> TrainResult:
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    split = load_split(store, data)
    train_ds = to_dataset(preference_records(split.train))
    eval_ds = to_dataset(preference_records(split.eval)) if split.eval else None
    tok = AutoTokenizer.from_pretrained(model_path)
    args = DPOConfig(**trainer_args(cfg, out_dir, beta=cfg.beta, loss_type=[cfg.loss_type], max_length=cfg.max_length))
    trainer = DPOTrainer(model=model_path, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                         processing_class=tok, peft_config=peft_config(cfg))
    stats, _ = train_and_save(trainer, out_dir)
    if eval_ds is not None:
        metrics = trainer.evaluate()
        stats["evaluation"] = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    return TrainResult("cso", out_dir, split.train_ids, split.eval_ids,
                       {"train_pairs": len(split.train), "eval_pairs": len(split.eval)}, stats,
                       trainer.state.log_history)
