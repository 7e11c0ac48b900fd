"""What the per-item graphs share: loading an item, answering and storing a candidate, dropping
exact duplicates, and judging an item's final state."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agents.engine import CallContext, LLMEngine
from agents.errors import LLMCallFailed
from agents.roles import AnswerGenerator
from store import Store
from store.lookups import candidates, item_payload
from store.records import add_candidate

__all__ = ["answer_and_store", "distinct_candidate_ids", "item_payload", "pairing_outcome", "waiting_for_calls"]


async def answer_and_store(store: Store, engine: LLMEngine, payload: dict[str, Any], run_id: str, item_id: int,
                           sample_index: int, seed: int, language: str = "auto") -> dict[str, Any]:
    """One candidate answer as a graph update: ``{"candidate_ids": [id]}``; ``{"failures": [why]}`` when
    the call failed (recorded; a re-run retries it), or ``{"unusable": [why]}`` when the model answered
    with nothing (a re-run would get the same answer from the cache, so it does not hold the pair up).
    ``language``: the pipeline's prompt language setting (``auto``: the item's own)."""
    where = f"generate[{engine.model}:{sample_index}]"
    try:
        res = await AnswerGenerator(engine, language).answer(payload, seed=seed,
                                                             ctx=CallContext(run_id=run_id, item_id=item_id))
    except LLMCallFailed as exc:
        return {"failures": [f"{where}: {exc.reason}"]}
    if not res.text.strip():
        return {"unusable": [f"{where}: empty answer (call {res.call_id})"]}
    with store.session() as s:
        cid = add_candidate(s, run_id=run_id, item_id=item_id, llm_call_id=res.call_id, choice_index=0,
                            sample_index=sample_index, model=engine.model, text=res.text)
    return {"candidate_ids": [cid]}


def distinct_candidate_ids(store: Store, candidate_ids: Iterable[int]) -> list[int]:
    """Candidates with distinct normalised text, first of each kept in (model, sample) order: an
    answer that came twice is judged once and never paired with itself."""
    return first_of_each_text(candidates(store, candidate_ids).values())


def first_of_each_text(rows: Iterable[Any]) -> list[int]:
    """The ids of the candidate rows with distinct normalised text (``text_hash``), the first of
    each in (model, sample) order."""
    seen: set[str] = set()
    distinct = []
    for c in sorted(rows, key=lambda c: (c.model, c.sample_index)):
        if c.text_hash not in seen:
            seen.add(c.text_hash)
            distinct.append(c.id)
    return distinct


def pairing_outcome(state: dict[str, Any]) -> tuple[bool, str, list[str]]:
    """(ok, outcome, failures) of a pair-producing graph: done when the pair was formed or no call
    failed (a clean 'no pair' is a result); otherwise partial or failed, as ``waiting_for_calls``
    said, with the failed calls as reasons."""
    failures = list(state.get("failures", []))
    return bool(state.get("paired")) or not failures, state.get("outcome", "no outcome"), failures


def waiting_for_calls(state: dict[str, Any], stored: int, asked: int) -> str:
    """The outcome of an item whose pair waits for failed calls: ``partial`` when some of its work
    is stored (a re-run does only the rest), ``failed`` when none is."""
    failed = len(state.get("failures", []))
    kind = "partial" if stored else "failed"
    return f"{kind}: {failed} call(s) failed, {stored} of {asked} candidates stored; the pair waits for them"
