"""Tables for the terminal: run lists, one run in detail, the workflows' summaries.

Presentation only: the numbers come from ``store.run_reports`` and the workflow's report."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from benchmarks.metrics import binary_agreement
from graphs.common.runner import WorkflowReport
from graphs.common.workers import run_is_dead
from store import Store
from store.run_reports import (
    find_run,
    job_scores,
    pair_count,
    recent_runs,
    run_counts,
    second_grader_verdicts,
    unfinished_items,
)


def _tokens(usage: dict[str, Any]) -> tuple[int, int]:
    return (sum(u.get("prompt_tokens", 0) for u in usage.values()),
            sum(u.get("completion_tokens", 0) for u in usage.values()))


def _usage_total(usage: dict[str, Any], key: str) -> int:
    return sum(u.get(key, 0) for u in usage.values())


def summary_table(title: str, rows: list[tuple[str, str]]) -> Table:
    t = Table(title=title, show_header=False)
    t.add_column("what")
    t.add_column("value", justify="right")
    for k, v in rows:
        t.add_row(k, v)
    return t


def rows_table(title: str, head: list[str], rows: list[list[str]], left: tuple[str, ...] = ()) -> Table:
    """A table with a header; columns named in ``left`` (and the first) are left-aligned."""
    t = Table(title=title)
    for i, h in enumerate(head):
        t.add_column(h, justify="left" if i == 0 or h in left else "right")
    for row in rows:
        t.add_row(*row)
    return t


def failures_table(report: WorkflowReport) -> Table:
    """Why items did not end done: the top reasons (numbers masked), with counts and one item each."""
    s = report.summary
    t = Table(title=f"{s.partial + s.failed} items not done (run {report.run_id[:12]}): top reasons; "
                    f"`carealign runs show {report.run_id[:12]} --errors` lists them all")
    t.add_column("items", justify="right")
    t.add_column("reason", overflow="fold")
    t.add_column("e.g. item", justify="right")
    for _, group in s.top_failures():
        t.add_row(str(group.count), escape(group.example), str(group.example_item_id))
    return t


def generate_summary_table(report: WorkflowReport, store: Store) -> Table:
    s, u = report.summary, report.usage
    pt, ct = _tokens(u)
    return summary_table(f"generate: run {report.run_id}", [
        ("items in input", f"{report.items}"),
        ("items processed now", f"{s.done + s.partial + s.failed} ({s.partial} partial, {s.failed} failed)"),
        ("outcomes", ", ".join(f"{k}: {v}" for k, v in sorted(s.outcomes.items())) or "none (all done before)"),
        ("LLM calls made", f"{_usage_total(u, 'calls')} ({_usage_total(u, 'retries')} retries, "
                           f"{_usage_total(u, 'failures')} failed)"),
        ("cache hits", f"{_usage_total(u, 'cache_hits')}"),
        ("tokens in / out", f"{pt:,} / {ct:,}"),
        ("new pairs", f"{report.new_pairs}"),
        ("pairs in store", f"{pair_count(store)}"),
        ("time", f"{s.seconds:.1f} s"),
        ("output tokens / s", f"{ct / s.seconds:.1f}" if s.seconds > 0 else "-"),
    ])


def grader_agreement(store: Store, job_key: str) -> str:
    """Share of (candidate, criterion) verdicts on which the two graders agree, and Cohen's kappa."""
    both = second_grader_verdicts(store, job_key)
    if not both:
        return "n/a (one grader)"
    observed, kappa = binary_agreement(both)
    return f"{observed:.1%} of {len(both)} verdicts (Cohen's kappa {kappa:.2f})"


def rubric_prefs_table(report: WorkflowReport, store: Store) -> Table:
    """The rubric-prefs summary: what was kept, what was dropped and why, safety and cost."""
    s, u = report.summary, report.usage
    pt, ct = _tokens(u)
    scores = job_scores(store, report.job_key)
    graded = len(scores)
    kept = {k: v for k, v in s.reasons.items() if not k.startswith("no pair")}
    dropped = {k.removeprefix("no pair: "): v for k, v in s.reasons.items() if k.startswith("no pair")}
    return summary_table(f"rubric-prefs: run {report.run_id}", [
        ("instructions", f"{report.items} ({s.done + s.partial + s.failed} processed now, {s.partial} partial, "
                         f"{s.failed} failed)"),
        ("candidates graded (this job)", f"{graded}"),
        ("judgments", f"{sum(x.judgments for x in scores)}"),
        ("pairs kept", ", ".join(f"{k}: {v}" for k, v in sorted(kept.items())) or "0"),
        ("pairs dropped", ", ".join(f"{k}: {v}" for k, v in sorted(dropped.items())) or "0"),
        ("veto rate", f"{sum(1 for x in scores if x.s3 > 0) / graded:.1%}" if graded else "-"),
        ("mean S1", f"{sum(x.s1 for x in scores) / graded:.3f}" if graded else "-"),
        ("grader agreement", grader_agreement(store, report.job_key)),
        ("LLM calls made", f"{_usage_total(u, 'calls')} ({_usage_total(u, 'failures')} failed), "
                           f"{_usage_total(u, 'cache_hits')} cache hits"),
        ("tokens in / out", f"{pt:,} / {ct:,}"),
        ("time", f"{s.seconds:.1f} s"),
    ])


def runs_table(store: Store, limit: int) -> Table:
    """The newest runs; a ``running`` run whose process is gone shows as ``dead``."""
    t = Table(title=f"runs in {store.safe_url}")
    for col in ("run", "kind", "status", "started", "seconds", "calls", "pairs", "code"):
        t.add_column(col, no_wrap=col in ("run", "started", "status"))
    for r in recent_runs(store, limit):
        secs = (r.finished_at - r.started_at).total_seconds() if r.finished_at else None
        usage = (r.stats or {}).get("usage", {})
        status = "dead" if r.status == "running" and run_is_dead(r.stats) else r.status
        t.add_row(r.id[:12], r.kind, status, r.started_at.strftime("%m-%d %H:%M"),
                  f"{secs:.1f}" if secs is not None else "-", str(_usage_total(usage, "calls")),
                  str((r.stats or {}).get("new_pairs", "-")), r.code_version.removeprefix("git:"))
    return t


def show_run(console: Console, store: Store, run_id: str, *, errors: bool = False, config: bool = False) -> None:
    """One run: what it is and did, why items failed; the item-by-item errors and the full config
    only when asked (``--errors``, ``--config``)."""
    run = find_run(store, run_id)
    stats = run.stats or {}
    status = "dead" if run.status == "running" and run_is_dead(stats) else run.status
    t = Table(title=f"run {run.id}", show_header=False)
    t.add_column("field")
    t.add_column("value", overflow="fold")
    inputs = stats.get("input_items") or {}
    for k, v in [("kind", run.kind), ("status", status), ("job", run.job_key or "-"),
                 ("code", run.code_version), ("config hash", run.config_hash[:16]),
                 ("started", str(run.started_at)), ("finished", str(run.finished_at or "-")),
                 ("error", run.error or "-"),
                 ("input items", ", ".join(f"{k}: {v}" for k, v in inputs.items()) or "-"),
                 ("processed now", f"{stats.get('done', 0)} done, {stats.get('partial', 0)} partial, "
                                   f"{stats.get('failed', 0)} failed" if "done" in stats else "-"),
                 *[(k, str(v)) for k, v in run_counts(store, run.id).items()]]:
        t.add_row(k, escape(str(v)))
    console.print(t)
    failures = stats.get("failures") or {}
    if failures:
        console.print(rows_table("why items were not done (top reasons)", ["items", "reason", "e.g. item"],
                                 [[str(g["count"]), escape(g["example"]), str(g["example_item_id"])]
                                  for g in failures.values()], left=("reason",)))
    if errors:
        rows = unfinished_items(store, run.id)
        console.print(rows_table(f"{len(rows)} failed or partial items of this run", ["item", "status", "reason"],
                                 [[str(w.item_id), w.status, escape(w.error or "-")] for w in rows],
                                 left=("status", "reason")))
    if config:
        console.print("[bold]config[/]")
        console.print_json(json.dumps(run.config))
    else:
        console.print("(the full config: --config)")
