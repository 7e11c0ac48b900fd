"""Tables for the terminal: run lists, one run in detail, a workflow's summary."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from graphs.runner import WorkflowReport
from store import Store, StoreError
from store.models import Candidate, CandidateScore, Judgment, LLMCall, PreferencePair, Run


def _tokens(usage: dict[str, Any]) -> tuple[int, int]:
    return (sum(u.get("prompt_tokens", 0) for u in usage.values()),
            sum(u.get("completion_tokens", 0) for u in usage.values()))


def summary_table(title: str, rows: list[tuple[str, str]]) -> Table:
    t = Table(title=title, show_header=False)
    t.add_column("what")
    t.add_column("value", justify="right")
    for k, v in rows:
        t.add_row(k, v)
    return t


def generate_summary_table(report: WorkflowReport, store: Store) -> Table:
    s = report.summary
    calls = sum(u["calls"] for u in report.usage.values())
    hits = sum(u["cache_hits"] for u in report.usage.values())
    failures = sum(u["failures"] for u in report.usage.values())
    retries = sum(u["retries"] for u in report.usage.values())
    pt, ct = _tokens(report.usage)
    with store.session() as sess:
        total_pairs = sess.scalar(select(func.count()).select_from(PreferencePair))
    return summary_table(f"generate: run {report.run_id}", [
        ("items in input", f"{report.items}"),
        ("items processed now", f"{s.done + s.failed} ({s.failed} failed)"),
        ("outcomes", ", ".join(f"{k}: {v}" for k, v in sorted(s.outcomes.items())) or "none (all done before)"),
        ("LLM calls made", f"{calls} ({retries} retries, {failures} failed)"),
        ("cache hits", f"{hits}"),
        ("tokens in / out", f"{pt:,} / {ct:,}"),
        ("new pairs", f"{report.new_pairs}"),
        ("pairs in store", f"{total_pairs}"),
        ("time", f"{s.seconds:.1f} s"),
        ("output tokens / s", f"{ct / s.seconds:.1f}" if s.seconds > 0 else "-"),
    ])


def rubric_prefs_table(report: WorkflowReport, store: Store) -> Table:
    """The rubric-prefs summary: what was kept, what was dropped and why, safety and cost."""
    s = report.summary
    calls = sum(u["calls"] for u in report.usage.values())
    hits = sum(u["cache_hits"] for u in report.usage.values())
    failures = sum(u["failures"] for u in report.usage.values())
    pt, ct = _tokens(report.usage)
    with store.session() as sess:
        scores = sess.execute(select(CandidateScore.s1, CandidateScore.s3, CandidateScore.judgment_ids)
                              .where(CandidateScore.job_key == report.job_key)).all()
    graded = len(scores)
    kept = {k: v for k, v in s.reasons.items() if not k.startswith("no pair")}
    dropped = {k.removeprefix("no pair: "): v for k, v in s.reasons.items() if k.startswith("no pair")}
    return summary_table(f"rubric-prefs: run {report.run_id}", [
        ("instructions", f"{report.items} ({s.done + s.failed} processed now, {s.failed} failed)"),
        ("candidates graded (this job)", f"{graded}"),
        ("judgments", f"{sum(len(j or []) for _, _, j in scores)}"),
        ("pairs kept", ", ".join(f"{k}: {v}" for k, v in sorted(kept.items())) or "0"),
        ("pairs dropped", ", ".join(f"{k}: {v}" for k, v in sorted(dropped.items())) or "0"),
        ("veto rate", f"{sum(1 for _, s3, _ in scores if s3 > 0) / graded:.1%}" if graded else "-"),
        ("mean S1", f"{sum(s1 for s1, _, _ in scores) / graded:.3f}" if graded else "-"),
        ("grader agreement", grader_agreement(store, report.job_key)),
        ("LLM calls made", f"{calls} ({failures} failed), {hits} cache hits"),
        ("tokens in / out", f"{pt:,} / {ct:,}"),
        ("time", f"{s.seconds:.1f} s"),
    ])


def grader_agreement(store: Store, job_key: str) -> str:
    """Share of (candidate, criterion) verdicts on which the two graders agree, and Cohen's kappa."""
    with store.session() as sess:
        cands = select(CandidateScore.candidate_id).where(CandidateScore.job_key == job_key)
        rows = sess.execute(select(Judgment.candidate_id, Judgment.details, Judgment.met)
                            .where(Judgment.candidate_id.in_(cands))).all()
    pairs: dict[tuple[int, str], dict[str, bool]] = {}
    for cid, details, met in rows:
        if details and "grader" in details:
            pairs.setdefault((cid, details["criterion_id"]), {})[details["grader"]] = bool(met)
    both = [(v["primary"], v["second"]) for v in pairs.values() if len(v) == 2]
    if not both:
        return "n/a (one grader)"
    n = len(both)
    observed = sum(a == b for a, b in both) / n
    p_a, p_b = sum(a for a, _ in both) / n, sum(b for _, b in both) / n
    expected = p_a * p_b + (1 - p_a) * (1 - p_b)
    kappa = (observed - expected) / (1 - expected) if expected < 1 else 1.0
    return f"{observed:.1%} of {n} verdicts (Cohen's kappa {kappa:.2f})"


def runs_table(store: Store, limit: int) -> Table:
    t = Table(title=f"runs in {store.safe_url}")
    for col in ("run", "kind", "status", "started", "seconds", "calls", "pairs", "code"):
        t.add_column(col, no_wrap=col in ("run", "started", "status"))
    with store.session() as s:
        for r in s.scalars(select(Run).order_by(Run.started_at.desc()).limit(limit)):
            secs = (r.finished_at - r.started_at).total_seconds() if r.finished_at else None
            usage = (r.stats or {}).get("usage", {})
            calls = sum(u.get("calls", 0) for u in usage.values())
            t.add_row(r.id[:12], r.kind, r.status, r.started_at.strftime("%m-%d %H:%M"),
                      f"{secs:.1f}" if secs is not None else "-", str(calls),
                      str((r.stats or {}).get("new_pairs", "-")), r.code_version.removeprefix("git:"))
    return t


def show_run(console: Console, store: Store, run_id: str) -> None:
    with store.session() as s:
        matches = s.scalars(select(Run).where(Run.id.startswith(run_id)).limit(2)).all() if run_id else []
        if len(matches) != 1:
            what = "several runs start with" if matches else "no run"
            raise StoreError(f"{what} {run_id!r} in {store.safe_url} (see `carealign runs list`)")
        run = matches[0]
        run_id = run.id
        counts = {
            "llm_calls": s.scalar(select(func.count()).select_from(LLMCall).where(LLMCall.run_id == run_id)),
            "failed llm_calls": s.scalar(select(func.count()).select_from(LLMCall)
                                         .where(LLMCall.run_id == run_id, LLMCall.ok.is_(False))),
            "candidates": s.scalar(select(func.count()).select_from(Candidate).where(Candidate.run_id == run_id)),
            "judgments": s.scalar(select(func.count()).select_from(Judgment).where(Judgment.run_id == run_id)),
            "pairs": s.scalar(select(func.count()).select_from(PreferencePair)
                              .where(PreferencePair.run_id == run_id)),
        }
        t = Table(title=f"run {run.id}", show_header=False)
        t.add_column("field")
        t.add_column("value")
        for k, v in [("kind", run.kind), ("status", run.status), ("job", run.job_key or "-"),
                     ("code", run.code_version), ("config hash", run.config_hash[:16]),
                     ("started", str(run.started_at)), ("finished", str(run.finished_at or "-")),
                     ("error", run.error or "-"), *[(k, str(v)) for k, v in counts.items()]]:
            t.add_row(k, v)
        console.print(t)
        console.print("[bold]config[/]")
        console.print_json(json.dumps(run.config))
        console.print("[bold]stats[/]")
        console.print_json(json.dumps(run.stats))
