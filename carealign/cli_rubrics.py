"""``carealign rubrics``: draft rubrics, review them, and manage the few-shot pool.

    rubrics draft FILE     instructions without a rubric get a draft (lines with one join the pool)
    rubrics review         page through pending drafts: approve, edit, reject (with a reason)
    rubrics import FILE    dataset rubrics join the few-shot pool as approved
    rubrics list           counts by status and origin

The flow is ``graphs/rubric_drafts/``; the terminal review is ``carealign.rubric_review``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.table import Table

from benchmarks.datasets.instructions import read_rubric_instructions
from benchmarks.datasets.rows import InputReport
from carealign.command import (
    check_limit,
    console,
    current,
    deprecated,
    handles_errors,
    pipeline_session,
    reviewer_name,
)
from carealign.options import (
    config_option,
    dataset_option,
    hidden_alias,
    joined_urls,
    judge_base_url_option,
    judge_model_option,
    limit_option,
    no_cache_option,
    on_bad_row_option,
    seed_option,
)
from carealign.review_terminal import Prompter, QuitReview, ReviewTally, review_queue
from carealign.rubric_review import RubricReviewer
from carealign.settings import Settings
from graphs.rubric_drafts.configuration import RubricDraftsConfig
from graphs.rubric_drafts.graph import run_rubric_drafts
from graphs.rubric_drafts.nodes import RubricDraftDeps
from graphs.rubric_drafts.pool import import_rubrics, seed_pool
from graphs.rubric_drafts.review import ReviewDecision, apply_decision
from store import Store
from store import rubrics as rubric_store
from store.run_reports import add_run_stats

rubrics_app = typer.Typer(no_args_is_help=True, help="Draft, review and pool clinical rubrics.")


def pool_table(store: Store) -> Table:
    t = Table(title="rubrics in the store")
    for col in ("status", "origin", "rubrics", "in few-shot pool"):
        t.add_column(col, justify="right" if col in ("rubrics", "in few-shot pool") else "left")
    with store.session() as s:
        for status, origin, n, pooled in rubric_store.pool_counts(s):
            t.add_row(status, origin, str(n), str(pooled))
    return t


def _read(input_file: Path, limit: int | None, on_bad_row: str, require_rubric: bool) -> tuple[list, InputReport]:
    """The file's instructions up to ``limit`` (read no further), and what the reading passed over."""
    read = InputReport(str(input_file), on_bad_row, limit)  # type: ignore[arg-type]
    records = read_rubric_instructions(input_file, require_rubric=require_rubric, report=read)
    for line in read.lines():
        console.print(line, markup=False, highlight=False)
    return records, read


async def draft_command(settings: Settings, input_file: Path, dataset: str, limit: int | None,
                        reviewer: RubricReviewer | None, on_bad_row: str = "fail") -> None:
    records, read = _read(input_file, limit, on_bad_row, require_rubric=False)
    to_draft = [r for r in records if "rubric" not in r["payload"]]
    config = settings.rubrics
    if config.writer_model:
        settings = settings.model_copy(update={"judge_model": config.writer_model})
    async with pipeline_session(settings, warn_self_grading=False) as session:
        store = session.store
        seeded = seed_pool(store) if config.seed_pool else 0
        imported = import_rubrics(store, records)
        console.print(f"few-shot pool: {imported} rubrics from {input_file.name}"
                      + (f", {seeded} shipped examples" if seeded else ""))
        if not to_draft:
            console.print("every instruction in the file has a rubric: nothing to draft")
            return
        lock, stopped = asyncio.Lock(), [False]

        async def ask(interrupt: dict) -> ReviewDecision | None:
            async with lock:  # one question on the terminal at a time
                if stopped[0] or reviewer is None:
                    return None
                with store.session() as s:
                    record = rubric_store.rubric_by_id(s, interrupt["rubric_id"])
                try:
                    return await asyncio.to_thread(reviewer.decide, record)
                except QuitReview:
                    stopped[0] = True
                    console.print("review stopped: the other drafts wait for `carealign rubrics review`")
                    return None

        deps = RubricDraftDeps(store, session.engines.judge, config, settings.seed, dataset, ask)
        # a live progress bar and questions on the same terminal do not mix: inline review prints lines
        report = await session.run("rubrics draft", len(to_draft), [session.engines.judge],
                                   lambda on_item: run_rubric_drafts(deps, to_draft, session.run_config(),
                                                                     redo=session.redo, on_item=on_item),
                                   show_progress=not deps.review_inline)
        add_run_stats(store, report.run_id, {"input": read.stats()})
        s = report.summary
        # a skipped review counts as not done (the next run asks again), not as a failure worth alarm
        console.print(f"rubrics draft: {len(to_draft)} instructions without a rubric, {s.done + s.partial + s.failed} "
                      "processed now: " + (", ".join(f"{k}: {v}" for k, v in sorted(s.outcomes.items()))
                                           or "all done before"))
        console.print(pool_table(store))


def review_command(store: Store, reviewer: RubricReviewer, limit: int | None) -> dict[str, int]:
    with store.session() as s:
        queue = rubric_store.pending(s, limit)
    if not queue:
        console.print("no rubrics wait for review")

    def record(entry, decision: ReviewDecision) -> list[str]:
        done = apply_decision(store, entry.id, decision)
        console.print(f"rubric {entry.id}: {done.status}"
                      + (f" (now rubric {done.rubric_id})" if done.rubric_id != entry.id else ""))
        return [decision.decision]

    tally = review_queue(console, queue, reviewer.decide, record,
                         ReviewTally({"approve": 0, "edit": 0, "reject": 0, "skip": 0}))
    console.print("reviewed: " + tally.line())
    console.print(pool_table(store))
    return tally.counts


@rubrics_app.command("draft")
@handles_errors
def draft(
    input_file: Path = typer.Argument(..., help="JSONL of instructions (the rubric-prefs format; lines that "
                                      "carry a rubric join the few-shot pool instead of being drafted)"),
    judge_model: str | None = judge_model_option("rubric writer"),
    judge_base_url: list[str] | None = judge_base_url_option("rubric writer"),
    review: str | None = config_option(RubricDraftsConfig, "review", "--review"),
    reviewer: str | None = typer.Option(None, "--reviewer", help="reviewer name [default: the login name]"),
    fewshot_k: int | None = config_option(RubricDraftsConfig, "fewshot_k", "--fewshot-k"),
    dataset: str | None = dataset_option(),
    limit: int | None = limit_option("instructions"),
    seed: int | None = seed_option(),
    no_cache: bool = no_cache_option(),
    writer_model: str | None = hidden_alias("--writer-model"),
    on_bad_row: str = on_bad_row_option(),
) -> None:
    """Draft rubrics for instructions that have none; they wait for review (or are reviewed inline)."""
    judge_model = judge_model or deprecated(writer_model, "--writer-model", "--judge-model")
    settings = current().settings_with("rubrics", {"review": review, "fewshot_k": fewshot_k},
                                       judge_model=judge_model, judge_base_url=joined_urls(judge_base_url), seed=seed,
                                       cache=False if no_cache else None)
    if judge_model:  # the option names the writer for this run, over a writer_model setting
        settings = settings.model_copy(update={"rubrics": settings.rubrics.with_values(writer_model=judge_model)})
    terminal = (RubricReviewer(Prompter(console), reviewer_name(reviewer))
                if settings.rubrics.review == "inline" else None)
    asyncio.run(draft_command(settings, input_file, dataset or input_file.stem, check_limit(limit), terminal,
                              on_bad_row))


@rubrics_app.command("review")
@handles_errors
def review_cmd(
    reviewer: str | None = typer.Option(None, "--reviewer", help="reviewer name [default: the login name]"),
    limit: int | None = typer.Option(None, "--limit", min=1, help="review at most this many drafts"),
) -> None:
    """Page through drafts waiting for review: approve, edit (in $EDITOR) or reject, with a reason.
    Approved and edited rubrics join the few-shot pool for later drafts."""
    with current().existing_store() as store:
        review_command(store, RubricReviewer(Prompter(console), reviewer_name(reviewer)), limit)


@rubrics_app.command("import")
@handles_errors
def import_cmd(input_file: Path = typer.Argument(..., help="JSONL of instructions with rubrics"),
               limit: int | None = limit_option("instructions"), on_bad_row: str = on_bad_row_option()) -> None:
    """Add dataset rubrics to the few-shot pool (as approved)."""
    records, _ = _read(input_file, check_limit(limit), on_bad_row, require_rubric=True)
    with current().store() as store:
        n = import_rubrics(store, records)
    console.print(f"{n} rubrics from {input_file} are in the few-shot pool")


@rubrics_app.command("list")
@handles_errors
def list_cmd() -> None:
    """Rubrics in the store by status and origin."""
    with current().existing_store() as store:
        console.print(pool_table(store))
