"""``carealign factbench``: build a MedFact-style fact-checking benchmark from correct texts.

    factbench build SOURCES... [--mapping M] [--limit N] [--round K]   inject, verify, filter
    factbench review [--round K] [--size N] [--seed S]                  experts review the panel
    factbench report                                                    per round: acceptance, agreement
    factbench mine [--methods ...] [--checker-model M]                  checkers mine hard items
    factbench export --out FILE                                         dedup, balance, MedFact JSONL

The flows are ``graphs/factbench/``; this module turns options into settings, runs them in the
command skeleton, asks the reviewer (``carealign.review_terminal``) and prints tables.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from carealign.command import (
    check_limit,
    console,
    current,
    handles_errors,
    pipeline_session,
    reviewer_name,
)
from carealign.options import config_option, global_option, limit_option, no_cache_option, seed_option
from carealign.review_terminal import Prompter, QuitReview, ReviewTally, review_queue
from carealign.settings import Settings
from carealign.tables import rows_table, summary_table
from graphs.factbench.configuration import FactbenchConfig
from graphs.factbench.export import export
from graphs.factbench.graph import run_factbench
from graphs.factbench.mining import checker_config, mining_records, score_mining
from graphs.factbench.nodes import FactbenchDeps
from graphs.factbench.report import TableRows, build_summary, mining_histogram, rounds_summary
from graphs.factbench.review import CriterionReview, VariantView, fewshot_examples, record_review, sample_for_review
from graphs.factbench.sources import read_sources
from graphs.factcheck.graph import run_factcheck
from graphs.factcheck.methods import parse_methods
from graphs.factcheck.nodes import FactcheckDeps
from store import Store
from store.factbench import MINE_DATASET, finish_review, start_review

factbench_app = typer.Typer(no_args_is_help=True, help="Build a fact-checking benchmark (typed error injection).")


def table(t: TableRows) -> Table:
    return rows_table(t.title, t.head, t.rows)


# -- build ----------------------------------------------------------------------------------------
async def build_command(console: Console, settings: Settings, sources: list[Path], mapping: str | None,
                        limit: int | None, dataset: str) -> str:
    config = settings.factbench
    types, criteria = config.taxonomy()
    records, counts = read_sources(sources, mapping, types)  # everything validated before any call
    records = records[:limit]
    if not records:
        raise ValueError("no correct source text in " + ", ".join(map(str, sources)))
    console.print("sources: " + ", ".join(f"{k}: {v}" for k, v in counts.items()) + f"; using {len(records)}")
    updates = {"model": config.injector_model} if config.injector_model else {}
    if config.filter_models:
        updates["judge_model"] = config.filter_models[0]
    settings = settings.model_copy(update=updates)
    async with pipeline_session(settings, more_judges=config.filter_models[1:], warn_self_grading=False) as session:
        injector, judges = session.engines.generator, session.engines.judges
        examples = fewshot_examples(session.store, config.round)
        if examples:
            console.print("few-shot examples from expert reviews: " +
                          ", ".join(f"{c}: {len(v)}" for c, v in sorted(examples.items())))
        deps = FactbenchDeps(session.store, injector, judges, types, criteria, config, settings.seed, dataset, examples)
        report = await session.run(f"factbench build r{config.round}", len(records), [injector, *judges],
                                   lambda on_item: run_factbench(deps, records, session.run_config(),
                                                                 redo=session.redo, on_item=on_item))
        for t in build_summary(session.store, report.run_id, config.round):
            console.print(table(t))
    return report.run_id  # why sources failed: the failure table session.run printed


@factbench_app.command("build")
@handles_errors
def build(
    sources: list[Path] = typer.Argument(..., help="correct texts: MedFact JSONL, MedErrBench CSV (correct rows and "
                                         "the corrected texts of error rows), or CSV/JSONL with --mapping"),
    mapping: str | None = typer.Option(None, "--mapping", help="column mapping, e.g. 'text=content,label=flag,"
                                       "label_values=1:error;0:correct'"),
    limit: int | None = limit_option("source texts"),
    round_: int | None = config_option(FactbenchConfig, "round", "--round"),
    dataset: str = typer.Option("factbench-sources", "--dataset", help="dataset name of the source items"),
    seed: int | None = seed_option(),
    no_cache: bool = no_cache_option(),
) -> None:
    """Inject one typed error per chosen type into each source, verify the span, filter by the panel."""
    settings = current().settings_with("factbench", {"round": round_}, seed=seed, cache=False if no_cache else None)
    asyncio.run(build_command(console, settings, sources, mapping, check_limit(limit), dataset))


# -- review ---------------------------------------------------------------------------------------
@dataclass
class FactbenchReviewer:
    """Shows a variant and asks, per criterion, whether the expert agrees with the panel."""

    prompter: Prompter
    reviewer: str

    @property
    def console(self) -> Console:
        return self.prompter.console

    def show(self, view: VariantView) -> None:
        inj = view.injection
        self.console.print(Panel(Text(view.source), title=f"original (item {view.item_id})", expand=False))
        self.console.print(Panel(Text(view.text), title=escape(f"variant {view.candidate_id}: {view.error_type}"),
                                 expand=False))
        self.console.print(f"edit in sentence {inj['sentence_id']}: [green]{escape(inj['original'])}[/] -> "
                           f"[red]{escape(inj['replacement'])}[/]  ({escape(inj['rationale'])})")
        self.console.print(f"panel: [bold]{'ACCEPTED' if view.accepted else 'REJECTED'}[/]")

    def decide(self, view: VariantView) -> list[CriterionReview] | None:
        """Per-criterion reviews of the shown variant, ``None`` to skip it; raises ``QuitReview``."""
        self.show(view)
        out = []
        for criterion, passed in view.passed.items():
            self.console.print(f"[bold]{escape(criterion)}[/]: panel says {'pass' if passed else 'fail'}")
            for reason in view.reasons.get(criterion, []):
                self.console.print(f"  {reason}", markup=False)
            choice = self.prompter.choose(
                f"variant {view.candidate_id} / {criterion}: [a]gree, [d]isagree, [s]kip variant, [q]uit",
                {"a": "agree", "d": "disagree", "s": "skip", "q": "quit"})
            if choice == "quit":
                raise QuitReview
            if choice == "skip":
                return None
            agree = choice == "agree"
            note = self.prompter.note("note", None if agree else
                                      "a disagreement needs a note: what is the right verdict, and why?")
            out.append(CriterionReview(criterion, agree, note))
        return out


def review_command(console: Console, store: Store, reviewer: FactbenchReviewer, round_: int, size: int,
                   seed: int) -> dict[str, int]:
    """Review a seeded sample of the round's variants; returns the counts (reviewed, skipped, disagreements)."""
    queue = sample_for_review(store, round_, size, seed, reviewer.reviewer)
    tally = ReviewTally({"reviewed": 0, "skipped": 0, "disagreements": 0})
    if not queue:
        console.print(f"no variant of round {round_} waits for review by {escape(reviewer.reviewer)}")
    else:
        run_id = start_review(store, reviewer.reviewer, round_, {"size": size, "seed": seed})

        def record(view: VariantView, reviews: list[CriterionReview]) -> list[str]:
            record_review(store, run_id, view, reviewer.reviewer, reviews)
            return ["reviewed"] + ["disagreements"] * sum(not r.agree for r in reviews)

        review_queue(console, queue, reviewer.decide, record, tally, skip_key="skipped")
        finish_review(store, run_id, tally.counts)
    console.print("review: " + tally.line(), markup=False)
    console.print(table(rounds_summary(store)))
    return tally.counts


@factbench_app.command("review")
@handles_errors
def review_cmd(
    round_: int | None = config_option(FactbenchConfig, "round", "--round"),
    size: int | None = config_option(FactbenchConfig, "review_size", "--size"),
    seed: int | None = config_option(FactbenchConfig, "review_seed", "--seed"),
    reviewer: str | None = typer.Option(None, "--reviewer", help="reviewer name (default: the login name)"),
) -> None:
    """Agree or disagree with the panel per criterion; disagreements teach the next round's filter."""
    ctx = current()
    config = ctx.settings_with("factbench", {"round": round_, "review_size": size, "review_seed": seed}).factbench
    with ctx.existing_store() as store:
        review_command(console, store, FactbenchReviewer(Prompter(console), reviewer_name(reviewer)), config.round,
                       config.review_size, config.review_seed)


@factbench_app.command("report")
@handles_errors
def report_cmd() -> None:
    """Per filtering round: acceptance rate and AI-expert agreement per criterion."""
    with current().existing_store() as store:
        console.print(table(rounds_summary(store)))


# -- mine and export ------------------------------------------------------------------------------
async def mine_command(console: Console, settings: Settings) -> dict[str, dict]:
    """Every checker method on every checker model over the benchmark's items; difficulty per item."""
    config = settings.factbench
    methods = parse_methods(config.mine_methods)
    check = checker_config(settings.factcheck, config)
    reader = Store(settings.db, must_exist=True)  # the items are read before any model is started
    try:
        records = mining_records(reader)
    finally:
        reader.dispose()
    batch = uuid.uuid4().hex[:12]
    job_keys: dict[str, str] = {}
    async with pipeline_session(settings, more_generators=config.mine_checker_models, warn_self_grading=False,
                                must_exist=True) as session:
        for checker in session.engines.generators:
            for method in methods:
                deps = FactcheckDeps(session.store, checker, method, check, settings.seed, MINE_DATASET)
                run_config = session.run_config(batch=batch, checker_model=checker.model, dataset=MINE_DATASET,
                                                purpose="factbench mining")
                await session.run(f"mine {method.name} [{checker.model}]", len(records), [checker],
                                  lambda on_item, d=deps, c=run_config: run_factcheck(
                                      d, records, c, redo=session.redo, on_item=on_item))
                job_keys[f"{method.name}@{checker.model}"] = deps.job_key
        results = score_mining(session.store, job_keys, drop_easy=config.mine_drop_easy,
                               require_location=config.mine_require_location, run_config={"batch": batch})
    console.print(table(mining_histogram(results)))
    return results


@factbench_app.command("mine")
@handles_errors
def mine_cmd(
    methods: str | None = config_option(FactbenchConfig, "mine_methods", "--methods"),
    checker_models: list[str] = typer.Option([], "--checker-model", help="more checker models on the same server "
                                             "(repeatable; --model is the first; setting "
                                             "factbench.mine_checker_models)"),
    drop_easy: bool | None = config_option(FactbenchConfig, "mine_drop_easy", "--drop-easy/--keep-easy"),
    seed: int | None = seed_option(),
    no_cache: bool = no_cache_option(),
) -> None:
    """Run a checker panel over accepted variants and their sources; assign difficulty 1-5."""
    settings = current().settings_with(
        "factbench", {"mine_methods": methods, "mine_checker_models": checker_models or None,
                      "mine_drop_easy": drop_easy}, seed=seed, cache=False if no_cache else None)
    asyncio.run(mine_command(console, settings))


@factbench_app.command("export")
@handles_errors
def export_cmd(
    out: Path = typer.Option(..., "--out", help="MedFact-schema JSONL (provenance goes beside it)"),
    seed: int | None = global_option("seed", "--seed", help="balancing seed"),
    no_balance: bool = typer.Option(False, "--no-balance", help="keep every item (no balancing)"),
) -> None:
    """Dedup, balance correct vs erroneous texts (stratified by error type and difficulty), export."""
    ctx = current()
    settings = ctx.settings_with(seed=seed)
    config = settings.factbench
    with ctx.existing_store() as store:
        s = export(store, out, threshold=config.dedup_threshold, seed=settings.seed,
                   require_mined=config.export_require_mined, balance=config.export_balance and not no_balance)
    console.print(summary_table("factbench export", [
        ("accepted variants and their sources", str(s.candidates)),
        ("dropped: every checker right", str(s.dropped_easy)), ("dropped: near-duplicates", str(s.duplicates)),
        ("written: correct", str(s.written_correct)), ("written: erroneous", str(s.written_error))]))
    if s.strata:
        console.print(rows_table("erroneous texts by stratum", ["error type / difficulty", "items"],
                                 [[k, str(v)] for k, v in sorted(s.strata.items())]))
    console.print(f"wrote {s.path} and {s.provenance_path}", markup=False)
