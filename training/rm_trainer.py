"""Reward model trainers (ProMedical, PROTOCOLS.md section 1); ``[train.rm] variant`` picks one.

``criteria`` (default), Explicit Criteria Injection: each stored pair (x, y_w, y_l) with judged
candidates becomes one Bradley-Terry row per criterion c, the criterion stated in the input: trl's
``RewardTrainer`` minimises ``-log sigmoid(r(y+|x,c) - r(y-|x,c))``.

``multihead``: one regression head per rubric dimension, plain transformers ``Trainer``. Each judged
candidate of the training pairs is one row: the conversation and its answer in, and per head the
mean "goodness" (met, or not violated for a veto) of its judged criteria of that dimension out. A
head with no judged criterion on a candidate is masked out of the loss. Criteria without a known
dimension fall back to one head per kind (``kind:proficiency`` etc.).

Both save a plain model (LoRA merged) with ``carealign_rm.json``; the pairs are split three ways
(``training.data.split_pairs`` with a calibration side): the model trains on ``train``, its
thresholds are chosen on ``calibration`` and its figures measured on ``test``
(``training.rm_scorer.calibrate_and_evaluate``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from store import Store
from training.common import TrainResult, is_main_process, peft_config, train_and_save, trainer_args
from training.criteria import calibrate, load_verdicts
from training.data import SelectedPair, Split, load_split, to_dataset
from training.data_config import DataConfig
from training.rm_config import RMConfig
from training.rm_scorer import HEADS, RM_META, RewardScorer, build_rows, calibrate_and_evaluate, head_index


def train_reward_model(store: Store, model_path: str, out_dir: Path, data: DataConfig, cfg: RMConfig) -> TrainResult:
    if cfg.variant == "multihead":
        return train_multihead_rm(store, model_path, out_dir, data, cfg)
    return train_criteria_rm(store, model_path, out_dir, data, cfg)


# -- criteria injection -------------------------------------------------------------------------
def train_criteria_rm(store: Store, model_path: str, out_dir: Path, data: DataConfig, cfg: RMConfig,
                      split: Split | None = None) -> TrainResult:
    from transformers import AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    split = split or load_split(store, data, calibration=True)
    rows = build_rows(store, split.train, cfg)
    if not rows.rows:
        raise ValueError(f"no criterion rows: {rows.pairs_without_verdicts} training pairs have no judgments on "
                         f"both candidates and {rows.ties} criteria tie")
    used_ids = sorted({r["pair_id"] for r in rows.rows})
    ds = to_dataset([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows.rows])
    tok = AutoTokenizer.from_pretrained(model_path)
    args = RewardConfig(**trainer_args(cfg, out_dir, max_length=cfg.max_length))
    trainer = RewardTrainer(model=model_path, args=args, train_dataset=ds, processing_class=tok,
                            peft_config=peft_config(cfg, "SEQ_CLS"))
    kept_rows = len(trainer.train_dataset)
    stats, model = train_and_save(trainer, out_dir, merge_lora=True)  # the scorer loads a plain model
    meta = {"variant": "criteria", "criterion_template": cfg.criterion_template, "max_length": cfg.max_length,
            "base_model": model_path}
    evaluation = evaluate_and_save(RewardScorer(model, tok, {**meta, **calibrate({})}, cfg.score_batch_size),
                                   store, split, cfg, out_dir)
    stats.update(rows=len(rows.rows), rows_within_max_length=kept_rows, ties=rows.ties,
                 pairs_without_verdicts=rows.pairs_without_verdicts, evaluation=evaluation)
    return _result(split, used_ids, len(rows.rows), stats, trainer.state.log_history, out_dir)


def evaluate_and_save(scorer: RewardScorer, store: Store, split: Split, cfg: RMConfig, out_dir: Path) -> dict[str, Any]:
    """Thresholds from the calibration split, figures from the test split; ``carealign_rm.json``
    (thresholds, variant, template or heads, split sizes) next to the model."""
    test_rows = build_rows(store, split.eval, cfg)
    evaluation = calibrate_and_evaluate(scorer, store, split.calibration, split.eval, test_rows)
    scorer.meta["split_sizes"] = split.sizes()
    if is_main_process():
        (out_dir / RM_META).write_text(json.dumps(scorer.meta, indent=2) + "\n", encoding="utf-8")
    return evaluation


def _result(split: Split, used: list[int], rows: int, stats: dict[str, Any], log_history: list[dict[str, Any]],
            out_dir: Path) -> TrainResult:
    return TrainResult("rm", out_dir, used, split.eval_ids,
                       {"selected_train_pairs": len(split.train), "train_pairs": len(used),
                        "calibration_pairs": len(split.calibration), "eval_pairs": len(split.eval), "rows": rows},
                       stats, log_history, calibration_pair_ids=split.calibration_ids)


# -- multihead ----------------------------------------------------------------------------------
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

    split = load_split(store, data, calibration=True)
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
    evaluation = evaluate_and_save(RewardScorer(trained, tok, {**meta, **calibrate({})}, cfg.score_batch_size),
                                   store, split, cfg, out_dir)
    stats.update(candidates=len(rows), evaluation=evaluation)
    used = sorted({r["pair_id"] for r in rows})
    return _result(split, used, len(rows), stats, trainer.state.log_history, out_dir)
