"""RM-guided GRPO (ProMedical): trl's ``GRPOTrainer`` with one reward function,
``r = clip(S1 + a*S2, 0, 1 + b) - l*S3`` (``agents.rubric.policy_reward``), S1/S2/S3 from a frozen
reward model trained by ``train rm`` or, as a setting, from the LLM judge (``RubricGrader``).

Each training row is a distinct prompt with its rubric (JSON text in the ``rubric`` column; trl
hands dataset columns to the reward function). Per step the reward function logs the veto rate
(share of completions with S3 > 0) and mean S1, S2 and reward through trl's ``log_metric``; they go
wherever the trainer reports (TensorBoard by default, ``report_to``). The frozen reward model sits
on the trainer's device (bfloat16 where the GPU has it) and scores a step's rows in batches.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agents.rubric import RewardConfig, Rubric, RubricScore, policy_reward
from store import Store
from store.records import sha256_of
from training.common import TrainResult, peft_config, train_and_save, trainer_args
from training.data import item_rubrics, load_split, prompt_records, to_dataset
from training.data_config import DataConfig
from training.grpo_config import GRPOConfig

Scores = Callable[[list[tuple[list[dict[str, Any]], str, Rubric]]], list[RubricScore]]


def completion_text(completion: Any) -> str:
    """trl passes conversational completions as message lists, plain ones as strings."""
    if isinstance(completion, list):
        return "".join(m.get("content", "") for m in completion if m.get("role") == "assistant")
    return str(completion)


class RubricReward:
    """The single GRPO reward function: S1/S2/S3 of each completion under its prompt's rubric,
    turned into the policy reward. ``scores`` maps (conversation, completion, rubric) triples to
    ``RubricScore``s (a reward model's or a judge's)."""

    __name__ = "rubric_reward"  # trl names the reward's logged columns after the function

    def __init__(self, scores: Scores, cfg: RewardConfig):
        self.scores, self.cfg = scores, cfg

    def __call__(self, prompts: list[Any], completions: list[Any], rubric: list[str],
                 log_metric: Callable[[str, float], None] | None = None, **_: Any) -> list[float]:
        items = [(p if isinstance(p, list) else [{"role": "user", "content": str(p)}], completion_text(c),
                  Rubric.model_validate_json(r)) for p, c, r in zip(prompts, completions, rubric, strict=True)]
        scores = self.scores(items)
        rewards = [policy_reward(s, self.cfg) for s in scores]
        if log_metric is not None and scores:
            n = len(scores)
            log_metric("rubric/veto_rate", sum(1 for s in scores if s.s3 > 0) / n)
            log_metric("rubric/s1_mean", sum(s.s1 for s in scores) / n)
            log_metric("rubric/s2_mean", sum(s.s2 for s in scores) / n)
        return rewards


class RewardModelScores:
    """S1/S2/S3 from a frozen reward model trained by ``train rm``: every (completion, criterion)
    row of a step is scored in batches of ``reward_batch_size``. Loaded on the CPU in float32; the
    trainer moves it onto its own device (``place``) in ``reward_dtype`` once the policy is placed."""

    def __init__(self, path: str | Path, cfg: GRPOConfig):
        from training.rm_scorer import RewardScorer

        self.cfg = cfg
        self.scorer = RewardScorer.load(path, batch_size=cfg.reward_batch_size, device="cpu", dtype="float32")

    def place(self, device: Any) -> None:
        self.scorer.to(device, self.cfg.reward_dtype)

    def __call__(self, items: list[tuple[list[dict[str, Any]], str, Rubric]]) -> list[RubricScore]:
        return [s.rubric_score for s in self.scorer.score_many(items)]


class JudgeScores:
    """S1/S2/S3 from the LLM judge: ``RubricGrader`` calls run on an event loop in a background
    thread (trl calls the reward function synchronously); every call is recorded in the store
    under the training run. Use as a context manager; ``engine_factory`` is an async context
    manager factory yielding the judge engine (e.g. ``open_engines(...)`` and ``.judge``)."""

    def __init__(self, engine_factory: Callable[[], Any], grader_mode: str, run_id: str | None):
        self.engine_factory, self.grader_mode, self.run_id = engine_factory, grader_mode, run_id
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._cm: Any = None

    def __enter__(self) -> JudgeScores:
        from agents.rubric_grader import RubricGrader

        self.thread.start()
        self._cm = self.engine_factory()
        engine = asyncio.run_coroutine_threadsafe(self._cm.__aenter__(), self.loop).result()
        self.grader = RubricGrader(engine, self.grader_mode)
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self._cm.__aexit__(*exc), self.loop).result()
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)

    def __call__(self, items: list[tuple[list[dict[str, Any]], str, Rubric]]) -> list[RubricScore]:
        from agents.engine import CallContext

        async def grade_all() -> list[RubricScore]:
            ctx = CallContext(run_id=self.run_id)
            found = await asyncio.gather(*(self.grader.grade(conv, text, rb, ctx) for conv, text, rb in items))
            return [self.grader.score(rb, v) for (_, _, rb), v in zip(items, found, strict=True)]

        return asyncio.run_coroutine_threadsafe(grade_all(), self.loop).result()


def fitting_prompts(rows: list[dict[str, Any]], tok: Any, max_length: int | None) -> tuple[list[dict[str, Any]], int]:
    """Rows whose rendered prompt fits ``max_length`` tokens (GRPO has no prompt limit of its own;
    a longer prompt would leave no room to answer), and how many were dropped."""
    if max_length is None:
        return rows, 0
    kept = [r for r in rows if len(tok.apply_chat_template(r["prompt"], tokenize=True, return_dict=True,
                                                           add_generation_prompt=True)["input_ids"]) <= max_length]
    return kept, len(rows) - len(kept)


def train_grpo(store: Store, model_path: str, out_dir: Path, data: DataConfig, cfg: GRPOConfig,
               scores: Scores | None = None) -> TrainResult:
    """``scores`` defaults to the reward model at ``cfg.reward_model``; the CLI passes a
    ``JudgeScores`` when ``reward_source = "judge"``."""
    from transformers import AutoTokenizer
    from trl import GRPOConfig as TrlGRPOConfig
    from trl import GRPOTrainer

    split = load_split(store, data)
    rubrics = item_rubrics(store, {p.item_id for p in split.train})
    rows, missing = prompt_records(split.train, rubrics)
    if scores is None:
        if not cfg.reward_model:
            raise ValueError("grpo with reward_source 'rm' needs reward_model = the folder `carealign train rm` wrote")
        scores = RewardModelScores(cfg.reward_model, cfg)
    reward = RubricReward(scores, RewardConfig(cfg.a, cfg.b, cfg.l))
    tok = AutoTokenizer.from_pretrained(model_path)
    rows, too_long = fitting_prompts(rows, tok, cfg.max_length)
    args = TrlGRPOConfig(**trainer_args(
        cfg, out_dir, num_generations=cfg.num_generations, beta=cfg.beta,
        max_completion_length=cfg.max_completion_length, temperature=cfg.temperature, use_vllm=cfg.use_vllm,
        vllm_mode=cfg.vllm_mode))
    trainer = GRPOTrainer(model=model_path, reward_funcs=reward, args=args, train_dataset=to_dataset(rows),
                          processing_class=tok, peft_config=peft_config(cfg))
    if isinstance(scores, RewardModelScores):
        scores.place(trainer.accelerator.device)
    stats, _ = train_and_save(trainer, out_dir)
    per_step = [{k: v for k, v in log.items() if k.startswith("rubric/") or k in ("step", "reward", "kl", "loss")}
                for log in trainer.state.log_history if "loss" in log]
    stats.update(prompts=len(rows), prompts_too_long=too_long, pairs_without_rubric=missing, per_step=per_step)
    if isinstance(scores, RewardModelScores):
        stats["reward_model"] = {"device": str(scores.scorer.device), "dtype": str(scores.scorer.dtype),
                                 "batch_size": cfg.reward_batch_size}
    kept = {sha256_of(r["prompt"]) for r in rows}
    used = sorted(p.id for p in split.train if p.item_id in rubrics and p.prompt_hash in kept)
    return TrainResult("grpo", out_dir, used, split.eval_ids,
                       {"selected_train_pairs": len(split.train), "train_pairs": len(used),
                        "eval_pairs": len(split.eval), "prompts": len(rows)}, stats, trainer.state.log_history)
