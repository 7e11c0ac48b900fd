"""The queries of the fact-check benchmark builder (``graphs/factbench``), and how it stores its rows.

No table of its own (see README "Building a fact-check benchmark"): an injection attempt is a
``bench_results`` row (bench ``factbench_inject``); a verified variant is a ``candidates`` row of its
source item with a ``span_verified`` judgment; filter verdicts, the panel's decision per round and
the experts' reviews are judgments of the variant (kinds below); mining results are
``bench_results`` rows (bench ``factbench_mine``) over the items of dataset ``factbench-mine``.
Functions return ids, plain values or detached rows (read their columns, do not lazy-load).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.db import Store, insert_ignore
from store.models import BenchResult, Candidate, Item, Judgment
from store.records import create_run, finish_run

INJECT_BENCH, MINE_BENCH, MINE_DATASET = "factbench_inject", "factbench_mine", "factbench-mine"
SPAN_CRITERION = "span_verified"
FILTER_KIND, DECISION_KIND, SPAN_KIND = "factbench_filter", "factbench_decision", "factbench_span"
REVIEW_KIND = "factbench_review"
RESULT_KEY = ["run_id", "bench", "result_key"]


# -- build ----------------------------------------------------------------------------------------
def record_attempt(store: Store, row: dict[str, Any]) -> None:
    """One injection attempt (idempotent per run and ``ITEM:INDEX``)."""
    with store.session() as s:
        insert_ignore(s, BenchResult, [{"bench": INJECT_BENCH, **row}], RESULT_KEY)


def run_attempts(store: Store, run_id: str) -> list[BenchResult]:
    with store.session() as s:
        rows = list(s.scalars(select(BenchResult).where(BenchResult.run_id == run_id,
                                                        BenchResult.bench == INJECT_BENCH)))
        s.expunge_all()
    return rows


def run_panel_judgments(store: Store, run_id: str) -> list[Judgment]:
    """The filter verdicts and panel decisions a build run stored."""
    with store.session() as s:
        rows = list(s.scalars(select(Judgment).where(Judgment.run_id == run_id,
                                                     Judgment.criterion_kind.in_((FILTER_KIND, DECISION_KIND)))
                              .order_by(Judgment.id)))
        s.expunge_all()
    return rows


def panel_decisions(store: Store) -> list[tuple[int | None, bool]]:
    """(round, accepted) of every panel decision."""
    with store.session() as s:
        return [(j.details.get("round"), bool(j.met)) for j in
                s.scalars(select(Judgment).where(Judgment.criterion_kind == DECISION_KIND))]


# -- review ---------------------------------------------------------------------------------------
@dataclass
class DecidedVariant:
    """A variant the panel decided in a round, with what a reviewer is shown of it."""

    decision: Judgment
    candidate: Candidate
    source_text: str
    span: Judgment  # the span check, holding the injection
    verdicts: list[Judgment] = field(default_factory=list)  # the round's filter verdicts, in id order


def round_checks(s: Session, candidate_ids: list[int], round_: Any) -> tuple[dict[int, list[Judgment]],
                                                                              dict[int, Judgment]]:
    """Each variant's filter verdicts in ``round_`` (in the order given) and its span check, read in
    one query: what the panel decided a variant on, for the round's export and the review page."""
    verdicts: dict[int, list[Judgment]] = defaultdict(list)
    spans: dict[int, Judgment] = {}
    for j in s.scalars(select(Judgment).where(Judgment.candidate_id.in_(candidate_ids)).order_by(Judgment.id)):
        if j.criterion_kind == FILTER_KIND and (j.details or {}).get("round") == round_:
            verdicts[j.candidate_id].append(j)
        elif j.criterion == SPAN_CRITERION:
            spans[j.candidate_id] = j
    return verdicts, spans


def decided_variants(store: Store, round_: int) -> list[DecidedVariant]:
    """Every variant the panel decided in ``round_``, in candidate order."""
    with store.session() as s:
        decisions = [j for j in s.scalars(select(Judgment).where(Judgment.criterion_kind == DECISION_KIND)
                                          .order_by(Judgment.candidate_id, Judgment.id))
                     if j.details.get("round") == round_]
        verdicts, spans = round_checks(s, [d.candidate_id for d in decisions], round_)
        out = []
        for d in decisions:
            cand = s.get(Candidate, d.candidate_id)
            out.append(DecidedVariant(d, cand, s.get(Item, cand.item_id).payload["text"], spans[d.candidate_id],
                                      verdicts[d.candidate_id]))
        s.expunge_all()
    return out


def reviewed_by(store: Store, reviewer: str, round_: int) -> set[int]:
    """The candidates this reviewer already reviewed in ``round_``."""
    with store.session() as s:
        rows = s.scalars(select(Judgment).where(Judgment.criterion_kind == REVIEW_KIND,
                                                Judgment.judge_model == f"human:{reviewer}"))
        return {j.candidate_id for j in rows if j.details.get("review_round") == round_}


def reviews(store: Store) -> list[Judgment]:
    """Every expert review, in id order."""
    with store.session() as s:
        rows = list(s.scalars(select(Judgment).where(Judgment.criterion_kind == REVIEW_KIND).order_by(Judgment.id)))
        s.expunge_all()
    return rows


def variant_span(store: Store, candidate_id: int) -> tuple[str, Judgment]:
    """A variant's text and its span check (which holds the injection)."""
    with store.session() as s:
        cand = s.get(Candidate, candidate_id)
        span = s.scalars(select(Judgment).where(Judgment.candidate_id == candidate_id,
                                                Judgment.criterion == SPAN_CRITERION)).first()
        s.expunge_all()
    return cand.text, span


def start_review(store: Store, reviewer: str, round_: int, config: dict[str, Any]) -> str:
    """A review session: a run of kind ``factbench-review``, finished by ``finish_review``."""
    with store.session() as s:
        return create_run(s, "factbench-review", {**config, "reviewer": reviewer, "round": round_})


def finish_review(store: Store, run_id: str, stats: dict[str, Any]) -> None:
    with store.session() as s:
        finish_run(s, run_id, "completed", stats)


# -- export and mining ----------------------------------------------------------------------------
@dataclass
class AcceptedVariant:
    """A variant whose latest panel decision accepted it, with its source item and every judgment."""

    decision: Judgment
    candidate: Candidate
    item: Item
    judgments: list[Judgment]  # in id order: span check, filter verdicts, decisions, reviews


def accepted_variants(store: Store) -> list[AcceptedVariant]:
    """Variants accepted by their latest round's decision, in candidate order."""
    with store.session() as s:
        latest: dict[int, Judgment] = {}
        for j in s.scalars(select(Judgment).where(Judgment.criterion_kind == DECISION_KIND).order_by(Judgment.id)):
            if j.candidate_id not in latest or j.details["round"] >= latest[j.candidate_id].details["round"]:
                latest[j.candidate_id] = j
        out = []
        for cid, decision in sorted(latest.items()):
            if not decision.met:
                continue
            cand = s.get(Candidate, cid)
            rows = list(s.scalars(select(Judgment).where(Judgment.candidate_id == cid).order_by(Judgment.id)))
            out.append(AcceptedVariant(decision, cand, s.get(Item, cand.item_id), rows))
        s.expunge_all()
    return out


def mine_items(store: Store) -> dict[int, Item]:
    """The items mined (dataset ``factbench-mine``) by id."""
    with store.session() as s:
        items = {i.id: i for i in s.scalars(select(Item).where(Item.dataset == MINE_DATASET))}
        s.expunge_all()
    return items


def save_mining(store: Store, run_config: dict[str, Any], rows: list[dict[str, Any]], stats: dict[str, Any]) -> str:
    """A ``factbench-mine`` run with one result row per mined item (``result_key``, ``item_id``,
    ``model``, ``metrics``, ``llm_call_ids``); returns the run id."""
    with store.session() as s:
        run_id = create_run(s, "factbench-mine", run_config)
        insert_ignore(s, BenchResult, [{"run_id": run_id, "bench": MINE_BENCH, **r} for r in rows], RESULT_KEY)
        finish_run(s, run_id, "completed", stats)
    return run_id


def latest_mining(store: Store) -> dict[str, dict[str, Any]]:
    """Mined item external id -> the metrics of its latest mining."""
    with store.session() as s:
        return {r.result_key: r.metrics for r in s.scalars(select(BenchResult).where(BenchResult.bench == MINE_BENCH)
                                                           .order_by(BenchResult.id))}
