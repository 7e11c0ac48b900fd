"""The queries of fact-checking (``graphs/factcheck``) and of its report (``benchmarks.factcheck_report``).

Every answer of every checker is a ``check_answers`` row, unique per (job, item, role, round,
agent); a method's results are those of its job. Functions return ids, plain values or detached
rows (read their columns, do not lazy-load).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, func, select

from store.db import Store, chunked
from store.errors import StoreError
from store.hot_path import execute_batch, insert_for
from store.models import CheckAnswer, Item, LLMCall, Run, WorkItem

AGENT_ROLES = ("agent", "specialist", "debater")  # the roles that answer in a round (not triage, final, judges)
ANSWER_KEY = ("job_key", "item_id", "role", "round", "agent")
JUDGE_ROLE = "location_judge"  # scores a method's answers (localisation 'llm'); not the method's compute


@dataclass(frozen=True)
class AnswerRow:
    """What the checking graph reads back of a stored answer (plain values, no ORM row)."""

    id: int
    job_key: str
    item_id: int
    role: str
    round: int
    agent: int
    verdict: str
    sentence_id: int | None
    span: str | None
    correction: str | None
    confidence: float | None
    reasoning: str | None
    details: dict[str, Any]

    @property
    def slot(self) -> tuple[Any, ...]:
        return self.job_key, self.item_id, self.role, self.round, self.agent


ANSWER_ROW_COLUMNS = (CheckAnswer.id, CheckAnswer.job_key, CheckAnswer.item_id, CheckAnswer.role, CheckAnswer.round,
                      CheckAnswer.agent, CheckAnswer.verdict, CheckAnswer.sentence_id, CheckAnswer.span,
                      CheckAnswer.correction, CheckAnswer.confidence, CheckAnswer.reasoning, CheckAnswer.details)


def insert_answers(store: Store, rows: Sequence[dict[str, Any]]) -> list[AnswerRow]:
    """Store a batch of answers (``store.batching``), idempotently: every answer whose slot (job,
    item, role, round, agent) is free is inserted, in one transaction; per row, the answer now
    stored in its slot (this one, or the one an earlier run stored there, which is kept)."""
    if not rows:
        return []
    stmt = insert_for(store, CheckAnswer).on_conflict_do_nothing(index_elements=list(ANSWER_KEY))
    with store.connection() as conn:
        stored = {a.slot: a for a in (AnswerRow(*r) for r in execute_batch(conn, stmt, ANSWER_ROW_COLUMNS, rows))}
        missing = [r for r in rows if tuple(r[k] for k in ANSWER_KEY) not in stored]
        if missing:  # stored before (a re-run), or PostgreSQL (no RETURNING): read them by slot
            q = select(*ANSWER_ROW_COLUMNS).where(CheckAnswer.job_key.in_({r["job_key"] for r in missing}),
                                                  CheckAnswer.item_id.in_({r["item_id"] for r in missing}))
            stored.update({a.slot: a for a in (AnswerRow(*r) for r in conn.execute(q))})
    return [stored[tuple(r[k] for k in ANSWER_KEY)] for r in rows]


def item_answers(store: Store, job_key: str, item_ids: Sequence[int]) -> list[list[AnswerRow]]:
    """Every answer stored for each of these texts under the job (one query), per text in the order given."""
    found: dict[int, list[AnswerRow]] = {i: [] for i in item_ids}
    with store.connection() as conn:
        for r in conn.execute(select(*ANSWER_ROW_COLUMNS).where(CheckAnswer.job_key == job_key,
                                                                CheckAnswer.item_id.in_(set(item_ids)))):
            found[r[2]].append(AnswerRow(*r))
    return [found[i] for i in item_ids]


def final_answers(store: Store, job_key: str) -> list[CheckAnswer]:
    """The method's final answer per text of the job."""
    with store.session() as s:
        rows = list(s.scalars(select(CheckAnswer).where(CheckAnswer.job_key == job_key, CheckAnswer.role == "final")))
        s.expunge_all()
    return rows


@dataclass
class JobAnswers:
    """Everything a fact-checking job stored: its runs, answers, the texts' payloads and its cost."""

    config: dict[str, Any]  # of the job's newest run
    run_ids: list[str]  # oldest first (an interrupted job resumed spans several runs)
    answers: list[CheckAnswer]
    payloads: dict[int, dict[str, Any]]  # item id -> payload (gold fields included), every queued text
    calls: int  # every call the method used: made by its runs (failed ones too) or behind its answers
    tokens: int  # prompt + completion tokens of those calls, repair rounds included
    failed_calls: int  # of those calls, the ones that failed (after retries and repairs)
    queued: int  # texts queued under the job
    texts: list[tuple[int, str]] = field(default_factory=list)  # (item id, the input's id), in input order
    attempts: int = 0  # HTTP requests behind those calls: retries and repair rounds included


def job_answers(store: Store, job_key: str) -> JobAnswers:
    with store.session() as s:
        runs = list(s.scalars(select(Run).where(Run.job_key == job_key, Run.kind == "factcheck")
                              .order_by(Run.started_at)))
        if not runs:
            raise StoreError(f"no fact-checking run with job key {job_key}")
        run_ids = [r.id for r in runs]
        rows = list(s.scalars(select(CheckAnswer).where(CheckAnswer.job_key == job_key)))
        # every queued text, answered or not, in the order the job queued them (the input's order)
        queue = s.execute(select(Item.id, Item.external_id, Item.payload).join(WorkItem, WorkItem.item_id == Item.id)
                          .where(WorkItem.job_key == job_key).order_by(WorkItem.id)).all()
        payloads = {i: p for i, _, p in queue}
        answered = {r.item_id for r in rows} - set(payloads)
        payloads.update({i.id: i.payload for i in s.scalars(select(Item).where(Item.id.in_(answered)))})
        # the calls a method used: every call its runs made (a call that failed validation and left no
        # answer costs as much as one that did), and those behind its answers that another method
        # made first (self-consistency sharing debate's round 0 samples, answered from the cache);
        # the location judge scores the method and is not part of it
        made = set(s.scalars(select(LLMCall.id).where(LLMCall.run_id.in_(run_ids),
                                                      LLMCall.role.is_distinct_from(JUDGE_ROLE))))
        used = made | {r.llm_call_id for r in rows if r.llm_call_id is not None and r.role != JUDGE_ROLE}
        calls = tokens = attempts = failed = 0
        for chunk in chunked(sorted(used)):
            n, t, a, f = s.execute(select(
                func.count(LLMCall.id), func.coalesce(func.sum(LLMCall.prompt_tokens + LLMCall.completion_tokens), 0),
                func.coalesce(func.sum(LLMCall.attempts), 0),
                func.coalesce(func.sum(case((LLMCall.ok.is_(False), 1), else_=0)), 0),
            ).where(LLMCall.id.in_(chunk))).one()
            calls, tokens, attempts, failed = calls + n, tokens + t, attempts + a, failed + f
        config = dict(runs[-1].config)
        s.expunge_all()
    texts = [(i, ext or f"item-{i}") for i, ext, _ in queue]
    return JobAnswers(config, run_ids, rows, payloads, int(calls), int(tokens), int(failed), len(queue), texts,
                      int(attempts))



def job_keys_of(store: Store, run_ids: list[str]) -> list[str]:
    """The jobs behind the given runs (id prefixes, in the given order), or those of the newest
    fact-checking run's batch."""
    with store.session() as s:
        if run_ids:
            keys = []
            for rid in run_ids:
                run = s.scalars(select(Run).where(Run.id.startswith(rid), Run.kind == "factcheck")).all()
                if len(run) != 1:
                    raise StoreError(f"{rid!r} names {len(run)} fact-checking runs; give a longer or another run id "
                                     "(see `carealign runs list`)")
                keys.append(run[0].job_key)
            return list(dict.fromkeys(keys))
        return list(dict.fromkeys(r.job_key for r in _newest_batch(s)))


def _newest_batch(s) -> list[Run]:
    """The runs of the newest fact-checking run's batch (``factcheck run`` runs every method of one
    invocation as one batch), oldest first."""
    newest = s.scalars(select(Run).where(Run.kind == "factcheck").order_by(Run.started_at.desc()).limit(1)).first()
    if newest is None:
        raise StoreError("the store has no fact-checking runs: run `carealign factcheck run` first")
    batch = newest.config.get("batch")
    runs = s.scalars(select(Run).where(Run.kind == "factcheck").order_by(Run.started_at)).all()
    return [r for r in runs if batch and r.config.get("batch") == batch] or [newest]


def batch_methods(store: Store) -> list[tuple[str, str, str]]:
    """(job key, method, checker model) of each job of the newest batch, in the order they ran."""
    with store.session() as s:
        jobs = {r.job_key: (r.job_key, str(r.config.get("method", "?")), str(r.config.get("checker_model") or ""))
                for r in _newest_batch(s)}
    return list(jobs.values())
