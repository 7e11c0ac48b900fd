"""``carealign train rm|grpo|cso|sft``: train a model with trl straight from the store's pairs.

    carealign --db store.db train rm   --model Qwen/Qwen3-8B --out models/rm   --kind rubric --language en
    carealign --db store.db train grpo --model Qwen/Qwen3-8B --out models/pol  --set reward_model=models/rm
    carealign --db store.db train cso  --model Qwen/Qwen3-8B --out models/cso  --set lora=true
    carealign --db store.db train sft  --model Qwen/Qwen3-8B --out models/sft

Settings come from the ``[train]`` table of the global ``--config`` file, then the command's own
``--config FILE``, then ``--set KEY=VALUE`` (a TOML value) and the filter options;
``train METHOD --list-settings`` prints every key with its type, default and help. Checkpoints go
to ``OUT/checkpoints`` (``save_steps``); ``--resume latest`` (or a checkpoint folder) continues a
stopped run. Logs go to TensorBoard in ``OUT/runs`` (``--report-to wandb`` for W&B). Multi-GPU:
``accelerate launch -m carealign.cli --db ... train cso ...`` (see the README).
"""

from __future__ import annotations

import json
import tomllib
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from carealign.command import console, current, deprecated, handles_errors

train_app = typer.Typer(no_args_is_help=True, help="Train reward models and policies from the store's pairs.")


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs, the value read as TOML (``0.5``, ``true``, ``"text"``, ``["a"]``), else as text."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE (got {item!r})")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value
    return out


def _judge_scores(settings: Any, store: Any, grader_mode: str, run_id: str):
    from carealign.engines import open_engines
    from training.grpo_trainer import JudgeScores

    @asynccontextmanager
    async def judge():
        async with open_engines(settings, store, warn_self_grading=False) as engines:
            yield engines.judge

    return JudgeScores(judge, grader_mode, run_id)


def print_settings(method: str) -> None:
    """Every key ``--set`` and ``[train.METHOD]`` accept (then ``[train.data]``'s), from the config
    classes themselves."""
    from training.config import METHOD_CONFIGS, list_settings
    from training.data_config import DataConfig

    for title, cls in ((f"[train.{method}] (--set KEY=VALUE)", METHOD_CONFIGS[method]),
                       ("[train.data] (or the filter options)", DataConfig)):
        console.print(f"[bold]{escape(title)}[/]", highlight=False)
        for key, kind, default, text in list_settings(cls):  # one line per key, whole (a table would cut it)
            shown = "none" if default is None else json.dumps(default)  # as --set takes it (TOML reads JSON scalars)
            console.print(f"  {escape(key)}: {escape(kind)} = {escape(shown)}", highlight=False, soft_wrap=True)
            console.print(f"      {escape(text)}", highlight=False, soft_wrap=True)


def run_train(method: str, model: str, out: Path, config: Path | None, sets: list[str],
              data_overrides: dict[str, Any], resume: str | None = None, report_to: str | None = None) -> None:
    from carealign.settings import read_config_file
    from training.common import is_main_process
    from training.config import load_configs, train_table
    from training.manifest import start_run
    from training.run import resume_point, train_from_store

    ctx = current()
    settings = ctx.settings()
    table = train_table(read_config_file(config) if config is not None else None, settings.train.model_dump())
    overrides = parse_sets(sets)
    if report_to is not None:
        overrides["report_to"] = [n.strip() for n in report_to.split(",")]
    data, cfg = load_configs(method, table, overrides, data_overrides)
    if model.startswith(("/", "./", "../", "~")) and not Path(model).expanduser().exists():
        raise FileNotFoundError(f"--model {model}: no such folder (a saved model or a model id)")
    with ctx.existing_store() as store:  # training reads pairs: a store that does not exist is a mistake
        store.ensure_schema()
        if method == "grpo" and cfg.reward_source == "judge":
            checkpoint, earlier = resume_point(store, out, resume)
            run_id = start_run(store, method, data, cfg, model, out, str(checkpoint) if checkpoint else None,
                               earlier) if is_main_process() else None
            with _judge_scores(settings, store, cfg.grader_mode, run_id) as scores:
                result = train_from_store(store, method, model, out, data, cfg, run_id=run_id, resume=resume,
                                          scores=scores)
        else:
            result = train_from_store(store, method, model, out, data, cfg, resume=resume)
    if not is_main_process():
        return
    stats = result.stats
    held = f"{len(result.eval_pair_ids)} test" + (f", {len(result.calibration_pair_ids)} calibration"
                                                  if result.calibration_pair_ids else "")
    console.print(f"trained {method} on {len(result.train_pair_ids)} pairs ({held} held out): "
                  f"{stats['steps']} steps, final loss {stats['final_loss']:.4f}; run {result.run_id}")
    if stats.get("resumed_from"):
        console.print(f"resumed from {stats['resumed_from']}")
    ev = stats.get("evaluation") or {}
    if "pair_accuracy" in ev:
        console.print(f"test split: pair accuracy {ev['pair_accuracy']:.3f}, safety F1 {ev['safety']['f1']:.3f} "
                      f"(thresholds from {ev['calibration_judged_pairs']} calibration pairs)")
    console.print(f"saved to {out} (training_manifest.json, README.md)")


def _command(method: str, doc: str):
    @handles_errors
    def command(
        model: str | None = typer.Option(None, "--model", help="base model: a local folder or a Hugging Face id "
                                         "[required]"),
        out: Path | None = typer.Option(None, "--out", help="folder for the trained model, manifest and model card "
                                        "[required]"),
        config: Path | None = typer.Option(None, "--config", help="TOML with train.data, train.rm, ... tables"),
        sets: list[str] = typer.Option([], "--set", help="KEY=VALUE for this method's config (TOML value)"),
        kind: list[str] = typer.Option([], "--kind", help="pair kinds (default: rubric for rm/grpo, esc else)"),
        run: list[str] = typer.Option([], "--run", help="only pairs from these runs (repeatable)"),
        min_margin: float | None = typer.Option(None, "--min-margin", help="only pairs with at least this margin"),
        language: str | None = typer.Option(None, "--language", help="only pairs in this language"),
        eval_fraction: float | None = typer.Option(None, "--eval-fraction", help="test share of the pair groups "
                                                   "(reported figures) [default: 0.1]"),
        max_pairs: int | None = typer.Option(None, "--max-pairs", help="use at most this many pairs"),
        resume: str | None = typer.Option(None, "--resume", help="continue from a checkpoint: latest (the newest "
                                          "under OUT/checkpoints) or a checkpoint folder"),
        report_to: str | None = typer.Option(None, "--report-to", help="tensorboard (default, into OUT/runs), "
                                             "wandb, tensorboard,wandb or none"),
        list_settings: bool = typer.Option(False, "--list-settings", help="print every --set key with its type, "
                                           "default and help, and exit"),
        run_id: list[str] = typer.Option([], "--run-id", hidden=True),
    ) -> None:
        if list_settings:
            print_settings(method)
            return
        missing = [flag for flag, value in (("--model", model), ("--out", out)) if value is None]
        if missing:
            raise ValueError(f"missing option {' and '.join(missing)} (required unless --list-settings)")
        runs = run + deprecated(run_id, "--run-id", "--run")
        run_train(method, model, out, config, sets, {
            "kinds": kind, "run_ids": runs, "min_margin": min_margin, "language": language,
            "eval_fraction": eval_fraction, "max_pairs": max_pairs}, resume, report_to)

    command.__doc__ = doc
    train_app.command(method)(command)


_command("rm", "Explicit Criteria Injection reward model (or the multihead variant): trl RewardTrainer.")
_command("grpo", "RM-guided GRPO: reward clip(S1 + a*S2, 0, 1+b) - l*S3 from the reward model or the judge.")
_command("cso", "Turn-level DPO on ESC strategy pairs (CSO): trl DPOTrainer.")
_command("sft", "SFT baseline on the preferred side of the pairs: trl SFTTrainer.")
