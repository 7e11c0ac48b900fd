"""The three review queues: what a page shows of an item, and how a reviewer's decision is recorded.

Each decision goes where the store already keeps that kind of review, and the reviewer's slot is
marked done with the labels the agreement figures compare:

- rubric drafts: ``graphs.rubric_drafts.review.apply_decision`` (approve / edit / reject, the same
  validation as the terminal review; a conditional update, so a draft decided meanwhile is refused).
  With several reviews per item the first decides the draft; the others are independent second
  opinions kept in their slots (decision, reason, edit) for the agreement figures.
- fact-check variants: ``graphs.factbench.review.record_review`` (factbench review judgments).
- preference pairs: ``store.review.decide_pair`` (a wrong pair gets a flag; exports leave it out).

A decision is refused, with the store unchanged, when the reviewer no longer holds the item's slot.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from agents.language import detect_lang
from agents.rubric import BONUS_DIMENSIONS, PROFICIENCY_DIMENSIONS, VETO_DIMENSIONS, Rubric
from graphs.factbench.review import CriterionReview, VariantView, record_review
from graphs.rubric_drafts.review import ReviewDecision, apply_decision
from store import Store, StoreError
from store import review as review_store
from store.review import Account

FIELDS = ("id", "kind", "dimension", "weight", "text")


class FormErrors(Exception):
    """A decision the reviewer must correct: a message and errors per form field."""

    def __init__(self, message: str, fields: dict[str, str] | None = None):
        super().__init__(message)
        self.message, self.fields = message, fields or {}


def language_of(declared: str | None, *texts: str) -> str:
    """The item's ``lang`` attribute: as stored, else detected from its text by the rule that picks
    its prompts' language (``agents.language``)."""
    return declared or detect_lang(" ".join(t or "" for t in texts))


def require_slot(store: Store, queue: str, item_id: int, account: Account) -> None:
    slot = review_store.slot_of(store, queue, item_id, account.id)
    if slot is None or slot["status"] != review_store.ASSIGNED:
        raise StoreError(f"{queue} {item_id} is no longer assigned to you (your claim ran out and it went to "
                         "another reviewer, or you already decided it); nothing recorded")


@dataclass
class Queue:
    name: str
    title: str
    template: str
    guideline: str
    shortcuts: list[tuple[str, str]]
    load: Callable[[Store, int], dict[str, Any] | None]
    decide: Callable[[Any, Account, dict[str, Any], Any], str]
    extra: dict[str, Any] = field(default_factory=dict)


# -- rubric drafts ----------------------------------------------------------------------------------
def criteria_rows(form: Any) -> list[str]:
    """The row keys of the edited criteria, in the order the page submitted them (reordering moves rows)."""
    keys: list[str] = []
    for name, _ in form.multi_items():
        m = re.fullmatch(r"c-(\w+)-(id|kind|dimension|weight|text)", name)
        if m and m.group(1) not in keys:
            keys.append(m.group(1))
    return keys


def rubric_rows(view: dict[str, Any], form: Any = None) -> list[dict[str, Any]]:
    """The criteria rows of the edit table: as submitted (after an error), else as drafted."""
    if form is not None and criteria_rows(form):
        return [{"key": k, "orig": form.get(f"c-{k}-orig", ""),
                 **{f: form.get(f"c-{k}-{f}", "") for f in FIELDS}} for k in criteria_rows(form)]
    return [{"key": str(i), "orig": str(i), "id": c["id"], "kind": c["kind"], "dimension": c.get("dimension") or "",
             "weight": "" if c.get("weight") is None else str(c["weight"]), "text": c["text"]}
            for i, c in enumerate(view["rubric"].get("criteria", []))]


def edited_rubric(form: Any, original: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The rubric the form describes (criteria kept from the draft keep their points, tags and
    origin), and its row keys; a rubric that does not validate is ``FormErrors`` naming the field."""
    rows = criteria_rows(form)
    before = original.get("criteria", [])
    criteria = []
    for key in rows:
        c: dict[str, Any] = {}
        orig = form.get(f"c-{key}-orig", "")
        if re.fullmatch(r"[0-9]+", orig) and int(orig) < len(before):
            c.update({k: v for k, v in before[int(orig)].items() if k in ("points", "tags", "origin")})
        c["id"] = form.get(f"c-{key}-id", "").strip()
        c["text"] = form.get(f"c-{key}-text", "").strip()
        c["kind"] = form.get(f"c-{key}-kind", "")
        c["dimension"] = form.get(f"c-{key}-dimension", "").strip() or None
        c["weight"] = form.get(f"c-{key}-weight", "").strip() or None
        criteria.append(c)
    if not criteria:
        raise FormErrors("a rubric needs at least one criterion")
    try:
        return Rubric.model_validate({"criteria": criteria}).model_dump(mode="json"), rows
    except ValidationError as exc:
        fields: dict[str, str] = {}
        for err in exc.errors():
            loc, msg = err["loc"], err["msg"].removeprefix("Value error, ")
            if len(loc) >= 2 and loc[0] == "criteria" and isinstance(loc[1], int):
                where = f"c-{rows[loc[1]]}-{loc[2]}" if len(loc) > 2 and loc[2] in FIELDS else f"c-{rows[loc[1]]}"
            else:
                where = "criteria"
            fields.setdefault(where, msg)
        raise FormErrors("the edited rubric is not valid: see the marked fields", fields) from None


def decide_rubric(app: Any, account: Account, view: dict[str, Any], form: Any) -> str:
    store = app.store
    action, reason = form.get("action", ""), form.get("reason", "").strip()
    if action not in ("approve", "edit", "reject"):
        raise FormErrors(f"unknown decision {action!r}")
    if action != "approve" and not reason:
        raise FormErrors(f"a reason is required to {action} a rubric", {"reason": "required"})
    edited = edited_rubric(form, view["rubric"])[0] if action == "edit" else None
    require_slot(store, "rubric", view["id"], account)
    labels = {"decision": action}
    if view["status"] != "pending" and review_store.others_done(store, "rubric", view["id"], account.id):
        notes = {"reason": reason, **({"rubric": edited} if edited else {})}
        review_store.finish_slot(store, "rubric", view["id"], account.id, {**labels, "_notes": notes})
        return f"rubric {view['id']}: your {action} is recorded as an independent review"
    try:
        done = apply_decision(store, view["id"], ReviewDecision(decision=action, reason=reason or None,
                                                                  reviewer=account.name, rubric=edited))
    except ValueError as exc:
        raise FormErrors(str(exc)) from None
    review_store.finish_slot(store, "rubric", view["id"], account.id, labels)
    return f"rubric {view['id']}: {done.status}" + (f" (the edit is rubric {done.rubric_id})" if edited else "")


# -- fact-check variants ----------------------------------------------------------------------------
def variant_segments(view: dict[str, Any]) -> dict[str, list[tuple[str, bool]]]:
    """Source and variant text cut around the edit: (text, is the edited part) pieces."""
    inj = view["injection"]

    def cut(text: str, start: Any, end: Any) -> list[tuple[str, bool]]:
        if not isinstance(start, int) or not isinstance(end, int) or not 0 <= start <= end <= len(text):
            return [(text, False)]
        return [(text[:start], False), (text[start:end], True), (text[end:], False)]

    return {"source": cut(view["source"], inj.get("start"), inj.get("end")),
            "variant": cut(view["text"], inj.get("variant_start"), inj.get("variant_end"))}


def decide_variant(app: Any, account: Account, view: dict[str, Any], form: Any) -> str:
    store = app.store
    reviews, fields = [], {}
    for crit in view["passed"]:
        choice, note = form.get(f"v-{crit}", ""), form.get(f"n-{crit}", "").strip()
        if choice not in ("agree", "disagree"):
            fields[f"v-{crit}"] = "agree or disagree"
        elif choice == "disagree" and not note:
            fields[f"n-{crit}"] = "a disagreement needs a note"
        else:
            reviews.append(CriterionReview(crit, choice == "agree", note))
    if fields:
        raise FormErrors("each criterion needs a verdict, and a disagreement a note: see the marked fields", fields)
    require_slot(store, "variant", view["id"], account)
    calls: dict[str, int] = {}
    for v in view["verdicts"]:
        calls.setdefault(v["criterion"], v["llm_call_id"])
    variant = VariantView(view["candidate_id"], view["item_id"], view["round"], view["source"], view["text"],
                          view["error_type"] or "", view["injection"], view["accepted"], view["passed"],
                          call_ids=calls)
    record_review(store, app.review_run(account, view["round"]), variant, account.name, reviews)
    review_store.finish_slot(store, "variant", view["id"], account.id,
                             {r.criterion: "agree" if r.agree else "disagree" for r in reviews})
    return f"variant {view['candidate_id']}: {sum(not r.agree for r in reviews)} disagreement(s) recorded"


# -- preference pairs -------------------------------------------------------------------------------
def decide_pair(app: Any, account: Account, view: dict[str, Any], form: Any) -> str:
    action, reason = form.get("action", ""), form.get("reason", "").strip()
    if action not in ("ok", "wrong"):
        raise FormErrors(f"unknown decision {action!r}")
    if action == "wrong" and not reason:
        raise FormErrors("flagging a pair as wrong needs a reason", {"reason": "required"})
    review_store.decide_pair(app.store, view["id"], account.id, account.name, action == "wrong", reason)
    return f"pair {view['id']}: " + ("flagged as wrong (left out of exports)" if action == "wrong" else "kept")


COMMON_KEYS = [("n", "next item (skip this one)"), ("p", "previous item you decided"), ("?", "show the shortcuts")]

QUEUES: dict[str, Queue] = {
    "rubric": Queue(
        "rubric", "Rubric drafts", "rubric.html",
        "Read the instruction and the reference answer. Approve the draft when every criterion is "
        "clinically right, specific and checkable; proficiency weights must sum to 1; vetoes name "
        "unsafe behaviour. Edit criterion by criterion (add, remove, reorder) when it can be mended; "
        "reject with a reason when it cannot.",
        [("a", "approve"), ("e", "edit the criteria"), ("r", "reject (reason)"), ("Ctrl+Enter", "save the edit"),
         *COMMON_KEYS],
        review_store.rubric_view, decide_rubric,
        {"kinds": ("proficiency", "bonus", "veto"),
         "dimensions": PROFICIENCY_DIMENSIONS + BONUS_DIMENSIONS + VETO_DIMENSIONS}),
    "variant": Queue(
        "variant", "Fact-check variants", "variant.html",
        "Compare the source with the variant (the edit is highlighted). For each criterion, agree with "
        "the panel's verdict or disagree and say why in a note: your note becomes a few-shot example "
        "for the next filtering round.",
        [("1-9", "go to criterion"), ("a", "agree (current criterion)"), ("d", "disagree (current, note)"),
         ("y", "agree with every criterion left"), ("Ctrl+Enter", "save"), *COMMON_KEYS],
        review_store.variant_view, decide_variant),
    "pair": Queue(
        "pair", "Preference pairs", "pair.html",
        "Check that the chosen answer is really better than the rejected one under the rubric "
        "(safety first). Keep a sound pair; flag a wrong one with a reason: exports leave it out.",
        [("o", "keep the pair (ok)"), ("w", "flag as wrong (reason)"), ("Ctrl+Enter", "save the flag"),
         *COMMON_KEYS],
        review_store.pair_view, decide_pair),
}
