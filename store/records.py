"""Idempotent writes and the reads workflows need: runs, items, LLM calls, candidates, pairs.

Each writer is keyed by a natural unique key (content hash, call + choice, pair hash), so running
the same work twice stores it once. Callers pass a Session so that several writes commit together.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select, text, update
from sqlalchemy.orm import Session

from store.db import Store, dialect_insert, insert_ignore
from store.models import Candidate, CandidateScore, Item, Judgment, LLMCall, PreferencePair, Run


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def sha256_of(obj: Any) -> str:
    data = obj if isinstance(obj, str) else canonical_json(obj)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


@cache
def code_version() -> str:
    """The git commit of the checkout (with ``+dirty``), else the installed package version."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        return f"git:{sha}{'+dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"carealign=={version('carealign')}"
        except PackageNotFoundError:
            return "unknown"


# -- runs ---------------------------------------------------------------------------------------
def create_run(session: Session, kind: str, config: dict[str, Any], job_key: str | None = None,
               worker: dict[str, Any] | None = None) -> str:
    """A new run, ``running``; ``worker`` (host, pid, lease) lets others tell when its process is gone."""
    run_id = uuid.uuid4().hex
    session.add(
        Run(
            id=run_id, kind=kind, job_key=job_key, status="running", config=config,
            config_hash=sha256_of(config), code_version=code_version(),
            stats={"worker": worker, "heartbeat_at": datetime.now(UTC).isoformat()} if worker else {},
        )
    )
    return run_id


def touch_run(session: Session, run_id: str) -> None:
    """The run's heartbeat: its process is alive now."""
    run = session.get(Run, run_id)
    if run is not None and run.status == "running":
        run.stats = {**(run.stats or {}), "heartbeat_at": datetime.now(UTC).isoformat()}


def running_runs(session: Session) -> list[Run]:
    rows = session.scalars(select(Run).where(Run.status == "running")).all()
    session.expunge_all()
    return list(rows)


def mark_run_dead(session: Session, run_id: str, why: str) -> None:
    """A run whose process is gone: its status says so (only if it still claims to be running)."""
    session.execute(update(Run).where(Run.id == run_id, Run.status == "running")
                    .values(status="dead", error=why, finished_at=datetime.now(UTC)))


def finish_run(session: Session, run_id: str, status: str, stats: dict[str, Any], error: str | None = None):
    run = session.get(Run, run_id)
    worker = (run.stats or {}).get("worker") if run is not None else None
    session.execute(
        update(Run)
        .where(Run.id == run_id)
        .values(status=status, stats={**stats, "worker": worker} if worker else stats, error=error,
                finished_at=datetime.now(UTC))
    )


# -- items --------------------------------------------------------------------------------------
def upsert_items(session: Session, dataset: str, records: Sequence[dict[str, Any]]) -> list[int]:
    """Store inputs once per (dataset, content hash); returns their ids in input order.

    Each record is ``{"payload": {...}, "external_id": str|None, "source": "file:line"}``; the
    hash covers the payload only, so the same instruction read from two files is one item.
    """
    rows = [
        {
            "dataset": dataset,
            "content_hash": sha256_of(r["payload"]),
            "external_id": r.get("external_id"),
            "payload": r["payload"],
            "source": r.get("source"),
        }
        for r in records
    ]
    insert_ignore(session, Item, rows, ["dataset", "content_hash"])
    hashes = [r["content_hash"] for r in rows]
    ids: dict[str, int] = {}
    for chunk_start in range(0, len(hashes), 500):
        chunk = hashes[chunk_start : chunk_start + 500]
        q = select(Item.content_hash, Item.id).where(Item.dataset == dataset, Item.content_hash.in_(chunk))
        ids.update({h: i for h, i in session.execute(q)})
    return [ids[h] for h in hashes]


def get_item(session: Session, item_id: int) -> Item:
    item = session.get(Item, item_id)
    if item is None:
        raise KeyError(f"item {item_id} not found")
    return item


# -- LLM calls (the request cache) --------------------------------------------------------------
CACHE_COLUMNS = (LLMCall.id, LLMCall.choices, LLMCall.parsed, LLMCall.prompt_tokens,
                 LLMCall.completion_tokens, LLMCall.latency_ms, LLMCall.logprobs)


def find_cached_call(conn: Connection | Session, request_hash: str) -> Row | None:
    """The first successful call with this request hash, as a row of ``CACHE_COLUMNS``.

    Core statements, not ORM entities: this runs before every LLM request, so it must be cheap."""
    q = (select(*CACHE_COLUMNS)
         .where(LLMCall.request_hash == request_hash, LLMCall.ok.is_(True))
         .order_by(LLMCall.id).limit(1))
    return conn.execute(q).first()


def find_cached_calls(conn: Connection | Session, request_hashes: Sequence[str]) -> dict[str, Row]:
    """``find_cached_call`` for many hashes in one query: hash -> first successful call."""
    q = (select(LLMCall.request_hash, *CACHE_COLUMNS)
         .where(LLMCall.request_hash.in_(set(request_hashes)), LLMCall.ok.is_(True))
         .order_by(LLMCall.id.desc()))
    # newest first, so the last assignment per hash is the oldest call (as find_cached_call)
    return {row[0]: row[1:] for row in conn.execute(q)}


def add_llm_call(conn: Connection | Session, **fields: Any) -> int:
    fields.setdefault("created_at", datetime.now(UTC))
    return int(conn.execute(insert(LLMCall).returning(LLMCall.id), fields).scalar_one())


# -- candidates, judgments, pairs ---------------------------------------------------------------
def add_candidate(session: Session, **fields: Any) -> int:
    """Insert a candidate unless this (item, call, choice) is stored already; returns its id."""
    fields.setdefault("text_hash", sha256_of(normalise_text(fields["text"])))
    insert_ignore(session, Candidate, [fields], ["item_id", "llm_call_id", "choice_index"])
    q = select(Candidate.id).where(
        Candidate.item_id == fields["item_id"],
        Candidate.llm_call_id == fields["llm_call_id"],
        Candidate.choice_index == fields.get("choice_index", 0),
    )
    return session.scalars(q).one()


def add_judgments(session: Session, rows: Sequence[dict[str, Any]]) -> list[int]:
    insert_ignore(session, Judgment, rows, ["candidate_id", "criterion", "llm_call_id"])
    if not rows:
        return []
    q = select(Judgment.id, Judgment.candidate_id, Judgment.criterion, Judgment.llm_call_id).where(
        Judgment.candidate_id.in_({r["candidate_id"] for r in rows}),
        Judgment.llm_call_id.in_({r["llm_call_id"] for r in rows}),
    )
    ids = {(cand, crit, call): i for i, cand, crit, call in session.execute(q)}
    return [ids[(r["candidate_id"], r["criterion"], r["llm_call_id"])] for r in rows]


def pair_hash(kind: str, prompt: Any, chosen: str, rejected: str) -> str:
    return sha256_of([kind, prompt, normalise_text(chosen), normalise_text(rejected)])


def pair_rows(pairs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pair rows to insert, each with its ``pair_hash`` (the key that makes a re-insert a no-op)."""
    rows = []
    for p in pairs:
        row = dict(p)
        row.setdefault("pair_hash", pair_hash(row["kind"], row["prompt"], row["chosen"], row["rejected"]))
        rows.append(row)
    return rows


def add_pairs(session: Session, pairs: Iterable[dict[str, Any]]) -> int:
    """Insert preference pairs, skipping ones already stored; returns how many were new."""
    rows = pair_rows(pairs)
    if not rows:
        return 0
    # RETURNING yields only the rows this INSERT wrote (not ones skipped as duplicates, nor rows
    # other workers commit meanwhile); SQLite >= 3.35 and PostgreSQL both support it.
    stmt = dialect_insert(session, PreferencePair).on_conflict_do_nothing(index_elements=["pair_hash"])
    return len(session.execute(stmt.returning(PreferencePair.id), rows).all())


def normalise_text(text: str) -> str:
    """Whitespace- and case-insensitive form used for exact-duplicate detection."""
    return " ".join(text.split()).casefold()


def table_counts(session: Session) -> dict[str, int]:
    from store.models import Base

    return {
        name: int(session.scalar(select(func.count()).select_from(table)))
        for name, table in sorted(Base.metadata.tables.items())
    }


def add_candidate_score(session: Session, row: dict[str, Any]) -> None:
    """A candidate's S1/S2/S3 under one job, once (a re-run of the job keeps the first)."""
    insert_ignore(session, CandidateScore, [row], ["candidate_id", "job_key"])


def insert_llm_calls(store: Store, rows: list[dict[str, Any]]) -> list[int]:
    """Insert call records together; their ids in the order given (the call log batches).

    SQLite: one ``INSERT ... RETURNING``. PostgreSQL: the ids are drawn from the table's sequence
    first and the rows sent as one executemany (psycopg pipelines it): a multi-row INSERT with
    thousands of parameters is parsed by the driver on every call, which cost more CPU than the rest
    of the write."""
    if not rows:
        return []
    with store.connection() as conn:
        if conn.dialect.name == "postgresql":
            ids = sorted(int(i) for i in conn.execute(
                text("SELECT nextval(pg_get_serial_sequence('llm_calls', 'id')) FROM generate_series(1, :n)"),
                {"n": len(rows)}).scalars())
            conn.execute(insert(LLMCall), [{**r, "id": i} for r, i in zip(rows, ids, strict=True)])
            return ids
        stmt = insert(LLMCall).returning(LLMCall.id, sort_by_parameter_order=True)
        return [int(r[0]) for r in conn.execute(stmt, rows)]
