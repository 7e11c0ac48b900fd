"""``carealign generate``: candidate answers per instruction, judged, best vs worst stored as a pair.

The flow is ``graphs/generate/``; this module only turns options into settings and prints."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from agents.roles import load_rubric
from benchmarks.datasets.instructions import read_instructions
from benchmarks.datasets.rows import InputReport
from carealign.command import check_limit, console, current, handles_errors, pipeline_session
from carealign.options import (
    config_option,
    dataset_option,
    instruction_mapping_option,
    joined_urls,
    judge_base_url_option,
    judge_model_option,
    limit_option,
    no_cache_option,
    on_bad_row_option,
    seed_option,
)
from carealign.settings import Settings
from carealign.tables import generate_summary_table
from graphs.common.runner import WorkflowReport
from graphs.generate.configuration import GenerateConfig
from graphs.generate.graph import run_generate
from graphs.generate.nodes import GenerateDeps
from store.run_reports import add_run_stats

generate_app = typer.Typer()


async def generate_command(settings: Settings, input_file: Path, dataset: str, limit: int | None,
                           mapping: str | None = None, on_bad_row: str = "fail") -> WorkflowReport:
    read = InputReport(str(input_file), on_bad_row, limit)  # type: ignore[arg-type]
    records = read_instructions(input_file, mapping, read)  # validated before anything is opened
    for line in read.lines():
        console.print(line, markup=False, highlight=False)
    config = settings.generate
    rubric = load_rubric(config.rubric)
    async with pipeline_session(settings) as session:
        engines = session.engines
        deps = GenerateDeps(session.store, engines.generator, engines.judge, rubric, config, settings.seed)
        report = await session.run("generate", len(records), [engines.generator, engines.judge],
                                   lambda on_item: run_generate(deps, records, dataset, session.run_config(),
                                                                redo=session.redo, on_item=on_item))
        add_run_stats(session.store, report.run_id, {"input": read.stats()})
        console.print(generate_summary_table(report, session.store))
    return report


@generate_app.command("generate")
@handles_errors
def generate(
    input_file: Path = typer.Argument(..., help="JSONL of instructions ({'prompt': ...} or {'messages': [...]})"),
    n_candidates: int | None = config_option(GenerateConfig, "n_candidates", "--n"),
    min_margin: float | None = config_option(GenerateConfig, "min_margin", "--min-margin"),
    rubric: str | None = config_option(GenerateConfig, "rubric", "--rubric"),
    judge_model: str | None = judge_model_option(),
    judge_base_url: list[str] | None = judge_base_url_option(),
    dataset: str | None = dataset_option(),
    limit: int | None = limit_option("instructions"),
    mapping: str | None = instruction_mapping_option(),
    on_bad_row: str = on_bad_row_option(),
    seed: int | None = seed_option(),
    no_cache: bool = no_cache_option(),
) -> None:
    """Candidate answers per instruction, judged against a rubric; best vs worst stored as a pair."""
    settings = current().settings_with(
        "generate", {"n_candidates": n_candidates, "min_margin": min_margin, "rubric": rubric},
        judge_model=judge_model, judge_base_url=joined_urls(judge_base_url), seed=seed,
        cache=False if no_cache else None)
    asyncio.run(generate_command(settings, input_file, dataset or input_file.stem, check_limit(limit), mapping,
                                 on_bad_row))
