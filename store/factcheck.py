"""The queries of fact-checking (``graphs/factcheck``) and of its report (``benchmarks.factcheck_report``).

Every answer of every checker is a ``check_answers`` row, unique per (job, item, role, round,
agent); a method's results are those of its job. Functions return ids, plain values or detached
rows (read their columns, do not lazy-load).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from store.db import Store, insert_ignore
from store.errors import StoreError
from store.models import CheckAnswer, Item, LLMCall, Run, WorkItem

AGENT_ROLES = ("agent", "specialist", "debater")  # the roles that answer in a round (not triage, final, judges)
ANSWER_KEY = ("job_key", "item_id", "role", "round", "agent")


def save_answer(store: Store, row: dict[str, Any]) -> int:
    """Store one answer (idempotent: an answer already stored under its key is kept) and return its id."""
    with store.session() as s:
        insert_ignore(s, CheckAnswer, [row], list(ANSWER_KEY))
        return int(s.scalar(select(CheckAnswer.id).where(*(getattr(CheckAnswer, k) == row[k] for k in ANSWER_KEY))))


def round_answers(store: Store, job_key: str, item_id: int, round_: int) -> list[CheckAnswer]:
    """The agents' answers to one text in one round, in agent order."""
    with store.session() as s:
        rows = list(s.scalars(select(CheckAnswer).where(
            CheckAnswer.job_key == job_key, CheckAnswer.item_id == item_id, CheckAnswer.round == round_,
            CheckAnswer.role.in_(AGENT_ROLES)).order_by(CheckAnswer.agent)))
        s.expunge_all()
    return rows


def answer(store: Store, answer_id: int) -> CheckAnswer:
    with store.session() as s:
        row = s.get(CheckAnswer, answer_id)
        if row is None:
            raise StoreError(f"check answer {answer_id} is not in the store")
        s.expunge(row)
    return row


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
    calls: int  # the calls behind the answers, cached ones included
    tokens: int
    failed_calls: int  # failed calls made by the job's runs
    queued: int  # texts queued under the job
    texts: list[tuple[int, str]] = field(default_factory=list)  # (item id, the input's id), in input order


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
        # the calls a method used are those behind its answers: a request another method already made
        # (self-consistency sharing debate's round 0 samples) is answered from the cache but still counts
        used = {r.llm_call_id for r in rows if r.llm_call_id is not None}
        calls, tokens = s.execute(select(
            func.count(LLMCall.id), func.coalesce(func.sum(LLMCall.prompt_tokens + LLMCall.completion_tokens), 0),
        ).where(LLMCall.id.in_(used))).one()
        failed = s.scalar(select(func.count(LLMCall.id)).where(LLMCall.run_id.in_(run_ids), LLMCall.ok.is_(False)))
        config = dict(runs[-1].config)
        s.expunge_all()
    texts = [(i, ext or f"item-{i}") for i, ext, _ in queue]
    return JobAnswers(config, run_ids, rows, payloads, int(calls), int(tokens), int(failed or 0), len(queue), texts)


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
