"""``carealign factcheck``: compare fact-checking methods on a dataset, compute-matched, and report.

    factcheck run DATA --methods zero-shot,cot,sc@5,debate@3x2 [--checker-model M ...]
    factcheck report [RUN ...]
    factcheck export-run [METHOD_OR_RUN ...] --out FILE_OR_FOLDER
    factcheck score-run RUNFILE --gold DATA

``run`` reads and validates the whole dataset first, then runs every (model, method) as its own
job (resumable; texts already checked are not checked again), and ends with the report of that
batch. ``report`` rebuilds it from the store at any time. ``export-run`` writes each method's final
answers as a MEDIQA-CORR 2024 run file, and ``score-run`` scores any run file (one made elsewhere
too) with the shared task's metrics. The flow is ``graphs/factcheck/``; this module only turns
options into settings and prints.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from benchmarks.datasets.factcheck import load_dataset, parse_mapping
from benchmarks.datasets.mediqa_run import gold_row, read_run_file, unofficial_ids
from benchmarks.datasets.rows import InputReport
from benchmarks.factcheck_report import compact_rows, official_notes, official_of, official_rows, round_rows
from benchmarks.mediqa_corr import OfficialMetrics, official_metrics
from carealign.command import check_limit, console, current, handles_errors, pipeline_session
from carealign.options import (
    config_option,
    dataset_option,
    joined_urls,
    judge_base_url_option,
    judge_model_option,
    limit_option,
    no_cache_option,
    on_bad_row_option,
    out_dir_option,
    seed_option,
)
from carealign.settings import Settings
from carealign.tables import rows_table
from graphs.factcheck.configuration import FactcheckConfig
from graphs.factcheck.graph import records_of, run_factcheck
from graphs.factcheck.nodes import FactcheckDeps
from graphs.factcheck.report import compare, export_runs, jobs_named, official_scorers, write_report
from store import Store
from store.factcheck import job_keys_of
from store.run_reports import add_run_stats

factcheck_app = typer.Typer(no_args_is_help=True, help="Fact-checking experiments (MedFact).")


def print_official(console: Console, named: list[tuple[str, OfficialMetrics]]) -> None:
    """MEDIQA-CORR 2024's figures per method (or run file), and what was not computed."""
    console.print(rows_table("official metrics (MEDIQA-CORR 2024; comp = composite over all texts)",
                             *official_rows(named, pair_means=False)))
    for note in official_notes(named):
        console.print(f"  {note}", markup=False, highlight=False)


def print_and_write_report(console: Console, store: Store, job_keys: list[str], out_dir: Path, dataset: str,
                           config: FactcheckConfig) -> Path:
    """The comparison of the jobs' methods: tables here, plots and Markdown in ``out_dir``."""
    c = compare(store, job_keys, config.bootstrap_resamples, config=config,
                on_missing=lambda exc: console.print(f"[yellow]{escape(str(exc))}[/]"))
    console.print(rows_table("fact-checking: methods compared (CIs and breakdowns in the report)",
                             *compact_rows(c.results)))
    print_official(console, official_of(c.results))
    for a, b in c.matched:
        ra, rb = c.result(a), c.result(b)
        console.print(f"compute-matched: [bold]{escape(a)}[/] vs [bold]{escape(b)}[/] (measured per text: "
                      f"{ra.calls_per_text:.2f} vs {rb.calls_per_text:.2f} calls, {ra.tokens_per_text:.0f} vs "
                      f"{rb.tokens_per_text:.0f} tokens)")
    head, rows = round_rows(c.results)
    if rows:
        console.print(rows_table("by round (texts: those the row covers, of the scored texts; n/a: no denominator)",
                                 head, rows, left=("who",)))
    for r in c.results:
        if not r.metrics.localisation_available:
            console.print(f"{escape(r.method)}: localisation not available (no gold error locations in the data)")
    report, plots = write_report(c, out_dir, dataset)
    console.print(f"report: {report}; plots: {', '.join(str(p) for p in plots)}", markup=False)
    return report


async def run_command(console: Console, settings: Settings, data_file: Path, dataset: str, mapping: str | None,
                      limit: int | None, checker_models: list[str], out_dir: Path,
                      on_bad_row: str = "fail") -> list[str]:
    config = settings.factcheck
    methods = config.method_specs()
    read = InputReport(str(data_file), on_bad_row, limit)  # type: ignore[arg-type]
    records = records_of(load_dataset(data_file, mapping, read))  # validated before anything is opened
    for line in read.lines():
        console.print(line, markup=False, highlight=False)
    batch = uuid.uuid4().hex[:12]
    job_keys: list[str] = []
    async with pipeline_session(settings, more_generators=checker_models, warn_self_grading=False) as session:
        judge = session.engines.judge if config.localisation == "llm" else None
        for checker in session.engines.generators:
            for method in methods:
                deps = FactcheckDeps(session.store, checker, method, config, settings.seed, dataset, judge)
                run_config = session.run_config(batch=batch, checker_model=checker.model, dataset=dataset,
                                                mapping=mapping)
                used = [checker, judge] if judge else [checker]
                report = await session.run(f"{method.name} [{checker.model}]", len(records), used,
                                           lambda on_item, d=deps, c=run_config: run_factcheck(
                                               d, records, c, redo=session.redo, on_item=on_item))
                add_run_stats(session.store, report.run_id, {"input": read.stats()})
                job_keys.append(deps.job_key)
        print_and_write_report(console, session.store, job_keys, out_dir, dataset, config)
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
    on_bad_row: str = on_bad_row_option(),
    checker_models: list[str] = typer.Option([], "--checker-model", help="more checker models on the same server "
                                             "(repeatable; --model is the first)"),
    localisation: str | None = config_option(FactcheckConfig, "localisation", "--localisation"),
    allow_unsure: bool | None = config_option(FactcheckConfig, "allow_unsure", "--allow-unsure/--no-unsure"),
    judge_model: str | None = judge_model_option("location judge"),
    judge_base_url: list[str] | None = judge_base_url_option("location judge"),
    out_dir: Path = out_dir_option("factcheck-report", "plots and the report"),
    seed: int | None = seed_option(),
    no_cache: bool = no_cache_option(),
) -> None:
    """Run fact-checking methods over a dataset and compare them (results kept in the store)."""
    settings = current().settings_with(
        "factcheck", {"methods": methods, "localisation": localisation, "allow_unsure": allow_unsure},
        judge_model=judge_model, judge_base_url=joined_urls(judge_base_url), seed=seed,
        cache=False if no_cache else None)
    asyncio.run(run_command(console, settings, data_file, dataset or data_file.stem, mapping, check_limit(limit),
                            checker_models, out_dir, on_bad_row))


@factcheck_app.command("report")
@handles_errors
def report_cmd(
    run_ids: list[str] = typer.Argument(None, help="fact-checking runs (id prefixes) [default: the newest batch]"),
    out_dir: Path = out_dir_option("factcheck-report", "plots and the report"),
) -> None:
    """Rebuild the comparison from the store: table, per-round figures, plots, Markdown."""
    ctx = current()
    with ctx.existing_store() as store:
        print_and_write_report(console, store, job_keys_of(store, run_ids or []), out_dir, "", ctx.settings().factcheck)


@factcheck_app.command("export-run")
@handles_errors
def export_run_cmd(
    refs: list[str] = typer.Argument(None, metavar="METHOD_OR_RUN", help=escape(
        "a method of the newest batch (e.g. cot, sc@6) or a fact-checking run id prefix (any batch) [default: "
        "every method of the newest batch]")),
    out: Path = typer.Option(..., "--out", help="the run file; with several methods a folder, one METHOD.txt each "
                             "(METHOD__MODEL.txt when several checker models ran)"),
) -> None:
    """Write methods' final answers as MEDIQA-CORR 2024 run files: TEXT_ID FLAG SENTENCE_ID CORRECTION."""
    with current().existing_store() as store:
        exported = export_runs(store, jobs_named(store, refs or []), out)
    for e in exported:
        unanswered = sum(not r.answered for r in e.rows)
        console.print(f"{e.method} [{e.model}]: {len(e.rows)} texts, {sum(r.flag for r in e.rows)} flagged, "
                      f"{unanswered} unanswered (written as 0 -1 NA) -> {e.path}", markup=False, highlight=False)
        odd = unofficial_ids(e.rows)
        if odd:
            console.print(f"[yellow]{len(odd)} text ids (e.g. {escape(repr(odd[0]))}) are not lower-case letters, "
                          "digits and '-': the official MEDIQA-CORR script skips such lines[/]")


@factcheck_app.command("score-run")
@handles_errors
def score_run_cmd(
    run_file: Path = typer.Argument(..., help="a MEDIQA-CORR run file: TEXT_ID FLAG SENTENCE_ID CORRECTION per line"),
    gold: Path = typer.Option(..., "--gold", help="the gold texts: MedFact JSONL, MedErrBench CSV, or any CSV/JSONL "
                              "with --mapping"),
    mapping: str | None = typer.Option(None, "--mapping", help="column mapping of the gold file, as for `run`"),
    limit: int | None = limit_option("gold texts"),
) -> None:
    """Score a run file with MEDIQA-CORR 2024's official metrics (no store, no model server)."""
    every = load_dataset(gold, mapping)
    items = every[:check_limit(limit)]  # the texts scored; the run file is checked against all of them
    base = int(parse_mapping(mapping).get("sentence_id_base", 0)) if mapping else 0
    scored = {i.id for i in items}
    rows = [r for r in read_run_file(run_file, {i.id for i in every}, f"the {len(every)} gold texts of {gold}")
            if r.text_id in scored]
    scorers, notes = official_scorers(current().settings().factcheck)
    metrics = official_metrics(rows, [gold_row(i.id, i.model_dump(), base) for i in items], scorers, notes)
    print_official(console, [(run_file.name, metrics)])
    if metrics.n_missing:
        console.print(f"{metrics.n_missing} gold texts are not in the run file (counted wrong, as the official "
                      "script does)", markup=False)
