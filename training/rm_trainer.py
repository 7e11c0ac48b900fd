"""Multi-head regression reward model: one output head per rubric dimension, plain transformers
``Trainer`` (the alternative to criteria injection, ``[train.rm] variant = "multihead"``).

Each judged candidate of the training pairs is one row: the conversation and its answer in, and per
head the mean "goodness" (met, or not violated for a veto) of its judged criteria of that dimension
out. A head with no judged criterion on a candidate is masked out of the loss. Criteria without a
known dimension fall back to one head per kind (``kind:proficiency`` etc.).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from agents.rubric import BONUS_DIMENSIONS, HEALTHBENCH_AXES, PROFICIENCY_DIMENSIONS, VETO_DIMENSIONS
from store import Store
from training.common import TrainResult, is_main_process, peft_config, train_and_save, trainer_args
from training.config import DataConfig, RMConfig
from training.criteria import KINDS, calibrate, load_verdicts
from training.data import SelectedPair, load_split, to_dataset

HEADS = list(dict.fromkeys([*PROFICIENCY_DIMENSIONS, *BONUS_DIMENSIONS, *VETO_DIMENSIONS, *HEALTHBENCH_AXES]))
HEADS += [f"kind:{k}" for k in KINDS]


def head_index(heads: list[str], kind: str, dimension: str | None) -> int:
    return heads.index(dimension) if dimension in heads else heads.index(f"kind:{kind}")


def candidate_rows(store: Store, pairs: list[SelectedPair], heads: list[str]) -> list[dict[str, Any]]:
    """One row per judged candidate (deduplicated): ``prompt``, ``response``, ``labels`` (NaN = no target)."""
    verdicts = load_verdicts(store, pairs)
    rows, seen = [], set()
    for p in pairs:
        for cid, text in ((p.chosen_candidate_id, p.chosen), (p.rejected_candidate_id, p.rejected)):
            if cid is None or cid in seen or cid not in verdicts:
                continue
            seen.add(cid)
            sums, counts = [0.0] * len(heads), [0] * len(heads)
            for v in verdicts[cid].values():
                h = head_index(heads, v.kind, v.dimension)
                sums[h] += v.good
                counts[h] += 1
            labels = [s / n if n else math.nan for s, n in zip(sums, counts, strict=True)]
            rows.append({"prompt": p.prompt, "response": text, "labels": labels, "pair_id": p.id})
    return rows


class _Collator:
    def __init__(self, tokenizer: Any, max_length: int | None):
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        ids = [self.tokenizer.apply_chat_template([*e["prompt"], {"role": "assistant", "content": e["response"]}],
                                                  tokenize=True, return_dict=True)["input_ids"] for e in examples]
        ids = [i[: self.max_length] if self.max_length else i for i in ids]
        batch = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt")
        batch["labels"] = torch.tensor([e["labels"] for e in examples], dtype=torch.float)
        return dict(batch)


def _masked_mse_trainer():
    import torch
    from transformers import Trainer

    class MaskedMSETrainer(Trainer):
        """MSE over the heads that have a target (NaN labels are masked out)."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            mask = ~torch.isnan(labels)
            diff = (outputs.logits.float() - torch.nan_to_num(labels)) * mask
            loss = (diff ** 2).sum() / mask.sum().clamp(min=1)
            return (loss, outputs) if return_outputs else loss

    return MaskedMSETrainer


def train_multihead_rm(store: Store, model_path: str, out_dir: Path, data: DataConfig, cfg: RMConfig) -> TrainResult:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainingArguments

    from training.reward_model import RM_META, RewardScorer, build_rows, calibrate_and_evaluate

    split = load_split(store, data)
    rows = candidate_rows(store, split.train, HEADS)
    if not rows:
        raise ValueError("no judged candidates among the training pairs: the multihead RM needs judgments")
    tok = AutoTokenizer.from_pretrained(model_path)
    if tok.pad_token is None:  # batches are padded; the head reads the last non-pad token
        tok.pad_token = tok.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=len(HEADS),
                                                               problem_type="regression")
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    peft = peft_config(cfg, "SEQ_CLS")
    if peft is not None:
        from peft import get_peft_model

        model = get_peft_model(model, peft)
    args = TrainingArguments(**trainer_args(cfg, out_dir, remove_unused_columns=False))
    trainer = _masked_mse_trainer()(model=model, args=args, train_dataset=to_dataset(rows),
                                    data_collator=_Collator(tok, cfg.max_length), processing_class=tok)
    stats, trained = train_and_save(trainer, out_dir, merge_lora=True)
    meta = {"variant": "multihead", "heads": HEADS, "max_length": cfg.max_length, "base_model": model_path,
            "criterion_template": cfg.criterion_template}
    scorer = RewardScorer(trained, tok, {**meta, **calibrate({})})
    evaluation = calibrate_and_evaluate(scorer, store, split.eval, build_rows(store, split.eval, cfg))
    if is_main_process():
        (out_dir / RM_META).write_text(json.dumps(scorer.meta, indent=2) + "\n", encoding="utf-8")
    stats.update(candidates=len(rows), evaluation=evaluation)
    used = sorted({r["pair_id"] for r in rows})
    return TrainResult("rm", out_dir, used, split.eval_ids,
                       {"selected_train_pairs": len(split.train), "train_pairs": len(used),
                        "eval_pairs": len(split.eval), "rows": len(rows)}, stats, trainer.state.log_history)
