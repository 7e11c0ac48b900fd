"""Reads behind the run tables and summaries: recent runs, one run's counts, a job's scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from store.db import Store
from store.errors import StoreError
from store.models import Candidate, CandidateScore, Judgment, LLMCall, PreferencePair, Run, WorkItem
from store.queue import FAILED, PARTIAL


def pair_count(store: Store) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(PreferencePair)))


def recent_runs(store: Store, limit: int) -> list[Run]:
    with store.session() as s:
        rows = s.scalars(select(Run).order_by(Run.started_at.desc()).limit(limit)).all()
        s.expunge_all()
    return list(rows)


def find_run(store: Store, prefix: str) -> Run:
    """The one run whose id starts with ``prefix`` (an error names the store when none or several do)."""
    with store.session() as s:
        matches = s.scalars(select(Run).where(Run.id.startswith(prefix)).limit(2)).all() if prefix else []
        if len(matches) != 1:
            what = "several runs start with" if matches else "no run"
            raise StoreError(f"{what} {prefix!r} in {store.safe_url} (see `carealign runs list`)")
        s.expunge_all()
    return matches[0]


def run_counts(store: Store, run_id: str) -> dict[str, int]:
    """What a run produced, by table."""
    def count(model: Any, *where: Any) -> int:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)))

    with store.session() as s:
        return {
            "llm_calls": count(LLMCall, LLMCall.run_id == run_id),
            "failed llm_calls": count(LLMCall, LLMCall.run_id == run_id, LLMCall.ok.is_(False)),
            "candidates": count(Candidate, Candidate.run_id == run_id),
            "judgments": count(Judgment, Judgment.run_id == run_id),
            "pairs": count(PreferencePair, PreferencePair.run_id == run_id),
        }


@dataclass(frozen=True)
class JobScore:
    s1: float
    s3: int
    judgments: int


def job_scores(store: Store, job_key: str) -> list[JobScore]:
    """S1 / S3 and the number of judgments of every candidate graded in a rubric-prefs job."""
    with store.session() as s:
        rows = s.execute(select(CandidateScore.s1, CandidateScore.s3, CandidateScore.judgment_ids)
                         .where(CandidateScore.job_key == job_key)).all()
    return [JobScore(s1, s3, len(j or [])) for s1, s3, j in rows]


def second_grader_verdicts(store: Store, job_key: str) -> list[tuple[bool, bool]]:
    """(primary, second) verdicts on the same candidate and criterion, for a job graded twice."""
    with store.session() as s:
        cands = select(CandidateScore.candidate_id).where(CandidateScore.job_key == job_key)
        rows = s.execute(select(Judgment.candidate_id, Judgment.details, Judgment.met)
                         .where(Judgment.candidate_id.in_(cands))).all()
    by_key: dict[tuple[int, str], dict[str, bool]] = {}
    for cid, details, met in rows:
        if details and "grader" in details:
            by_key.setdefault((cid, details["criterion_id"]), {})[details["grader"]] = bool(met)
    return [(v["primary"], v["second"]) for v in by_key.values() if len(v) == 2]


def pairs_of_run(session: Any, run_id: str) -> int:
    """Preference pairs a run stored (its own, not those of earlier runs of the same job)."""
    return int(session.scalar(select(func.count()).select_from(PreferencePair).where(PreferencePair.run_id == run_id)))


def unfinished_items(store: Store, run_id: str, limit: int | None = None) -> list[WorkItem]:
    """The failed and partial items a run processed, with their reasons (``runs show --errors``)."""
    with store.session() as s:
        q = (select(WorkItem).where(WorkItem.run_id == run_id, WorkItem.status.in_((FAILED, PARTIAL)))
             .order_by(WorkItem.id))
        rows = s.scalars(q.limit(limit) if limit else q).all()
        s.expunge_all()
    return list(rows)


def add_run_stats(store: Store, run_id: str, extra: dict[str, Any]) -> None:
    """Merge ``extra`` into a run's stats: what the command knows and the runner does not, such as
    the input file's blank and skipped rows (``input``). Keys already there are replaced."""
    with store.session() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise StoreError(f"run {run_id} is not in {store.safe_url}")
        run.stats = {**(run.stats or {}), **extra}
