"""The review web app's rows: accounts, review slots (N independent reviewers per item), pair flags,
and the lean reads its pages need.

Three queues share one slot table, each naming its items by an existing row's id:

    rubric   a pending draft          ``rubrics.id``   (decided through ``store.rubrics.decide``)
    variant  a panel decision         ``judgments.id`` (factbench review judgments, ``store.factbench``)
    pair     a preference pair        ``preference_pairs.id`` (a wrong pair gets a ``pair_flags`` row)

An item needs ``needed`` reviews. A reviewer claims the lowest free slot number of the first open
item they have not reviewed; the unique keys (queue, item, slot) and (queue, item, user) make two
reviewers never share a slot and one reviewer never review an item twice, whatever the timing (a lost
race is retried on the next item). A slot not decided within the claim time is taken back at the next
claim. Reads return plain dicts, never ORM rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, case, delete, exists, func, select, update
from sqlalchemy.exc import IntegrityError

from store.db import Store
from store.errors import StoreError
from store.factbench import DECISION_KIND, round_checks
from store.models import (
    Candidate,
    CandidateScore,
    Item,
    Judgment,
    PairFlag,
    PreferencePair,
    ReviewSlot,
    ReviewUser,
    RubricRecord,
    utcnow,
)
from store.rubrics import PENDING

QUEUES = ("rubric", "variant", "pair")
ROLES = ("reviewer", "admin")
ASSIGNED, DONE = "assigned", "done"


@dataclass(frozen=True)
class Account:
    id: int
    name: str
    role: str
    password_hash: str
    active: bool
    must_change_password: bool
    password_epoch: int = 0  # sessions remember it: a reset or the user's own change ends the older ones


def _account(u: ReviewUser) -> Account:
    return Account(int(u.id), u.name, u.role, u.password_hash, bool(u.active), bool(u.must_change_password),
                   int(u.password_epoch or 0))


# -- accounts ---------------------------------------------------------------------------------------
def add_user(store: Store, name: str, role: str, password_hash: str) -> int:
    """A new account; the caller hashes the password (argon2). A taken name is a ``StoreError``."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    if not name.strip():
        raise ValueError("a user name cannot be empty")
    with store.session() as s:
        if s.scalar(select(ReviewUser.id).where(ReviewUser.name == name)) is not None:
            raise StoreError(f"user {name!r} already exists")
        user = ReviewUser(name=name, role=role, password_hash=password_hash, active=True, must_change_password=True)
        s.add(user)
        s.flush()
        return int(user.id)


def user_by_name(store: Store, name: str) -> Account | None:
    with store.session() as s:
        u = s.scalars(select(ReviewUser).where(ReviewUser.name == name)).first()
        return _account(u) if u is not None else None


def user_by_id(store: Store, user_id: int) -> Account | None:
    with store.session() as s:
        u = s.get(ReviewUser, user_id)
        return _account(u) if u is not None else None


def set_password_hash(store: Store, user_id: int, password_hash: str, changed_by_user: bool = False) -> None:
    """Replace a stored hash: the account's own new password (the one-time one is then spent), or a
    rehash of the same password when argon2's parameters change."""
    values: dict[str, Any] = {"password_hash": password_hash}
    if changed_by_user:  # a new password: the sessions of the old one end (a rehash keeps them)
        values.update(must_change_password=False, password_epoch=ReviewUser.password_epoch + 1)
    with store.session() as s:
        s.execute(update(ReviewUser).where(ReviewUser.id == user_id).values(**values))


def reset_password(store: Store, name: str, password_hash: str) -> None:
    """A new one-time password for a forgotten or leaked one: the next login must replace it. A
    name with no account is a ``StoreError``."""
    with store.session() as s:
        done = s.execute(update(ReviewUser).where(ReviewUser.name == name)
                         .values(password_hash=password_hash, must_change_password=True,
                                 password_epoch=ReviewUser.password_epoch + 1))
        if done.rowcount != 1:
            raise StoreError(f"no user {name!r} (see `review report` for the accounts)")


def users(store: Store) -> list[Account]:
    with store.session() as s:
        return [_account(u) for u in s.scalars(select(ReviewUser).order_by(ReviewUser.name))]


# -- queues and slots -------------------------------------------------------------------------------
def _open_ids(queue: str) -> Select:
    """The ids of the items a queue offers for review."""
    if queue == "rubric":  # a draft waits for its first decision; after it, for the further reviews asked
        reviewed = select(ReviewSlot.item_id).where(ReviewSlot.queue == "rubric")
        return select(RubricRecord.id.label("id")).where(
            (RubricRecord.status == PENDING) | RubricRecord.id.in_(reviewed))
    if queue == "variant":
        return select(Judgment.id.label("id")).where(Judgment.criterion_kind == DECISION_KIND)
    if queue == "pair":
        return select(PreferencePair.id.label("id"))
    raise ValueError(f"unknown review queue {queue!r}; choose one of {', '.join(QUEUES)}")


def _id_column(queue: str):
    return {"rubric": RubricRecord.id, "variant": Judgment.id, "pair": PreferencePair.id}[queue]


def claim_next(store: Store, queue: str, user_id: int, needed: int, expired_before: datetime,
               skip: list[int] | tuple[int, ...] = ()) -> int | None:
    """The item this reviewer works on next: the one they already hold, else a newly claimed slot
    of the first open item with fewer than ``needed`` reviews that they have not reviewed (and did
    not ``skip``). ``None`` when the queue has nothing left for them."""
    col = _id_column(queue)
    skip = [int(i) for i in skip]
    with store.session() as s:
        s.execute(delete(ReviewSlot).where(ReviewSlot.queue == queue, ReviewSlot.status == ASSIGNED,
                                           ReviewSlot.assigned_at < expired_before))
        held = s.scalars(_open_ids(queue).where(col.in_(
            select(ReviewSlot.item_id).where(ReviewSlot.queue == queue, ReviewSlot.user_id == user_id,
                                             ReviewSlot.status == ASSIGNED)), col.not_in(skip)).order_by(col)
                         .limit(1)).first()
        if held is not None:
            return int(held)
        full = select(ReviewSlot.item_id).where(ReviewSlot.queue == queue).group_by(ReviewSlot.item_id) \
            .having(func.count() >= needed)
        mine = select(ReviewSlot.item_id).where(ReviewSlot.queue == queue, ReviewSlot.user_id == user_id)
        for _ in range(5):  # a slot lost to a concurrent reviewer: try the next item
            found = list(s.scalars(_open_ids(queue).where(col.not_in(full), col.not_in(mine), col.not_in(skip))
                                   .order_by(col).limit(8)))
            if not found:
                return None
            for item_id in found:
                taken = set(s.scalars(select(ReviewSlot.slot).where(ReviewSlot.queue == queue,
                                                                    ReviewSlot.item_id == item_id)))
                free = [n for n in range(needed) if n not in taken]
                if not free:
                    continue
                try:
                    with s.begin_nested():
                        s.add(ReviewSlot(queue=queue, item_id=item_id, slot=free[0], user_id=user_id,
                                         status=ASSIGNED, labels={}))
                    return int(item_id)
                except IntegrityError:
                    continue
        return None


def slot_of(store: Store, queue: str, item_id: int, user_id: int) -> dict[str, Any] | None:
    """This reviewer's slot on an item (``status``, ``slot``, ``labels``), or ``None``."""
    with store.session() as s:
        row = s.scalars(select(ReviewSlot).where(ReviewSlot.queue == queue, ReviewSlot.item_id == item_id,
                                                 ReviewSlot.user_id == user_id)).first()
        return None if row is None else {"status": row.status, "slot": row.slot, "labels": dict(row.labels or {}),
                                         "decided_at": row.decided_at}


def complete_slot(session: Any, queue: str, item_id: int, user_id: int, labels: dict[str, Any]) -> None:
    """Mark the reviewer's held slot done with their labels, in the caller's transaction; a slot they
    no longer hold (taken back after the claim time) is a ``StoreError`` and nothing is recorded."""
    changed = session.execute(update(ReviewSlot).where(
        ReviewSlot.queue == queue, ReviewSlot.item_id == item_id, ReviewSlot.user_id == user_id,
        ReviewSlot.status == ASSIGNED).values(status=DONE, labels=labels, decided_at=utcnow())).rowcount
    if not changed:
        raise StoreError(f"{queue} {item_id} is no longer assigned to you (your claim ran out and it went to "
                         "another reviewer, or you already decided it); nothing recorded")


def finish_slot(store: Store, queue: str, item_id: int, user_id: int, labels: dict[str, Any]) -> None:
    with store.session() as s:
        complete_slot(s, queue, item_id, user_id, labels)


def release_slot(store: Store, queue: str, item_id: int, user_id: int) -> None:
    """Give a held slot back (the reviewer skipped the item)."""
    with store.session() as s:
        s.execute(delete(ReviewSlot).where(ReviewSlot.queue == queue, ReviewSlot.item_id == item_id,
                                           ReviewSlot.user_id == user_id, ReviewSlot.status == ASSIGNED))


def decided_by(store: Store, queue: str, user_id: int) -> list[int]:
    """The items this reviewer decided in a queue, oldest decision first (for "previous")."""
    with store.session() as s:
        return [int(i) for i in s.scalars(select(ReviewSlot.item_id).where(
            ReviewSlot.queue == queue, ReviewSlot.user_id == user_id, ReviewSlot.status == DONE)
            .order_by(ReviewSlot.decided_at, ReviewSlot.id))]


def others_done(store: Store, queue: str, item_id: int, user_id: int) -> int:
    """How many other reviewers decided this item (never what they decided)."""
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(ReviewSlot).where(
            ReviewSlot.queue == queue, ReviewSlot.item_id == item_id, ReviewSlot.user_id != user_id,
            ReviewSlot.status == DONE)) or 0)


def done_labels(store: Store, queue: str) -> dict[int, list[dict[str, Any]]]:
    """Item id -> the decided slots' labels in slot order (the agreement figures' input)."""
    out: dict[int, list[dict[str, Any]]] = {}
    with store.session() as s:
        for item_id, labels in s.execute(select(ReviewSlot.item_id, ReviewSlot.labels).where(
                ReviewSlot.queue == queue, ReviewSlot.status == DONE).order_by(ReviewSlot.item_id, ReviewSlot.slot)):
            out.setdefault(int(item_id), []).append(dict(labels or {}))
    return out


def progress(store: Store, needed: int, user_id: int | None = None) -> dict[str, dict[str, int]]:
    """Counts per queue, in one transaction: ``open`` items still needing a review, ``complete``
    items with all their reviews, ``reviews`` decided (and ``mine``, by ``user_id``)."""
    out: dict[str, dict[str, int]] = {q: {"open": 0, "complete": 0, "reviews": 0} for q in QUEUES}
    with store.session() as s:
        per_item = select(ReviewSlot.queue, ReviewSlot.item_id, func.count().label("n"),
                          func.sum(case((ReviewSlot.user_id == (user_id or -1), 1), else_=0)).label("mine")) \
            .where(ReviewSlot.status == DONE).group_by(ReviewSlot.queue, ReviewSlot.item_id).subquery()
        for queue, reviews, complete, mine in s.execute(
                select(per_item.c.queue, func.sum(per_item.c.n), func.sum(case((per_item.c.n >= needed, 1), else_=0)),
                       func.sum(per_item.c.mine)).group_by(per_item.c.queue)):
            if queue in out:
                out[queue].update(reviews=int(reviews or 0), complete=int(complete or 0))
                if user_id is not None:
                    out[queue]["mine"] = int(mine or 0)
        for queue in QUEUES:
            col = _id_column(queue)
            done = select(ReviewSlot.item_id).where(ReviewSlot.queue == queue, ReviewSlot.status == DONE) \
                .group_by(ReviewSlot.item_id).having(func.count() >= needed)
            out[queue]["open"] = int(s.scalar(select(func.count()).select_from(
                _open_ids(queue).where(col.not_in(done)).subquery())) or 0)
            if user_id is not None:
                out[queue].setdefault("mine", 0)
    return out


# -- pair flags -------------------------------------------------------------------------------------
def flag_pair(session: Any, pair_id: int, user_id: int, reviewer: str, reason: str) -> None:
    """Record that a reviewer finds the pair wrong (in the caller's transaction)."""
    if not reason.strip():
        raise ValueError("flagging a pair as wrong needs a reason")
    if session.get(PreferencePair, pair_id) is None:
        raise StoreError(f"no pair {pair_id}")
    session.add(PairFlag(pair_id=pair_id, user_id=user_id, reviewer=reviewer, reason=reason.strip()))
    session.flush()


def decide_pair(store: Store, pair_id: int, user_id: int, reviewer: str, wrong: bool, reason: str) -> None:
    """A reviewer's verdict on a pair: its slot done and, for a wrong pair, a flag, as one transaction."""
    with store.session() as s:
        complete_slot(s, "pair", pair_id, user_id, {"verdict": "wrong" if wrong else "ok"})
        if wrong:
            flag_pair(s, pair_id, user_id, reviewer, reason)


def flags_of(store: Store, pair_id: int) -> list[dict[str, Any]]:
    with store.session() as s:
        return [{"reviewer": f.reviewer, "reason": f.reason, "created_at": f.created_at.isoformat()}
                for f in s.scalars(select(PairFlag).where(PairFlag.pair_id == pair_id).order_by(PairFlag.id))]


def unflagged_clause():
    """The WHERE clause that leaves flagged pairs out of a selection (exports)."""
    return ~exists().where(PairFlag.pair_id == PreferencePair.id)


# -- what the pages show ----------------------------------------------------------------------------
def rubric_view(store: Store, rubric_id: int) -> dict[str, Any] | None:
    with store.session() as s:
        r = s.get(RubricRecord, rubric_id)
        if r is None:
            return None
        return {"id": r.id, "instruction": list(r.instruction), "reference": r.reference, "rubric": dict(r.rubric),
                "status": r.status, "origin": r.origin, "language": r.language}


def variant_view(store: Store, decision_id: int) -> dict[str, Any] | None:
    """A panel decision with its variant, source text, injection and the round's filter verdicts."""
    with store.session() as s:
        d = s.get(Judgment, decision_id)
        if d is None or d.criterion_kind != DECISION_KIND:
            return None
        cand = s.get(Candidate, d.candidate_id)
        item = s.get(Item, cand.item_id)
        rnd = (d.details or {}).get("round")
        round_verdicts, spans = round_checks(s, [cand.id], rnd)
        if cand.id not in spans:
            raise StoreError(f"variant {cand.id} has no span check: not a factbench variant")
        span = dict(spans[cand.id].details or {})
        verdicts = [{"criterion": j.criterion, "judge_model": j.judge_model, "met": j.met, "reason": j.reason,
                     "llm_call_id": j.llm_call_id} for j in round_verdicts[cand.id]]
        return {"id": d.id, "round": rnd, "accepted": bool(d.met), "passed": dict((d.details or {}).get("passed", {})),
                "candidate_id": cand.id, "item_id": cand.item_id, "text": cand.text,
                "source": item.payload.get("text", ""), "language": item.payload.get("lang"),
                "error_type": span.get("error_type"), "injection": span.get("injection", {}), "verdicts": verdicts}


def pair_view(store: Store, pair_id: int) -> dict[str, Any] | None:
    """A pair with each side's per-criterion judgments and S1/S2/S3 (of the pair's job when known)."""
    with store.session() as s:
        p = s.get(PreferencePair, pair_id)
        if p is None:
            return None
        prov = dict(p.provenance or {})
        job = prov.get("job_key")

        def side(text: str, cid: int | None) -> dict[str, Any]:
            out: dict[str, Any] = {"text": text, "judgments": [], "scores": None}
            if cid is None:
                return out
            wanted = set(prov.get("judgment_ids") or [])
            for j in s.scalars(select(Judgment).where(Judgment.candidate_id == cid).order_by(Judgment.id)):
                if wanted and j.id not in wanted:
                    continue
                out["judgments"].append({"criterion": (j.details or {}).get("criterion_id") or j.criterion,
                                         "kind": j.criterion_kind, "met": j.met, "score": j.score, "reason": j.reason,
                                         "judge_model": j.judge_model})
            q = select(CandidateScore).where(CandidateScore.candidate_id == cid)
            sc = s.scalars(q.where(CandidateScore.job_key == job) if job else q.order_by(CandidateScore.id)).first()
            if sc is not None:
                out["scores"] = {"s1": sc.s1, "s2": sc.s2, "s3": sc.s3, "grader_model": sc.grader_model}
            return out

        return {"id": p.id, "kind": p.kind, "prompt": list(p.prompt), "language": p.language, "margin": p.margin,
                "chosen": side(p.chosen, p.chosen_candidate_id), "rejected": side(p.rejected, p.rejected_candidate_id)}
