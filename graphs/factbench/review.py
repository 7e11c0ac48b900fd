"""Expert review of the filter panel, and what the next filtering round learns from it.

``carealign factbench review`` shows a sample of one round's variants, accepted and rejected, and
the reviewer agrees or disagrees with the panel on each criterion (with a note). A review is a
judgment on the variant's candidate:

    criterion ``review:CRITERION:REVIEWER``, criterion_kind ``factbench_review``,
    met = the expert's verdict on the criterion (the panel's when agreeing, its opposite otherwise),
    reason = the note, judge_model ``human:REVIEWER``, run_id = the review session's run
    (kind ``factbench-review``), llm_call_id = the panel call the expert reviewed (the criterion's
    first judge in that round), details ``{review_round, criterion_id, agree, ai_met, reviewer}``.

Disagreements of rounds before K become few-shot examples in round K's prompt of that criterion
(``fewshot_examples``): the expert's verdict and note, on the variant they concerned.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from agents.filter_panel import Example
from store import Store
from store.factbench import REVIEW_KIND, decided_variants, panel_decisions, reviewed_by, variant_span
from store.factbench import reviews as all_reviews
from store.records import add_judgments


@dataclass
class VariantView:
    """One decided variant as a reviewer sees it."""

    candidate_id: int
    item_id: int
    round: int
    source: str
    text: str
    error_type: str
    injection: dict[str, Any]
    accepted: bool
    passed: dict[str, bool]  # the panel's vote per criterion
    reasons: dict[str, list[str]] = field(default_factory=dict)
    call_ids: dict[str, int] = field(default_factory=dict)  # criterion -> the first judge's call


@dataclass(frozen=True)
class CriterionReview:
    criterion: str
    agree: bool
    note: str = ""


def variants_of_round(store: Store, round_: int) -> list[VariantView]:
    """Every variant the panel decided in ``round_``, with its verdicts, in candidate order."""
    out = []
    for d in decided_variants(store, round_):
        cand, span = d.candidate, d.span
        view = VariantView(cand.id, cand.item_id, round_, d.source_text, cand.text, span.details["error_type"],
                           span.details["injection"], bool(d.decision.met), dict(d.decision.details["passed"]))
        for j in d.verdicts:
            view.reasons.setdefault(j.criterion, []).append(f"{j.judge_model}: {'pass' if j.met else 'fail'}: "
                                                            f"{j.reason}")
            view.call_ids.setdefault(j.criterion, j.llm_call_id)
        out.append(view)
    return out


def sample_for_review(store: Store, round_: int, size: int, seed: int, reviewer: str) -> list[VariantView]:
    """Up to ``size`` variants of the round not yet reviewed by this reviewer: half accepted, half
    rejected (the other side fills in when one runs short), each half drawn with ``seed``."""
    done = reviewed_by(store, reviewer, round_)
    todo = [v for v in variants_of_round(store, round_) if v.candidate_id not in done]
    rng = random.Random(seed)
    accepted = [v for v in todo if v.accepted]
    rejected = [v for v in todo if not v.accepted]
    rng.shuffle(accepted)
    rng.shuffle(rejected)
    half = size // 2
    take_acc = min(len(accepted), max(half, size - len(rejected)))
    take_rej = min(len(rejected), size - take_acc)
    chosen = accepted[:take_acc] + rejected[:take_rej]
    return sorted(chosen, key=lambda v: v.candidate_id)


def record_review(store: Store, run_id: str, view: VariantView, reviewer: str,
                  reviews: list[CriterionReview]) -> list[int]:
    """Store the expert's verdicts on one variant (idempotent per reviewer, criterion and round)."""
    rows = []
    for r in reviews:
        if r.criterion not in view.passed:
            raise ValueError(f"criterion {r.criterion!r} was not judged on variant {view.candidate_id}")
        if not r.agree and not r.note.strip():
            raise ValueError(f"a disagreement needs a note (criterion {r.criterion})")
        ai = view.passed[r.criterion]
        rows.append({"run_id": run_id, "candidate_id": view.candidate_id, "llm_call_id": view.call_ids[r.criterion],
                     "criterion": f"review:{r.criterion}:{reviewer}", "criterion_kind": REVIEW_KIND,
                     "met": ai if r.agree else not ai, "reason": r.note.strip() or None,
                     "judge_model": f"human:{reviewer}",
                     "details": {"review_round": view.round, "criterion_id": r.criterion, "agree": r.agree,
                                 "ai_met": ai, "reviewer": reviewer}})
    with store.session() as s:
        return add_judgments(s, rows)


def fewshot_examples(store: Store, round_: int) -> dict[str, list[Example]]:
    """Criterion id -> the expert disagreements of review rounds before ``round_``, newest first."""
    out: dict[str, list[Example]] = defaultdict(list)
    disagreements = [j for j in all_reviews(store) if not j.details.get("agree") and
                     j.details.get("review_round", round_) < round_]
    for j in reversed(disagreements):
        text, span = variant_span(store, j.candidate_id)
        inj = span.details["injection"]
        out[j.details["criterion_id"]].append(Example(
            text, inj["sentence_id"], inj["original"], inj["replacement"], span.details["error_type"],
            bool(j.met), j.reason or ""))
    return dict(out)


def round_report(store: Store) -> list[dict[str, Any]]:
    """Per filtering round: variants decided, accepted, acceptance rate, variants reviewed, and per
    criterion the share of expert verdicts that agree with the panel (None when nobody reviewed)."""
    decisions = panel_decisions(store)
    done = all_reviews(store)
    rounds = sorted({r for r, _ in decisions if r is not None})
    out = []
    for k in rounds:
        got = [met for r, met in decisions if r == k]
        mine = [j for j in done if j.details.get("review_round") == k]
        agree: dict[str, list[bool]] = defaultdict(list)
        for j in mine:
            agree[j.details["criterion_id"]].append(bool(j.details["agree"]))
        out.append({"round": k, "decided": len(got), "accepted": sum(got),
                    "acceptance_rate": sum(got) / len(got) if got else None,
                    "reviewed": len({j.candidate_id for j in mine}),
                    "agreement": {c: sum(v) / len(v) for c, v in sorted(agree.items())},
                    "disagreements": sum(not j.details["agree"] for j in mine)})
    return out
