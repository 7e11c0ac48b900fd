"""``carealign factcheck``: compare fact-checking methods on a dataset, compute-matched, and report.

    factcheck run DATA --methods zero-shot,cot,sc@5,debate@3x2 [--checker-model M ...]
    factcheck report [RUN ...]

``run`` reads and validates the whole dataset first, then runs every (model, method) as its own
job (resumable; texts already checked are not checked again), and ends with the report of that
batch. ``report`` rebuilds it from the store at any time. The flow is ``graphs/factcheck/``; this
module only turns options into settings and prints.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from benchmarks.datasets.factcheck import load_dataset
from benchmarks.factcheck_report import compact_rows, round_rows
from carealign.command import check_limit, console, current, handles_errors, pipeline_session
from carealign.options import (
    config_option,
    dataset_option,
    judge_base_url_option,
    judge_model_option,
    limit_option,
    no_cache_option,
    out_dir_option,
    seed_option,
)
from carealign.settings import Settings
from carealign.tables import rows_table
from graphs.factcheck.configuration import FactcheckConfig
from graphs.factcheck.graph import records_of, run_factcheck
from graphs.factcheck.nodes import FactcheckDeps
from graphs.factcheck.report import compare, write_report
from store import Store
from store.factcheck import job_keys_of

factcheck_app = typer.Typer(no_args_is_help=True, help="Fact-checking experiments (MedFact).")


def print_and_write_report(console: Console, store: Store, job_keys: list[str], out_dir: Path, dataset: str,
                           n_resamples: int) -> Path:
    """The comparison of the jobs' methods: tables here, plots and Markdown in ``out_dir``."""
    c = compare(store, job_keys, n_resamples, on_missing=lambda exc: console.print(f"[yellow]{escape(str(exc))}[/]"))
    console.print(rows_table("fact-checking: methods compared (CIs and breakdowns in the report)",
                             *compact_rows(c.results)))
    for a, b in c.matched:
        console.print(f"compute-matched: [bold]{escape(a)}[/] vs [bold]{escape(b)}[/] ({c.calls(a)} calls per text "
                      "each)")
    head, rows = round_rows(c.results)
    if rows:
        console.print(rows_table("by round", head, rows, left=("who",)))
    report, plots = write_report(c, out_dir, dataset)
    console.print(f"report: {report}; plots: {', '.join(str(p) for p in plots)}", markup=False)
    return report


async def run_command(console: Console, settings: Settings, data_file: Path, dataset: str, mapping: str | None,
                      limit: int | None, checker_models: list[str], out_dir: Path) -> list[str]:
    config = settings.factcheck
    methods = config.method_specs()
    records = records_of(load_dataset(data_file, mapping)[:limit])  # validated before anything is opened
    batch = uuid.uuid4().hex[:12]
    job_keys: list[str] = []
    async with pipeline_session(settings, more_generators=checker_models, warn_self_grading=False) as session:
        judge = session.engines.judge if config.localisation == "llm" else None
        for checker in session.engines.generators:
            for method in methods:
                deps = FactcheckDeps(session.store, checker, method, config, settings.seed, dataset, judge)
                run_config = session.run_config(batch=batch, checker_model=checker.model, dataset=dataset)
                used = [checker, judge] if judge else [checker]
                await session.run(f"{method.name} [{checker.model}]", len(records), used,
                                  lambda on_item, d=deps, c=run_config: run_factcheck(
                                      d, records, c, redo=session.redo, on_item=on_item))
                job_keys.append(deps.job_key)
        print_and_write_report(console, session.store, job_keys, out_dir, dataset, config.bootstrap_resamples)
    return job_keys


@factcheck_app.command("run")
@handles_errors
def run_cmd(
    data_file: Path = typer.Argument(..., help="MedFact JSONL, MedErrBench CSV, or any CSV/JSONL with --mapping"),
    methods: str | None = config_option(FactcheckConfig, "methods", "--methods"),
    mapping: str | None = typer.Option(None, "--mapping", help="column mapping, e.g. "
                                       "'text=content,label=flag,label_values=1:error;0:correct'"),
    dataset: str | None = dataset_option(),
    limit: int | None = limit_option("texts"),
    checker_models: list[str] = typer.Option([], "--checker-model", help="more checker models on the same server "
                                             "(repeatable; --model is the first)"),
    localisation: str | None = config_option(FactcheckConfig, "localisation", "--localisation"),
    allow_unsure: bool | None = config_option(FactcheckConfig, "allow_unsure", "--allow-unsure/--no-unsure"),
    judge_model: str | None = judge_model_option("location judge"),
    judge_base_url: str | None = judge_base_url_option("location judge"),
    out_dir: Path = out_dir_option("factcheck-report", "plots and the report"),
    seed: int | None = seed_option(),
    no_cache: bool = no_cache_option(),
) -> None:
    """Run fact-checking methods over a dataset and compare them (results kept in the store)."""
    settings = current().settings_with(
        "factcheck", {"methods": methods, "localisation": localisation, "allow_unsure": allow_unsure},
        judge_model=judge_model, judge_base_url=judge_base_url, seed=seed, cache=False if no_cache else None)
    asyncio.run(run_command(console, settings, data_file, dataset or data_file.stem, mapping, check_limit(limit),
                            checker_models, out_dir))


@factcheck_app.command("report")
@handles_errors
def report_cmd(
    run_ids: list[str] = typer.Argument(None, help="fact-checking runs (id prefixes) [default: the newest batch]"),
    out_dir: Path = out_dir_option("factcheck-report", "plots and the report"),
) -> None:
    """Rebuild the comparison from the store: table, per-round figures, plots, Markdown."""
    ctx = current()
    with ctx.existing_store() as store:
        print_and_write_report(console, store, job_keys_of(store, run_ids or []), out_dir, "",
                               ctx.settings().factcheck.bootstrap_resamples)
