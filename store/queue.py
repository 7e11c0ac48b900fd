"""A work queue in the store, so several worker processes share one job without overlap.

A job (identified by ``job_key``: the workflow plus the config that shapes its output) has one row
per item. Workers claim pending rows with a single ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE
SKIP LOCKED) RETURNING``: on PostgreSQL concurrent claimers skip each other's locked rows; on SQLite
the statement is atomic because SQLite serialises writers. A claim whose worker died is taken over
once its lease has expired, or at once by a worker on the same host that sees its process is gone.

An item ends ``done`` (all of its planned work is stored), ``partial`` (some of it is stored, the rest
failed with the reason in ``error``) or ``failed``; a re-run of the job retries partial and failed
items, and answers the work already done from the request cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from store.db import Store, insert_ignore
from store.models import WorkItem

PENDING, CLAIMED, DONE, PARTIAL, FAILED = "pending", "claimed", "done", "partial", "failed"
FINISHED = (DONE, PARTIAL, FAILED)


def enqueue(session: Session, job_key: str, item_ids: Sequence[int]) -> None:
    """Add items to a job; items already queued (in any state) are left as they are."""
    insert_ignore(
        session, WorkItem, [{"job_key": job_key, "item_id": i, "status": PENDING} for i in item_ids],
        ["job_key", "item_id"],
    )


def retry_failed(session: Session, job_key: str) -> int:
    """Put a job's failed and partial items back to pending (a re-run retries what failed before)."""
    res = session.execute(
        update(WorkItem)
        .where(WorkItem.job_key == job_key, WorkItem.status.in_((FAILED, PARTIAL)))
        .values(status=PENDING, error=None)
    )
    return int(res.rowcount or 0)


def claim(
    session: Session, job_key: str, worker: str, limit: int, lease_seconds: float = 600.0,
    run_id: str | None = None,
) -> list[tuple[int, int]]:
    """Claim up to ``limit`` items of a job for ``worker``; returns ``(work_id, item_id)`` pairs."""
    now = datetime.now(UTC)
    stale = now - timedelta(seconds=lease_seconds)
    candidates = (
        select(WorkItem.id)
        .where(
            WorkItem.job_key == job_key,
            or_(
                WorkItem.status == PENDING,
                (WorkItem.status == CLAIMED) & (WorkItem.claimed_at < stale),
            ),
        )
        .order_by(WorkItem.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    stmt = (
        update(WorkItem)
        .where(WorkItem.id.in_(candidates))
        .values(status=CLAIMED, claimed_by=worker, claimed_at=now, attempts=WorkItem.attempts + 1,
                run_id=run_id)
        .returning(WorkItem.id, WorkItem.item_id)
    )
    rows = session.execute(stmt).all()
    return sorted((int(w), int(i)) for w, i in rows)


def renew(session: Session, work_ids: Sequence[int], worker: str) -> None:
    """Extend a worker's claims (its lease heartbeat)."""
    session.execute(
        update(WorkItem)
        .where(WorkItem.id.in_(list(work_ids)), WorkItem.claimed_by == worker, WorkItem.status == CLAIMED)
        .values(claimed_at=datetime.now(UTC))
    )


def complete(session: Session, work_id: int, worker: str, error: str | None = None, status: str | None = None) -> bool:
    """Mark a claimed item done, or partial / failed with its reason. Only the claiming worker may:
    returns False when the claim is no longer this worker's (its lease ran out and was taken over)."""
    status = status or (FAILED if error else DONE)
    if status not in FINISHED:
        raise ValueError(f"an item cannot end {status!r}")
    if status != DONE and not error:
        raise ValueError(f"a {status} item needs its reason")
    res = session.execute(
        update(WorkItem)
        .where(WorkItem.id == work_id, WorkItem.claimed_by == worker)
        .values(status=status, error=error)
    )
    return bool(res.rowcount)


def complete_many(store: Store, worker: str, outcomes: Sequence[tuple[int, str | None, str | None]]) -> list[bool]:
    """``complete`` for several items of one worker in one transaction (no ORM session): each of
    ``(work_id, error, status)``; per item, whether the claim was still this worker's. Items that
    end the same way share one ``UPDATE ... RETURNING``."""
    groups: dict[tuple[str, str | None], list[int]] = {}
    for work_id, error, status in outcomes:
        _check_end(error, status)
        groups.setdefault((status or (FAILED if error else DONE), error), []).append(work_id)
    kept: set[int] = set()
    with store.connection() as conn:
        for (status, error), ids in groups.items():
            kept.update(conn.execute(
                update(WorkItem).where(WorkItem.id.in_(ids), WorkItem.claimed_by == worker)
                .values(status=status, error=error).returning(WorkItem.id)).scalars())
    return [work_id in kept for work_id, _, _ in outcomes]


def _check_end(error: str | None, status: str | None) -> None:
    status = status or (FAILED if error else DONE)
    if status not in FINISHED:
        raise ValueError(f"an item cannot end {status!r}")
    if status != DONE and not error:
        raise ValueError(f"a {status} item needs its reason")


def progress(session: Session, job_key: str, item_ids: Sequence[int] | None = None) -> dict[str, int]:
    """Items of a job by status (only ``item_ids`` when given: one run's input)."""
    q = select(WorkItem.status, func.count()).where(WorkItem.job_key == job_key)
    if item_ids is not None:
        q = q.where(WorkItem.item_id.in_(set(item_ids)))
    counts = {PENDING: 0, CLAIMED: 0, DONE: 0, PARTIAL: 0, FAILED: 0}
    counts.update({s: int(n) for s, n in session.execute(q.group_by(WorkItem.status))})
    return counts


@dataclass(frozen=True)
class Hold:
    """Items of a job claimed by another worker, and when the newest of those claims was renewed."""

    worker: str
    items: int
    renewed_at: datetime


def held_by_others(session: Session, job_key: str, worker: str) -> list[Hold]:
    rows = session.execute(
        select(WorkItem.claimed_by, func.count(), func.max(WorkItem.claimed_at))
        .where(WorkItem.job_key == job_key, WorkItem.status == CLAIMED, WorkItem.claimed_by != worker)
        .group_by(WorkItem.claimed_by)
    ).all()
    return [Hold(str(w), int(n), _aware(at)) for w, n, at in rows]


def claimants(session: Session) -> list[str]:
    """Every worker that holds a claim now (any job)."""
    return [str(w) for w in session.scalars(
        select(WorkItem.claimed_by).where(WorkItem.status == CLAIMED).distinct()) if w]


def _aware(at: datetime | None) -> datetime:
    """SQLite gives naive datetimes back; they are UTC."""
    if at is None:
        return datetime.now(UTC)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def requeue_done(session: Session, job_key: str) -> int:
    """Put every finished item of a job back to pending (to redo the job, e.g. with the cache off)."""
    res = session.execute(
        update(WorkItem).where(WorkItem.job_key == job_key, WorkItem.status == DONE).values(status=PENDING)
    )
    return int(res.rowcount or 0)


def release(session: Session, worker: str, work_ids: Sequence[int] | None = None) -> int:
    """Hand a worker's unfinished claims (those of ``work_ids``, or all of them: its process is gone)
    back to the queue at once, instead of waiting for their lease; returns how many."""
    if work_ids is not None and not work_ids:
        return 0
    q = update(WorkItem).where(WorkItem.claimed_by == worker, WorkItem.status == CLAIMED)
    if work_ids is not None:
        q = q.where(WorkItem.id.in_(work_ids))
    res = session.execute(q.values(status=PENDING, claimed_by=None, claimed_at=None))
    return int(res.rowcount or 0)
