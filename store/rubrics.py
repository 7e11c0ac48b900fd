"""Rubrics in the store: drafts, reviews, and the few-shot pool they feed.

A rubric belongs to an instruction by the hash of its conversation, not to an item: the same
question read from another file (another dataset, another item) finds the rubric a reviewer
already approved. Decisions are conditional updates (``WHERE status = 'pending'``), so two
reviewers deciding the same draft at once cannot both succeed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from store.db import Store, insert_ignore
from store.errors import StoreError
from store.models import RubricRecord, RubricReview
from store.records import sha256_of

PENDING, APPROVED, REJECTED, EDITED = "pending", "approved", "rejected", "edited"
DECISIONS = ("approve", "edit", "reject")


def instruction_hash(conversation: list[dict[str, Any]]) -> str:
    """The key that ties a rubric to its instruction: roles and contents of the conversation."""
    return sha256_of([{"role": m["role"], "content": m["content"]} for m in conversation])


def add_rubric(session: Session, *, instruction: list[dict[str, Any]], rubric: dict[str, Any], origin: str,
               status: str, in_pool: bool, **fields: Any) -> int:
    """Store a rubric once per (instruction, rubric content); returns its id (the existing row's
    id when the same rubric was stored before for this instruction)."""
    ihash, rhash = instruction_hash(instruction), sha256_of(rubric)
    insert_ignore(session, RubricRecord, [{
        "instruction_hash": ihash, "instruction": instruction, "rubric": rubric, "rubric_hash": rhash,
        "origin": origin, "status": status, "in_pool": in_pool, **fields,
    }], ["instruction_hash", "rubric_hash"])
    return int(session.scalar(select(RubricRecord.id).where(RubricRecord.instruction_hash == ihash,
                                                            RubricRecord.rubric_hash == rhash)))


def current_rubric(session: Session, ihash: str) -> RubricRecord | None:
    """The rubric an instruction uses now: the newest approved one, else the newest pending draft."""
    return session.scalars(
        select(RubricRecord)
        .where(RubricRecord.instruction_hash == ihash, RubricRecord.status.in_([APPROVED, PENDING]))
        .order_by(case((RubricRecord.status == APPROVED, 0), else_=1), RubricRecord.id.desc())
        .limit(1)
    ).first()


def approved_rubric(session: Session, ihash: str) -> RubricRecord | None:
    found = current_rubric(session, ihash)
    return found if found is not None and found.status == APPROVED else None


def rejections(session: Session, ihash: str) -> list[tuple[int, str | None]]:
    """(rubric id, reviewer's reason) of each rejected draft for the instruction, oldest first."""
    rows = session.execute(
        select(RubricRecord.id, RubricReview.reason)
        .join(RubricReview, RubricReview.rubric_id == RubricRecord.id)
        .where(RubricRecord.instruction_hash == ihash, RubricReview.decision == "reject")
        .order_by(RubricRecord.id)
    ).all()
    return [(int(r.id), r.reason) for r in rows]


def pool(session: Session, limit: int = 2000) -> list[RubricRecord]:
    """Few-shot pool: approved rubrics (dataset, reviewed drafts, human edits), newest first."""
    return list(session.scalars(
        select(RubricRecord).where(RubricRecord.in_pool.is_(True)).order_by(RubricRecord.id.desc()).limit(limit)
    ))


def pending(session: Session, limit: int | None = None) -> list[RubricRecord]:
    stmt = select(RubricRecord).where(RubricRecord.status == PENDING).order_by(RubricRecord.id)
    return list(session.scalars(stmt.limit(limit) if limit else stmt))


@dataclass(frozen=True)
class Decided:
    review_id: int
    rubric_id: int  # the rubric now in use: the draft itself (approve) or its edit
    status: str


def decide(session: Session, rubric_id: int, decision: str, reviewer: str, reason: str | None = None,
           edited: dict[str, Any] | None = None) -> Decided:
    """Record a reviewer's decision on a pending rubric. ``approve`` puts it in the pool; ``edit``
    stores ``edited`` as a new, approved, pooled rubric (origin ``human_edited``) and marks the draft
    ``edited``; ``reject`` keeps it out of use. Raises ``StoreError`` if the rubric is not pending."""
    if decision not in DECISIONS:
        raise ValueError(f"unknown decision {decision!r}; choose one of {', '.join(DECISIONS)}")
    if (decision == "edit") != (edited is not None):
        raise ValueError("an edited rubric is given with, and only with, the 'edit' decision")
    if decision != "approve" and not (reason or "").strip():
        raise ValueError(f"a reason is required to {decision} a rubric")
    new_status = {"approve": APPROVED, "edit": EDITED, "reject": REJECTED}[decision]
    changed = session.execute(
        update(RubricRecord).where(RubricRecord.id == rubric_id, RubricRecord.status == PENDING)
        .values(status=new_status, in_pool=decision == "approve")
    ).rowcount
    draft = session.get(RubricRecord, rubric_id)
    if draft is None:
        raise StoreError(f"no rubric with id {rubric_id}")
    if not changed:
        raise StoreError(f"rubric {rubric_id} was already decided (it is {draft.status}); nothing recorded")
    in_use = rubric_id
    if edited is not None:
        if sha256_of(edited) == draft.rubric_hash:
            raise ValueError(f"the edit of rubric {rubric_id} changes nothing: approve it instead")
        in_use = add_rubric(session, instruction=draft.instruction, rubric=edited, origin="human_edited",
                            status=APPROVED, in_pool=True, reference=draft.reference, parent_id=rubric_id,
                            item_id=draft.item_id, language=draft.language)
        session.execute(update(RubricRecord).where(RubricRecord.id == in_use)
                        .values(status=APPROVED, in_pool=True))
    review = RubricReview(rubric_id=rubric_id, decision=decision, reason=reason, reviewer=reviewer,
                          result_rubric_id=in_use if decision != "reject" else None)
    session.add(review)
    session.flush()
    return Decided(review.id, in_use, new_status)


def pool_counts(session: Session) -> list[tuple[str, str, int, int]]:
    """(status, origin, rubrics, of which in the few-shot pool), by status and origin."""
    rows = session.execute(select(RubricRecord.status, RubricRecord.origin, func.count(),
                                  func.sum(case((RubricRecord.in_pool.is_(True), 1), else_=0)))
                           .group_by(RubricRecord.status, RubricRecord.origin).order_by(RubricRecord.status)).all()
    return [(status, origin, int(n), int(pooled or 0)) for status, origin, n, pooled in rows]


def rubric_by_id(session: Session, rubric_id: int) -> RubricRecord | None:
    return session.get(RubricRecord, rubric_id)


def approved_rubric_lookup(store: Store) -> Callable[[list[dict[str, Any]]], tuple[int, dict] | None] | None:
    """For instructions given without a rubric: the one a reviewer approved, if the store has it
    (a store that does not exist yet, or predates rubrics, has none; nothing is created here)."""
    if not store.has_table("rubrics"):
        return None

    def lookup(conversation: list[dict[str, Any]]) -> tuple[int, dict] | None:
        with store.session() as s:
            found = approved_rubric(s, instruction_hash(conversation))
            return (found.id, found.rubric) if found is not None else None

    return lookup
