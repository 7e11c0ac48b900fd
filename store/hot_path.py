"""The per-item graphs' reads and writes as Core statements over many values at once.

Each function takes a batch (``store.batching.BatchQueue`` gathers one from the coroutines that
asked together) and answers it with one query or one INSERT ... RETURNING, in one transaction: no
ORM session, no identity map. The writes keep the natural keys of their ``records`` counterparts
(``add_candidate``, ``add_judgments``, ``add_pairs``), so running the same work twice stores it once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from store.db import Store
from store.models import Candidate, CandidateScore, Item, Judgment, PreferencePair
from store.records import normalise_text, pair_rows, sha256_of


@dataclass(frozen=True)
class CandidateRow:
    """What the nodes read of a stored candidate (plain values, no ORM row)."""

    id: int
    item_id: int
    llm_call_id: int | None
    sample_index: int
    model: str
    text: str
    text_hash: str


CANDIDATE_COLUMNS = (Candidate.id, Candidate.item_id, Candidate.llm_call_id, Candidate.sample_index,
                     Candidate.model, Candidate.text, Candidate.text_hash)


def item_payloads(store: Store, item_ids: Sequence[int]) -> list[dict[str, Any]]:
    """The payloads of these items, in order (one query); a missing item is a ``KeyError``."""
    with store.connection() as conn:
        found = dict(conn.execute(select(Item.id, Item.payload).where(Item.id.in_(set(item_ids)))).all())
    missing = [i for i in item_ids if i not in found]
    if missing:
        raise KeyError(f"item {missing[0]} is not in the store")
    return [found[i] for i in item_ids]


def candidate_rows(store: Store, candidate_ids: Sequence[int]) -> dict[int, CandidateRow]:
    """The candidates with these ids (one query); ids not stored are left out."""
    if not candidate_ids:
        return {}
    with store.connection() as conn:
        rows = conn.execute(select(*CANDIDATE_COLUMNS).where(Candidate.id.in_(set(candidate_ids)))).all()
    return {r[0]: CandidateRow(*r) for r in rows}


def candidate_fields(**fields: Any) -> dict[str, Any]:
    """A candidate row as ``insert_candidates`` takes it (every column named, the text hashed once)."""
    fields.setdefault("choice_index", 0)
    fields.setdefault("text_hash", sha256_of(normalise_text(fields["text"])))
    return fields


def insert_candidates(store: Store, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert candidates (rows from ``candidate_fields``) unless their (item, call, choice) is stored
    already; their ids in the order given."""
    def key(r: Any) -> tuple[Any, ...]:
        return r["item_id"], r["llm_call_id"], r["choice_index"]

    stmt = insert_for(store, Candidate).on_conflict_do_nothing(index_elements=["item_id", "llm_call_id",
                                                                                "choice_index"])
    returning = (Candidate.id, Candidate.item_id, Candidate.llm_call_id, Candidate.choice_index)
    with store.connection() as conn:
        ids = {(i, c, ch): cid for cid, i, c, ch in execute_batch(conn, stmt, returning, rows)}
        missing = [r for r in rows if key(r) not in ids]
        if missing:  # stored before (a re-run), or PostgreSQL: read their ids
            q = select(Candidate.id, Candidate.item_id, Candidate.llm_call_id, Candidate.choice_index).where(
                Candidate.item_id.in_({r["item_id"] for r in missing}),
                Candidate.llm_call_id.in_({r["llm_call_id"] for r in missing}))
            ids.update({(i, c, ch): cid for cid, i, c, ch in conn.execute(q)})
    return [ids[key(r)] for r in rows]


def insert_judgment_groups(store: Store, groups: Sequence[Sequence[dict[str, Any]]]) -> list[list[int]]:
    """Insert each group's judgments (one candidate's grades) unless stored already; per group, the
    ids in the order given. One statement for every group of the batch."""
    rows = [r for g in groups for r in g]
    if not rows:
        return [[] for _ in groups]
    with store.connection() as conn:
        ids = _judgment_ids(conn, store, rows)
    return [[ids[_judgment_key(r)] for r in g] for g in groups]


def _judgment_key(r: Any) -> tuple[Any, ...]:
    return r["candidate_id"], r["criterion"], r["llm_call_id"]


def _judgment_ids(conn: Connection, store: Store, rows: Sequence[dict[str, Any]]) -> dict[tuple[Any, ...], int]:
    """Insert judgments unless stored already (in ``conn``'s transaction); their ids by natural key."""
    stmt = insert_for(store, Judgment).on_conflict_do_nothing(index_elements=["candidate_id", "criterion",
                                                                               "llm_call_id"])
    returning = (Judgment.id, Judgment.candidate_id, Judgment.criterion, Judgment.llm_call_id)
    ids = {(cand, crit, call): i for i, cand, crit, call in execute_batch(conn, stmt, returning, rows)}
    missing = [r for r in rows if _judgment_key(r) not in ids]
    if missing:
        q = select(Judgment.id, Judgment.candidate_id, Judgment.criterion, Judgment.llm_call_id).where(
            Judgment.candidate_id.in_({r["candidate_id"] for r in missing}),
            Judgment.llm_call_id.in_({r["llm_call_id"] for r in missing}))
        ids.update({(cand, crit, call): i for i, cand, crit, call in conn.execute(q)})
    return ids


@dataclass(frozen=True)
class GradedCandidate:
    """One candidate's rubric grading as ``insert_graded`` stores it: the primary grader's
    judgments, the second grader's (agreement only), and the candidate's S1/S2/S3 under the job
    (its ``judgment_ids`` filled in with the primary judgments' ids)."""

    judgments: list[dict[str, Any]]
    second: list[dict[str, Any]]
    score: dict[str, Any]


def insert_graded(store: Store, graded: Sequence[GradedCandidate]) -> list[list[int]]:
    """Store each candidate's judgments and score (each once: a re-run keeps what is stored), all of
    the batch in one transaction; per candidate, the primary judgments' ids in the order given."""
    rows = [r for g in graded for r in (*g.judgments, *g.second)]
    with store.connection() as conn:
        ids = _judgment_ids(conn, store, rows) if rows else {}
        out = [[ids[_judgment_key(r)] for r in g.judgments] for g in graded]
        scores = [{**g.score, "judgment_ids": jids} for g, jids in zip(graded, out, strict=True)]
        if scores:
            stmt = insert_for(store, CandidateScore).on_conflict_do_nothing(index_elements=["candidate_id",
                                                                                             "job_key"])
            conn.execute(stmt, scores)
    return out


def insert_pairs(store: Store, pairs: Sequence[dict[str, Any]]) -> list[bool]:
    """Insert preference pairs, skipping ones already stored; per pair, whether it was new."""
    rows = pair_rows(pairs)
    if not rows:
        return []
    stmt = insert_for(store, PreferencePair).on_conflict_do_nothing(index_elements=["pair_hash"])
    with store.connection() as conn:  # one pair per item: few rows, RETURNING says which were new
        new = {h for (h,) in execute_batch(conn, stmt, (PreferencePair.pair_hash,), rows, returning_on_postgresql=True)}
    seen: set[str] = set()
    out = []
    for r in rows:  # the same pair twice in one batch: the first is new, the second is not
        out.append(r["pair_hash"] in new and r["pair_hash"] not in seen)
        seen.add(r["pair_hash"])
    return out


def execute_batch(conn: Connection, stmt: Any, returning: tuple[Any, ...], rows: Sequence[dict[str, Any]],
             *, returning_on_postgresql: bool = False) -> list[Any]:
    """``stmt`` with ``RETURNING returning`` as one executemany per set of columns (rows naming
    different columns cannot share one: a column left out must get its default, not NULL); the rows
    returned. On PostgreSQL, unless asked, the rows go without RETURNING and nothing comes back (the
    callers read the ids by natural key): psycopg parses a multi-row INSERT with thousands of
    parameters on every call, which costs more CPU than that read."""
    groups: dict[frozenset[str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(frozenset(r), []).append(r)
    if conn.dialect.name == "postgresql" and not returning_on_postgresql:
        for group in groups.values():
            conn.execute(stmt, group)
        return []
    return [row for group in groups.values() for row in conn.execute(stmt.returning(*returning), group)]


def insert_for(store: Store, model: Any):
    name = store.dialect
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return dialect_insert(model)
