"""SQLAlchemy 2.0 typed models: the one record of every step carealign takes.

Every row that an LLM produced points back to the ``llm_calls`` row that made it, and every
``llm_calls`` row points to its run (config, code version), its prompt template and its item, so any
stored pair can be traced to the run, config, prompt, model and inputs behind it.

Uniqueness constraints carry idempotency: writers use insert-or-ignore on these keys, so re-running
the same work inserts nothing twice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# JSONB on PostgreSQL (indexable, compact), plain JSON text elsewhere.
JSONType = JSON().with_variant(JSONB(), "postgresql")
# Integer primary keys that autoincrement on SQLite and are 64-bit on PostgreSQL.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONType, list[Any]: JSONType}


class Run(Base):
    """One invocation of a workflow: what was asked (config), by which code, and how it went."""

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    job_key: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(32), default="running")
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    config_hash: Mapped[str] = mapped_column(String(64))
    code_version: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    stats: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    error: Mapped[str | None] = mapped_column(Text)


class Item(Base):
    """An input (instruction, dialogue, text to check), unique by dataset and content hash."""

    __tablename__ = "items"
    __table_args__ = (UniqueConstraint("dataset", "content_hash", name="uq_items_dataset_hash"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    dataset: Mapped[str] = mapped_column(String(255))
    content_hash: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str | None] = mapped_column(String(255), index=True)  # `carealign trace ID`
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    source: Mapped[str | None] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LLMCall(Base):
    """One chat request and its outcome. Doubles as the request cache (by ``request_hash``)."""

    __tablename__ = "llm_calls"
    __table_args__ = (Index("ix_llm_calls_cache", "request_hash", "ok"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id"), index=True)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"), index=True)
    role: Mapped[str | None] = mapped_column(String(64))
    prompt_name: Mapped[str | None] = mapped_column(String(128))
    prompt_hash: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(255))
    base_url: Mapped[str | None] = mapped_column(String(1024))
    messages: Mapped[list[Any]] = mapped_column(JSONType)
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    response_schema: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    choices: Mapped[list[Any] | None] = mapped_column(JSONType)
    parsed: Mapped[list[Any] | None] = mapped_column(JSONType)
    finish_reasons: Mapped[list[Any] | None] = mapped_column(JSONType)
    logprobs: Mapped[list[Any] | None] = mapped_column(JSONType)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    cost_usd: Mapped[float | None] = mapped_column(Float)
    ok: Mapped[bool] = mapped_column(Boolean, default=True)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Candidate(Base):
    """One generated answer; a cached call yields the same candidate, never a second row. Its grades
    live in ``judgments`` (one row per criterion, judge call and run), never on the candidate: two
    jobs with different judges share the candidate and must not overwrite each other."""

    __tablename__ = "candidates"
    __table_args__ = (
        UniqueConstraint("item_id", "llm_call_id", "choice_index", name="uq_candidates_call_choice"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    llm_call_id: Mapped[int] = mapped_column(ForeignKey("llm_calls.id"))
    choice_index: Mapped[int] = mapped_column(Integer, default=0)
    sample_index: Mapped[int] = mapped_column(Integer, default=0)
    model: Mapped[str] = mapped_column(String(255))
    text: Mapped[str] = mapped_column(Text)
    text_hash: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CandidateScore(Base):
    """A candidate's rubric scores (S1, S2, S3) under one job: the same answer graded by another
    job (another grader or rubric) gets its own row, never an overwrite."""

    __tablename__ = "candidate_scores"
    __table_args__ = (UniqueConstraint("candidate_id", "job_key", name="uq_candidate_scores_job"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id"), index=True)
    job_key: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    s1: Mapped[float] = mapped_column(Float)
    s2: Mapped[int] = mapped_column(Integer)
    s3: Mapped[int] = mapped_column(Integer)
    judgment_ids: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    grader_model: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Judgment(Base):
    """A judge's verdict on one candidate for one criterion."""

    __tablename__ = "judgments"
    __table_args__ = (
        UniqueConstraint("candidate_id", "criterion", "llm_call_id", name="uq_judgments_cand_crit_call"),
        Index("ix_judgments_criterion_kind", "criterion_kind"),  # since 0006: the review app's variant queue
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id"), index=True)
    llm_call_id: Mapped[int] = mapped_column(ForeignKey("llm_calls.id"))
    criterion: Mapped[str] = mapped_column(String(512))
    criterion_kind: Mapped[str | None] = mapped_column(String(32))
    score: Mapped[float | None] = mapped_column(Float)
    met: Mapped[bool | None] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    judge_model: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PreferencePair(Base):
    """A chosen/rejected pair in trl's conversational shape, with the evidence behind it."""

    __tablename__ = "preference_pairs"
    __table_args__ = (Index("ix_pairs_kind_run", "kind", "run_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    pair_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)  # a run's pairs (trace, export)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"), index=True)
    prompt: Mapped[list[Any]] = mapped_column(JSONType)
    chosen: Mapped[str] = mapped_column(Text)
    rejected: Mapped[str] = mapped_column(Text)
    chosen_candidate_id: Mapped[int | None] = mapped_column(ForeignKey("candidates.id"))
    rejected_candidate_id: Mapped[int | None] = mapped_column(ForeignKey("candidates.id"))
    margin: Mapped[float] = mapped_column(Float)
    margins: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    language: Mapped[str | None] = mapped_column(String(16))
    provenance: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TrainingPair(Base):
    """A pair a training run used, and on which side of its split. The model folder's manifest
    lists the same ids; kept here too, so a model traces to its data after its folder is gone."""

    __tablename__ = "training_pairs"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    pair_id: Mapped[int] = mapped_column(ForeignKey("preference_pairs.id"), primary_key=True, autoincrement=False,
                                         index=True)
    split: Mapped[str] = mapped_column(String(8))  # train | eval


class RubricRecord(Base):
    """A clinical rubric for one instruction: imported with a dataset, drafted by the rubric writer,
    or edited by a reviewer. A draft waits ``pending`` until a reviewer approves it, rejects it, or
    edits it (the edit is a new row with ``parent_id`` set; the draft becomes ``edited``). Approved
    rubrics are ``in_pool``: later drafts take their few-shot examples from the pool."""

    __tablename__ = "rubrics"
    __table_args__ = (UniqueConstraint("instruction_hash", "rubric_hash", name="uq_rubrics_instruction_rubric"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    instruction_hash: Mapped[str] = mapped_column(String(64), index=True)
    instruction: Mapped[list[Any]] = mapped_column(JSONType)  # the conversation the rubric is for
    reference: Mapped[str | None] = mapped_column(Text)
    rubric: Mapped[dict[str, Any]] = mapped_column(JSONType)
    rubric_hash: Mapped[str] = mapped_column(String(64))
    origin: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), index=True)
    in_pool: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("rubrics.id"))
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id"))
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"))
    llm_call_id: Mapped[int | None] = mapped_column(ForeignKey("llm_calls.id"))
    writer_model: Mapped[str | None] = mapped_column(String(255))
    language: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class RubricReview(Base):
    """A reviewer's decision on a rubric (approve, edit, reject) and why."""

    __tablename__ = "rubric_reviews"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    rubric_id: Mapped[int] = mapped_column(ForeignKey("rubrics.id"), index=True)
    decision: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    reviewer: Mapped[str] = mapped_column(String(128))
    result_rubric_id: Mapped[int | None] = mapped_column(ForeignKey("rubrics.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CheckAnswer(Base):
    """One fact-checking answer: an agent's in one round (debate, self-consistency sample,
    specialist), a moderator's or triage's, or a method's final answer (``role = 'final'``,
    ``agent = -1``). Every round of every agent is kept so over-criticism can be traced per round."""

    __tablename__ = "check_answers"
    __table_args__ = (UniqueConstraint("job_key", "item_id", "role", "round", "agent", name="uq_check_answers_slot"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    job_key: Mapped[str] = mapped_column(String(64), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    method: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(32))
    round: Mapped[int] = mapped_column(Integer, default=0)
    agent: Mapped[int] = mapped_column(Integer, default=0)
    verdict: Mapped[str] = mapped_column(String(16))
    sentence_id: Mapped[int | None] = mapped_column(Integer)
    span: Mapped[str | None] = mapped_column(Text)
    correction: Mapped[str | None] = mapped_column(Text)
    confidence: Mapped[float | None] = mapped_column(Float)
    reasoning: Mapped[str | None] = mapped_column(Text)
    llm_call_id: Mapped[int | None] = mapped_column(ForeignKey("llm_calls.id"))
    model: Mapped[str | None] = mapped_column(String(255))
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TreeNode(Base):
    """One node of a search tree, persisted node by node so a search resumes after a crash."""

    __tablename__ = "tree_nodes"
    __table_args__ = (UniqueConstraint("tree_id", "path", name="uq_tree_nodes_path"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tree_id: Mapped[str] = mapped_column(String(64), index=True)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id"))
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("tree_nodes.id"))
    path: Mapped[str] = mapped_column(String(2048))
    depth: Mapped[int] = mapped_column(Integer, default=0)
    action: Mapped[str | None] = mapped_column(String(255))
    prior: Mapped[float] = mapped_column(Float, default=0.0)
    visits: Mapped[int] = mapped_column(Integer, default=0)
    value: Mapped[float] = mapped_column(Float, default=0.0)
    ended: Mapped[bool] = mapped_column(Boolean, default=False)
    evaluated: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    llm_call_ids: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class BenchResult(Base):
    """A benchmark outcome: per item (item_id set) or a run summary (item_id null)."""

    __tablename__ = "bench_results"
    __table_args__ = (UniqueConstraint("run_id", "bench", "result_key", name="uq_bench_results_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    bench: Mapped[str] = mapped_column(String(64))
    result_key: Mapped[str] = mapped_column(String(255))
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"))
    model: Mapped[str | None] = mapped_column(String(255))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    llm_call_ids: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WorkItem(Base):
    """A unit of work in a job's queue; claimed with row locks so workers never share an item."""

    __tablename__ = "work_items"
    __table_args__ = (
        UniqueConstraint("job_key", "item_id", name="uq_work_items_job_item"),
        Index("ix_work_items_claim", "job_key", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_key: Mapped[str] = mapped_column(String(64))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class ReviewUser(Base):
    """An account of the review web app (``carealign review user add``). Only an argon2 hash of the
    password is kept; the password itself is printed once and never stored."""

    __tablename__ = "review_users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # reviewer | admin
    password_hash: Mapped[str] = mapped_column(String(255))
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=True)  # the printed one is for one login
    # moved on by a reset or the user's own change (not by a rehash): sessions of an older epoch end
    password_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ReviewSlot(Base):
    """One of the N independent reviews an item needs (``review.reviews_per_item``). The unique keys
    make two reviewers never hold the same slot and one reviewer never hold two slots of an item.
    ``labels`` is the reviewer's decision per criterion, the input of the agreement figures; the
    decision itself is recorded where the store keeps it for that queue (rubric reviews, factbench
    review judgments, pair flags)."""

    __tablename__ = "review_slots"
    __table_args__ = (
        UniqueConstraint("queue", "item_id", "slot", name="uq_review_slots_slot"),
        UniqueConstraint("queue", "item_id", "user_id", name="uq_review_slots_user"),
        Index("ix_review_slots_user", "user_id", "queue", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    queue: Mapped[str] = mapped_column(String(16))  # rubric | variant | pair
    item_id: Mapped[int] = mapped_column(BigInteger)  # rubric id, panel-decision judgment id, pair id
    slot: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[int] = mapped_column(ForeignKey("review_users.id"))
    status: Mapped[str] = mapped_column(String(16), default="assigned")  # assigned | done
    labels: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    assigned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PairFlag(Base):
    """A reviewer's finding that a preference pair is wrong (and why): exports leave flagged pairs
    out unless asked to include them, and ``carealign trace`` shows the flag."""

    __tablename__ = "pair_flags"
    __table_args__ = (UniqueConstraint("pair_id", "user_id", name="uq_pair_flags_user"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    pair_id: Mapped[int] = mapped_column(ForeignKey("preference_pairs.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("review_users.id"))
    reviewer: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
