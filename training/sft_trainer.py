"""SFT baseline: supervised fine-tuning on the preferred side of stored pairs (preferred ESC turns
with their history, or chosen rubric answers) with trl's ``SFTTrainer``; prompt/completion rows, so
the loss covers the answer only. The baseline CSO and RM-guided GRPO are compared against."""

from __future__ import annotations

from pathlib import Path

from store import Store
from training.common import TrainResult, peft_config, train_and_save, trainer_args
from training.data import load_split, sft_records, to_dataset
from training.data_config import DataConfig
from training.sft_config import SFTConfig


def train_sft(store: Store, model_path: str, out_dir: Path, data: DataConfig, cfg: SFTConfig) -> TrainResult:
    from transformers import AutoTokenizer
    from trl import SFTConfig as TrlSFTConfig
    from trl import SFTTrainer

    split = load_split(store, data)
    rows = sft_records(split.train)
    tok = AutoTokenizer.from_pretrained(model_path)
    args = TrlSFTConfig(**trainer_args(cfg, out_dir, max_length=cfg.max_length))
    trainer = SFTTrainer(model=model_path, args=args, train_dataset=to_dataset(rows), processing_class=tok,
                         peft_config=peft_config(cfg))
    stats, _ = train_and_save(trainer, out_dir)
    stats["rows"] = len(rows)
    return TrainResult("sft", out_dir, split.train_ids, split.eval_ids,
                       {"train_pairs": len(split.train), "eval_pairs": len(split.eval), "rows": len(rows)}, stats,
                       trainer.state.log_history)
