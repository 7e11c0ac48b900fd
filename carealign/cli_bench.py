"""``carealign bench``: evaluate a model behind the API with the published scoring rules.

    bench rubric FILE               HealthBench scoring (--mode pairwise: judge pairs; --mode meta: grader vs humans)
    bench rubric --reward-model PATH FILE   pairwise, judged by a model `carealign train rm` wrote
    bench strategy FILE             ESConv strategy Q, weighted F1, bias B, confusion matrix (PNG)
    bench medication FILE           medication knowledge: accuracy per task, abstention, over-confidence, ECE
    bench medication build LABELS   bench items from drug labels, checked against the label text
    bench compare RUN...            a table across runs, PNG plots and a Markdown report

The flows are ``graphs/bench/``; this module only turns options into settings and prints. Every run
stores its per-item results and its summary in ``bench_results``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from benchmarks.datasets.medication import read_drug_labels, read_medication_items
from benchmarks.datasets.rows import InputReport
from benchmarks.datasets.rubric_bench import read_rubric_bench
from benchmarks.datasets.strategy import load_mapping, load_strategy_set, read_strategy_dialogues
from carealign.command import (
    check_limit,
    console,
    current,
    deprecated,
    handles_errors,
    judge_or_old_names,
    pipeline_session,
)
from carealign.options import (
    config_option,
    dataset_option,
    hidden_alias,
    judge_base_url_option,
    judge_model_option,
    limit_option,
    no_cache_option,
    on_bad_row_option,
    out_dir_option,
    seed_option,
)
from carealign.settings import Settings
from carealign.tables import rows_table, summary_table
from graphs.bench.configuration import BenchConfig
from graphs.bench.graph import run_medication_bench, run_medication_build, run_rubric_bench, run_strategy_bench
from graphs.bench.medication_build_nodes import MedicationBuildDeps, label_records
from graphs.bench.medication_nodes import MedicationBenchDeps
from graphs.bench.rubric_nodes import RubricBenchDeps
from graphs.bench.strategy_nodes import StrategyBenchDeps
from graphs.common.runner import WorkflowReport
from store.run_reports import add_run_stats

bench_app = typer.Typer(no_args_is_help=True, help="Evaluate models: rubric scoring, strategy, medication.")


class _RunByDefault(TyperGroup):
    """``bench medication FILE`` runs the bench; ``bench medication build LABELS`` builds items."""

    def parse_args(self, ctx, args):  # noqa: ANN001, ANN201 - click's signature
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


medication_app = typer.Typer(cls=_RunByDefault, no_args_is_help=True,
                             help="Medication knowledge bench (FILE) and its item builder (build LABELS).")
bench_app.add_typer(medication_app, name="medication")


def _settings(values: dict[str, Any], judge_model: str | None, judge_base_url: str | None, seed: int | None,
              no_cache: bool) -> Settings:
    return current().settings_with("bench", values, judge_model=judge_model, judge_base_url=judge_base_url,
                                   seed=seed, cache=False if no_cache else None)


def show_summary(report: WorkflowReport, summary: dict[str, Any] | None, title: str) -> dict[str, Any]:
    """One run's summary and the notes the metrics raised; no result at all is exit code 1."""
    from benchmarks.bench_report import summary_rows  # matplotlib: loaded by the bench commands only

    if summary is None:
        console.print(f"[red]{title}: no item has a result[/] (see `carealign runs show {report.run_id}`)")
        raise typer.Exit(1)
    console.print(summary_table(f"bench {summary['bench']}: run {report.run_id}", summary_rows(summary, report.run_id)))
    for note in summary.get("notes") or []:
        console.print(f"[yellow]note:[/] {note}")
    return summary


# -- bench rubric ------------------------------------------------------------------------------------
def _read(read: InputReport, reader: Any, *args: Any) -> list[dict[str, Any]]:
    """Records of an input file, read before anything is opened, and what the reading passed over."""
    records = reader(*args, report=read)
    for line in read.lines():
        console.print(line, markup=False, highlight=False)
    return records


async def rubric_command(settings: Settings, input_file: Path, dataset: str, limit: int | None,
                         on_bad_row: str = "fail") -> None:
    config = settings.bench
    read = InputReport(str(input_file), on_bad_row, limit)  # type: ignore[arg-type]
    records = _read(read, read_rubric_bench, input_file, config.rubric_mode)
    async with pipeline_session(settings, warn_self_grading=config.rubric_mode == "score") as session:
        e = session.engines
        deps = RubricBenchDeps(session.store, e.generator, e.judge, config, settings.seed, dataset)
        report, summary = await session.run(
            f"bench rubric ({config.rubric_mode})", len(records), [e.generator, e.judge],
            lambda on_item: run_rubric_bench(deps, records, session.run_config(), redo=session.redo, on_item=on_item))
        add_run_stats(session.store, report.run_id, {"input": read.stats()})
    show_summary(report, summary, "bench rubric")


async def reward_model_command(settings: Settings, reward_model: Path, input_file: Path, dataset: str,
                               limit: int | None, on_bad_row: str = "fail") -> None:
    """The pairwise bench with a trained reward model as the judge: stored as a ``rubric_pairwise``
    run beside the LLM judges' (``bench compare`` shows them side by side)."""
    from benchmarks.datasets.instructions import InputError
    from carealign.command import with_progress
    from graphs.bench.graph import run_reward_model_bench
    from graphs.bench.reward_model_nodes import RewardModelBenchDeps
    from training.rm_eval import model_key, pairwise_verdict
    from training.rm_scorer import RewardScorer

    read = InputReport(str(input_file), on_bad_row, limit)  # type: ignore[arg-type]
    records = _read(read, read_rubric_bench, input_file, "pairwise")
    for r in records:
        if not r["payload"]["criteria"]:
            raise InputError(f"{r['source']}: field 'rubric': a reward model scores answers against criteria, and "
                             "this pair has none")
    scorer = RewardScorer.load(reward_model, batch_size=settings.bench.reward_model_batch_size, dtype="auto")
    console.print(f"reward model {reward_model} on {scorer.device} ({str(scorer.dtype).removeprefix('torch.')})")
    with current().store() as store:
        deps = RewardModelBenchDeps(store, lambda payload: pairwise_verdict(scorer, payload), reward_model.name,
                                    model_key(reward_model), settings.bench, dataset)
        run_config = {**settings.for_run(), "reward_model": str(reward_model.resolve()),
                      "reward_model_key": deps.model_key, "reward_model_meta": scorer.meta}
        report, summary = await with_progress(
            "bench rubric (reward model)", len(records), [],
            lambda on_item: run_reward_model_bench(deps, records, run_config, redo=not settings.cache,
                                                   on_item=on_item))
        add_run_stats(store, report.run_id, {"input": read.stats()})
    summary = show_summary(report, summary, "bench rubric")
    if summary.get("criterion_accuracy") is not None:
        console.print(rows_table("per criterion kind", ["kind", "n", "accuracy"],
                                 [[k, str(v["n"]), f"{v['accuracy']:.3f}"]
                                  for k, v in summary["per_criterion_kind"].items()]))


@bench_app.command("rubric")
@handles_errors
def rubric(
    input_file: Path = typer.Argument(..., help="JSONL: HealthBench examples (score), pairs (pairwise) or "
                                      "graded completions with physician labels (meta)"),
    mode: str | None = config_option(BenchConfig, "rubric_mode", "--mode"),
    grader_mode: str | None = config_option(BenchConfig, "grader_mode", "--grader-mode"),
    judge_model: str | None = judge_model_option("grader"),
    judge_base_url: list[str] | None = judge_base_url_option("grader"),
    dataset: str | None = dataset_option(),
    limit: int | None = limit_option("items"),
    seed: int | None = seed_option(),
    no_cache: bool = no_cache_option(),
    grader_model: str | None = hidden_alias("--grader-model"),
    grader_base_url: str | None = hidden_alias("--grader-base-url"),
    reward_model: Path | None = typer.Option(None, "--reward-model", help="judge the pairs with this trained reward "
                                             "model (a folder `carealign train rm` wrote) instead of an LLM; "
                                             "pairwise files only"),
    reward_model_batch_size: int | None = config_option(BenchConfig, "reward_model_batch_size",
                                                        "--reward-model-batch-size"),
    on_bad_row: str = on_bad_row_option(),
) -> None:
    """Score answers with rubric items exactly as HealthBench does, or score a judge (pairwise, meta)."""
    judge_model, judge_base_url = judge_or_old_names(judge_model, judge_base_url, grader_model, grader_base_url)
    if reward_model is not None:
        if mode not in (None, "pairwise"):
            raise ValueError(f"--reward-model judges pairwise files only (got --mode {mode})")
        if not reward_model.is_dir():
            raise FileNotFoundError(f"--reward-model {reward_model}: no such folder")
        settings = _settings({"reward_model_batch_size": reward_model_batch_size}, None, None, seed, no_cache)
        asyncio.run(reward_model_command(settings, reward_model, input_file, dataset or input_file.stem,
                                         check_limit(limit), on_bad_row))
        return
    settings = _settings({"rubric_mode": mode, "grader_mode": grader_mode}, judge_model, judge_base_url, seed,
                         no_cache)
    asyncio.run(rubric_command(settings, input_file, dataset or input_file.stem, check_limit(limit), on_bad_row))


# -- bench strategy ----------------------------------------------------------------------------------
async def strategy_command(settings: Settings, input_file: Path, dataset: str, limit: int | None,
                           out_dir: Path) -> None:
    from benchmarks.bench_report import strategy_plots  # matplotlib: loaded by the bench commands only

    config = settings.bench
    scored = load_strategy_set(config.strategy_set)
    offered = load_strategy_set(config.prompt_strategy_set) if config.prompt_strategy_set else None
    aliases = load_mapping(config.strategy_mapping, config.strategy_set)
    records, skipped = read_strategy_dialogues(input_file, scored, aliases, config.max_history_turns,
                                               config.unknown_gold, limit)
    if skipped:
        console.print(f"[yellow]skipped turns whose gold strategy is outside the set:[/] {skipped}")
    async with pipeline_session(settings, warn_self_grading=False) as session:
        deps = StrategyBenchDeps(session.store, session.engines.generator, scored, config, settings.seed, dataset,
                                 offered, aliases)
        report, summary = await session.run(
            f"bench strategy ({config.strategy_mode})", len(records), [session.engines.generator],
            lambda on_item: run_strategy_bench(deps, records, session.run_config(skipped_gold=skipped),
                                               redo=session.redo, on_item=on_item))
    summary = show_summary(report, summary, "bench strategy")
    for path in strategy_plots(summary, report.run_id, out_dir):
        console.print(f"wrote {path}")


@bench_app.command("strategy")
@handles_errors
def strategy(
    input_file: Path = typer.Argument(..., help="ESConv tsv (devWithStrategy_short.tsv) or JSON (ESConv.json)"),
    mode: str | None = config_option(BenchConfig, "strategy_mode", "--mode"),
    strategy_set: str | None = config_option(BenchConfig, "strategy_set", "--strategy-set"),
    prompt_strategy_set: str | None = config_option(BenchConfig, "prompt_strategy_set", "--prompt-strategy-set"),
    mapping: str | None = config_option(BenchConfig, "strategy_mapping", "--mapping"),
    unknown_gold: str | None = config_option(BenchConfig, "unknown_gold", "--unknown-gold"),
    max_history_turns: int | None = config_option(BenchConfig, "max_history_turns", "--max-history-turns"),
    out_dir: Path = out_dir_option("bench-report", "the PNG plots"),
    dataset: str | None = dataset_option(),
    limit: int | None = limit_option("turns"),
    seed: int | None = seed_option(),
    no_cache: bool = no_cache_option(),
    strategies: str | None = hidden_alias("--strategies"),
    prompt_strategies: str | None = hidden_alias("--prompt-strategies"),
) -> None:
    """Strategy proficiency Q, weighted F1 and preference bias B (Kang et al. 2024)."""
    strategy_set = strategy_set or deprecated(strategies, "--strategies", "--strategy-set")
    prompt_strategy_set = prompt_strategy_set or deprecated(prompt_strategies, "--prompt-strategies",
                                                            "--prompt-strategy-set")
    settings = _settings({"strategy_mode": mode, "strategy_set": strategy_set,
                          "prompt_strategy_set": prompt_strategy_set, "strategy_mapping": mapping,
                          "unknown_gold": unknown_gold, "max_history_turns": max_history_turns},
                         None, None, seed, no_cache)
    asyncio.run(strategy_command(settings, input_file, dataset or input_file.stem, check_limit(limit), out_dir))


# -- bench medication --------------------------------------------------------------------------------
async def medication_command(settings: Settings, input_file: Path, dataset: str, limit: int | None,
                             on_bad_row: str = "fail") -> None:
    from benchmarks.bench_report import MEDICATION_TASK_COLUMNS, medication_task_rows  # matplotlib

    config = settings.bench
    read = InputReport(str(input_file), on_bad_row, limit)  # type: ignore[arg-type]
    records = _read(read, read_medication_items, input_file)
    async with pipeline_session(settings) as session:
        e = session.engines
        deps = MedicationBenchDeps(session.store, e.generator, e.judge, config, settings.seed, dataset)
        report, summary = await session.run(
            "bench medication", len(records), [e.generator, e.judge],
            lambda on_item: run_medication_bench(deps, records, session.run_config(), redo=session.redo,
                                                 on_item=on_item))
        add_run_stats(session.store, report.run_id, {"input": read.stats()})
    summary = show_summary(report, summary, "bench medication")
    console.print(rows_table("per task", list(MEDICATION_TASK_COLUMNS), medication_task_rows(summary)))


@medication_app.command("run")
@handles_errors
def medication(
    input_file: Path = typer.Argument(..., help="JSONL of medication items (see benchmarks/datasets/medication.py)"),
    confidence: bool | None = config_option(BenchConfig, "ask_confidence", "--confidence/--no-confidence"),
    judge_model: str | None = judge_model_option("grader"),
    judge_base_url: list[str] | None = judge_base_url_option("grader"),
    dataset: str | None = dataset_option(),
    limit: int | None = limit_option("items"),
    seed: int | None = seed_option(),
    no_cache: bool = no_cache_option(),
    grader_model: str | None = hidden_alias("--grader-model"),
    grader_base_url: str | None = hidden_alias("--grader-base-url"),
    on_bad_row: str = on_bad_row_option(),
) -> None:
    """Accuracy per task, abstention, accuracy when answering, over-confidence and ECE."""
    judge_model, judge_base_url = judge_or_old_names(judge_model, judge_base_url, grader_model, grader_base_url)
    settings = _settings({"ask_confidence": confidence}, judge_model, judge_base_url, seed, no_cache)
    asyncio.run(medication_command(settings, input_file, dataset or input_file.stem, check_limit(limit), on_bad_row))


# -- bench medication build --------------------------------------------------------------------------
async def medication_build_command(settings: Settings, labels_file: Path, out: Path, dataset: str,
                                   limit: int | None) -> None:
    from graphs.bench.report import write_built_items  # matplotlib: loaded by the bench commands only

    records = label_records(read_drug_labels(labels_file)[:limit], labels_file.name)
    async with pipeline_session(settings, warn_self_grading=False) as session:
        e = session.engines
        deps = MedicationBuildDeps(session.store, e.generator, e.judge, settings.bench, settings.seed, dataset)
        report, summary, accepted, rejected = await session.run(
            "bench medication build", len(records), [e.generator, e.judge],
            lambda on_item: run_medication_build(deps, records, session.run_config(), redo=session.redo,
                                                 on_item=on_item))
    rejections = write_built_items(out, accepted, rejected)
    show_summary(report, summary, "bench medication build")
    console.print(f"wrote {len(accepted)} items to {out} and {len(rejected)} rejections to {rejections}")


@medication_app.command("build")
@handles_errors
def medication_build(
    labels_file: Path = typer.Argument(..., help="JSON list of drug labels (see examples/drug_labels_example.json)"),
    out: Path = typer.Option(..., "--out", "-o", help="JSONL of accepted items (rejections go to OUT.rejected.jsonl)"),
    formats: str | None = config_option(BenchConfig, "build_formats", "--formats"),
    judge_model: str | None = judge_model_option("checker"),
    judge_base_url: list[str] | None = judge_base_url_option("checker"),
    dataset: str | None = dataset_option(),
    limit: int | None = limit_option("labels"),
    seed: int | None = seed_option(),
    no_cache: bool = no_cache_option(),
    checker_model: str | None = hidden_alias("--checker-model"),
    checker_base_url: str | None = hidden_alias("--checker-base-url"),
) -> None:
    """Write medication items from drug labels with an LLM; a checker rejects unsupported ones."""
    judge_model, judge_base_url = judge_or_old_names(judge_model, judge_base_url, checker_model, checker_base_url,
                                                     "checker")
    fmts = [f.strip() for f in formats.split(",")] if formats else None
    settings = _settings({"build_formats": fmts}, judge_model, judge_base_url, seed, no_cache)
    asyncio.run(medication_build_command(settings, labels_file, out, dataset or labels_file.stem, check_limit(limit)))


# -- bench compare -----------------------------------------------------------------------------------
@bench_app.command("compare")
@handles_errors
def compare(
    runs: list[str] = typer.Argument(..., help="bench run ids (unique prefixes are enough)"),
    out_dir: Path = out_dir_option("bench-report", "the PNGs and report.md"),
) -> None:
    """A table across runs, PNG plots per bench and a Markdown report."""
    from graphs.bench.report import compare_runs  # matplotlib: loaded by the bench commands only

    with current().existing_store() as store:
        c = compare_runs(store, runs, out_dir)
    console.print(rows_table("bench runs", c.columns, c.rows, left=("bench", "model", "dataset")))
    console.print(f"wrote {c.report} and {len(c.plots)} plots to {out_dir}")
