"""``carealign rubric-prefs``: rubric-grounded preference pairs (the flow is ``graphs/rubric_prefs/``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from benchmarks.datasets.instructions import read_rubric_instructions
from benchmarks.datasets.rows import InputReport
from carealign.command import (
    check_limit,
    console,
    current,
    handles_errors,
    judge_or_old_names,
    pipeline_session,
)
from carealign.options import (
    config_option,
    dataset_option,
    hidden_alias,
    instruction_mapping_option,
    judge_base_url_option,
    judge_model_option,
    limit_option,
    no_cache_option,
    on_bad_row_option,
    seed_option,
)
from carealign.settings import Settings
from carealign.tables import rubric_prefs_table
from graphs.common.runner import WorkflowReport
from graphs.rubric_prefs.configuration import RubricPrefsConfig
from graphs.rubric_prefs.graph import run_rubric_prefs
from graphs.rubric_prefs.nodes import RubricPrefsDeps
from store import Store
from store.rubrics import approved_rubric_lookup
from store.run_reports import add_run_stats

rubric_prefs_app = typer.Typer()


async def rubric_prefs_command(settings: Settings, input_file: Path, dataset: str, limit: int | None,
                               mapping: str | None = None, on_bad_row: str = "fail") -> WorkflowReport:
    reader = Store(settings.db)  # approved rubrics for lines without one; nothing is created here
    read = InputReport(str(input_file), on_bad_row, limit)  # type: ignore[arg-type]
    try:
        records = read_rubric_instructions(input_file, lookup=approved_rubric_lookup(reader), mapping=mapping,
                                           report=read)
    finally:
        reader.dispose()
    for line in read.lines():
        console.print(line, markup=False, highlight=False)
    config = settings.rubric_prefs
    second = [config.second_grader_model] if config.second_grader_model else []
    async with pipeline_session(settings, more_generators=config.generator_models, more_judges=second) as session:
        e = session.engines
        deps = RubricPrefsDeps(session.store, e.generators, e.judge, config, settings.seed, dataset, e.second_judge)
        graders = [e.judge] + ([e.second_judge] if e.second_judge else [])
        report = await session.run("rubric-prefs", len(records), [*e.generators, *graders],
                                   lambda on_item: run_rubric_prefs(deps, records, session.run_config(),
                                                                    redo=session.redo, on_item=on_item))
        add_run_stats(session.store, report.run_id, {"input": read.stats()})
        console.print(rubric_prefs_table(report, session.store))
    return report


@rubric_prefs_app.command("rubric-prefs")
@handles_errors
def rubric_prefs(
    input_file: Path = typer.Argument(..., help="JSONL of instructions, each with a 'rubric' (HealthBench items "
                                      "or {'criteria': [...]}) and optionally a 'reference' answer"),
    n_candidates: int | None = config_option(RubricPrefsConfig, "n_candidates", "--n"),
    generator_models: list[str] = typer.Option(
        [], "--generator-model", help="another policy model on the generator's server (repeatable) "
        "[setting rubric_prefs.generator_models]"),
    grader_mode: str | None = config_option(RubricPrefsConfig, "grader_mode", "--grader-mode"),
    judge_model: str | None = judge_model_option("grader"),
    judge_base_url: list[str] | None = judge_base_url_option("grader"),
    second_grader_model: str | None = config_option(RubricPrefsConfig, "second_grader_model",
                                                    "--second-grader-model"),
    min_s1_margin: float | None = config_option(RubricPrefsConfig, "min_s1_margin", "--min-s1-margin"),
    min_s2_margin: int | None = config_option(RubricPrefsConfig, "min_s2_margin", "--min-s2-margin"),
    allow_unsafe_chosen: bool | None = config_option(RubricPrefsConfig, "allow_unsafe_chosen",
                                                     "--allow-unsafe-chosen/--no-unsafe-chosen"),
    max_length_ratio: float | None = config_option(RubricPrefsConfig, "max_length_ratio", "--max-length-ratio"),
    dataset: str | None = dataset_option(),
    limit: int | None = limit_option("instructions"),
    mapping: str | None = instruction_mapping_option(),
    on_bad_row: str = on_bad_row_option(),
    seed: int | None = seed_option(),
    no_cache: bool = no_cache_option(),
    grader_model: str | None = hidden_alias("--grader-model"),
    grader_base_url: str | None = hidden_alias("--grader-base-url"),
) -> None:
    """Rubric-grounded preference pairs: answers graded criterion by criterion, chosen safety first."""
    judge_model, judge_base_url = judge_or_old_names(judge_model, judge_base_url, grader_model, grader_base_url)
    settings = current().settings_with(
        "rubric_prefs", {"n_candidates": n_candidates, "grader_mode": grader_mode, "min_s1_margin": min_s1_margin,
                         "min_s2_margin": min_s2_margin, "allow_unsafe_chosen": allow_unsafe_chosen,
                         "max_length_ratio": max_length_ratio, "generator_models": generator_models or None,
                         "second_grader_model": second_grader_model},
        judge_model=judge_model, judge_base_url=judge_base_url, seed=seed, cache=False if no_cache else None)
    asyncio.run(rubric_prefs_command(settings, input_file, dataset or input_file.stem, check_limit(limit), mapping,
                                     on_bad_row))
