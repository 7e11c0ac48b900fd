"""The queries ``training/`` reads the store with: the preference pairs a model trains on, the
judgments behind their candidates, and the rubrics of their items; and what a training run writes
besides its result: each checkpoint as it is saved, the run a resumed run continues, and a reward
model's calibration pairs.

Every function takes an open session and returns ORM rows or plain dicts; the caller turns them
into its own types inside the same ``with store.session()`` block. Id lists are queried in chunks
so a large selection never exceeds the database's bound-parameter limit.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.db import chunked, insert_ignore
from store.models import Item, Judgment, PreferencePair, Run, TrainingPair


def preference_pairs(session: Session, *, kinds: list[str] | None = None, run_ids: list[str] | None = None,
                     min_margin: float | None = None, language: str | None = None,
                     limit: int | None = None) -> list[PreferencePair]:
    """Pairs matching the filters (an empty or ``None`` filter matches all), in id order; ``limit``
    keeps the first ones."""
    q = select(PreferencePair).order_by(PreferencePair.id)
    if kinds:
        q = q.where(PreferencePair.kind.in_(kinds))
    if run_ids:
        q = q.where(PreferencePair.run_id.in_(run_ids))
    if min_margin is not None:
        q = q.where(PreferencePair.margin >= min_margin)
    if language:
        q = q.where(PreferencePair.language == language)
    if limit is not None:
        q = q.limit(limit)
    return list(session.scalars(q))


def judgments(session: Session, *, ids: Iterable[int] = (), candidate_ids: Iterable[int] = ()) -> list[Judgment]:
    """The judgments with these ids, then every judgment of these candidates (a judgment matched by
    both comes back twice, as the two lookups are independent)."""
    rows: list[Judgment] = []
    for wanted, col in ((ids, Judgment.id), (candidate_ids, Judgment.candidate_id)):
        for chunk in chunked(wanted):
            rows.extend(session.scalars(select(Judgment).where(col.in_(chunk))))
    return rows


def item_rubrics(session: Session, item_ids: Iterable[int | None]) -> dict[int, dict[str, Any]]:
    """Item id -> the rubric in its payload (items without one are left out)."""
    out: dict[int, dict[str, Any]] = {}
    for chunk in chunked(i for i in item_ids if i is not None):
        for iid, payload in session.execute(select(Item.id, Item.payload).where(Item.id.in_(chunk))):
            if isinstance(payload, dict) and payload.get("rubric"):
                out[iid] = payload["rubric"]
    return out


# -- checkpoints and resumed runs (kept in the run's ``stats`` JSON) --------------------------------
def record_checkpoint(session: Session, run_id: str, checkpoint: dict[str, Any]) -> None:
    """Append a saved checkpoint (``step``, ``path``, ``loss``) to the run's ``stats.checkpoints``."""
    run = session.get(Run, run_id)
    if run is None:
        raise ValueError(f"run {run_id!r}: no such run")
    stats = dict(run.stats or {})
    stats["checkpoints"] = [*stats.get("checkpoints", []), checkpoint]
    run.stats = stats


def run_checkpoints(session: Session, run_id: str) -> list[dict[str, Any]]:
    run = session.get(Run, run_id)
    return list((run.stats or {}).get("checkpoints", [])) if run is not None else []


def run_of_checkpoint(session: Session, path: str) -> str | None:
    """The training run that recorded a checkpoint at ``path`` (the newest, if several did)."""
    runs = session.scalars(select(Run).where(Run.kind.startswith("train-")).order_by(Run.started_at.desc()))
    for run in runs:
        if any(c.get("path") == path for c in (run.stats or {}).get("checkpoints", [])):
            return run.id
    return None


def mark_resumed(session: Session, run_id: str, by_run: str | None) -> None:
    """A run whose process died (still marked running) is ``interrupted`` once another run resumes
    it from one of its checkpoints; its stats name that run."""
    run = session.get(Run, run_id)
    if run is None:
        return
    run.stats = {**(run.stats or {}), "resumed_by": by_run}
    if run.status == "running":
        run.status, run.error = "interrupted", f"stopped without finishing; resumed by run {by_run}"
        run.finished_at = datetime.now(UTC)


def record_calibration_pairs(session: Session, run_id: str, pair_ids: Iterable[int]) -> None:
    """A reward model's calibration pairs, beside its train and test pairs (``training_pairs``,
    split ``calib``: the column holds 8 characters)."""
    for chunk in chunked(int(i) for i in pair_ids):
        insert_ignore(session, TrainingPair, [{"run_id": run_id, "pair_id": i, "split": "calib"} for i in chunk],
                      ["run_id", "pair_id"])
