"""What a pair-producing graph's nodes read and write, kept cheap: ``ItemMemory``.

Each node used to load the item and its candidates by id with an ORM ``get`` and write its rows in a
session of its own: at a fast model server that was most of carealign's CPU per request. Here an
item's payload is read once (items asked for together: one query) and, with the candidates written
for it, kept in memory for the item's life; writes from every item in flight go together as one
``INSERT ... RETURNING`` per wave (``store.batching``, ``store.hot_path``). The state still carries
ids only, and everything is still written before the node returns: an interrupted run loses nothing.
A node that finds nothing in memory (another process wrote it, or the item was evicted) reads the
store, so memory is a shortcut, never the truth.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from agents.engine import CallContext, LLMEngine
from agents.errors import LLMCallFailed
from agents.language import choose_lang
from agents.prompts import localized, prompt_hash, render
from agents.roles import AnswerGenerator, conversation_of
from graphs.common.candidates import first_of_each_text
from graphs.common.fan_out import each, merged
from store import Store
from store.batching import BatchQueue
from store.hot_path import (
    CandidateRow,
    candidate_fields,
    candidate_rows,
    insert_candidates,
    insert_judgment_groups,
    insert_pairs,
    item_payloads,
)

MAX_ITEMS = 20_000  # items remembered at once; the oldest are forgotten first (then read again)


class ItemMemory:
    def __init__(self, store: Store, max_items: int = MAX_ITEMS):
        self.store, self.max_items = store, max_items
        self._payloads: OrderedDict[int, asyncio.Future[dict[str, Any]]] = OrderedDict()
        self._candidates: dict[int, dict[int, CandidateRow]] = {}  # item -> candidate id -> row
        self._languages: dict[int, str] = {}
        self._system: dict[str, dict[str, str]] = {}  # prompt name -> its rendered system message
        self._read_payloads = BatchQueue(lambda ids: item_payloads(store, ids))
        self._read_candidates = BatchQueue(lambda ids: _rows_in_order(store, ids))
        self._write_candidates = BatchQueue(lambda rows: insert_candidates(store, rows))
        self._write_judgments = BatchQueue(lambda groups: insert_judgment_groups(store, groups))
        self._write_pairs = BatchQueue(lambda pairs: insert_pairs(store, pairs))

    # -- reads ----------------------------------------------------------------------------------
    async def payload(self, item_id: int) -> dict[str, Any]:
        """The item's payload (a shallow copy), read once for all its nodes."""
        fut = self._payloads.get(item_id)
        if fut is not None and fut.done() and not fut.cancelled() and fut.exception() is None:
            return dict(fut.result())
        if fut is None or fut.done():  # not asked yet, or the read failed: ask (again)
            fut = asyncio.ensure_future(self._read_payloads.submit(item_id))
            self._payloads[item_id] = fut
            while len(self._payloads) > self.max_items:
                old, _ = self._payloads.popitem(last=False)
                self._candidates.pop(old, None)
                self._languages.pop(old, None)
        return dict(await asyncio.shield(fut))

    async def language(self, item_id: int, setting: str) -> str:
        """The prompt language of the item under ``setting``, as ``agents.roles.item_prompt`` would
        choose it (the setting, else the item's ``lang``, else detected from its conversation),
        decided once per item: passed on as the setting, it skips detection on every call."""
        if setting != "auto":
            return choose_lang(setting)
        lang = self._languages.get(item_id)
        if lang is None:
            payload = await self.payload(item_id)
            lang = self._languages[item_id] = choose_lang(
                "auto", payload.get("lang"), [m["content"] for m in conversation_of(payload)])
        return lang

    async def candidates(self, item_id: int, candidate_ids: Iterable[int]) -> dict[int, CandidateRow]:
        """These candidates of the item: from memory, else from the store (one query for the rest)."""
        known = self._candidates.get(item_id, {})
        ids = list(dict.fromkeys(candidate_ids))
        out = {i: known[i] for i in ids if i in known}
        rest = [i for i in ids if i not in out]
        if rest:
            for row in await asyncio.gather(*(self._read_candidates.submit(i) for i in rest)):
                if row is not None:
                    out[row.id] = row
        return out

    # -- writes ---------------------------------------------------------------------------------
    async def add_candidate(self, **fields: Any) -> int:
        """Store a candidate (once per item, call and choice) and remember it; returns its id."""
        row = candidate_fields(**fields)
        cid = await self._write_candidates.submit(row)
        self._candidates.setdefault(row["item_id"], {}).setdefault(cid, CandidateRow(
            cid, row["item_id"], row["llm_call_id"], row.get("sample_index", 0), row["model"], row["text"],
            row["text_hash"]))
        return cid

    async def add_judgments(self, rows: list[dict[str, Any]]) -> list[int]:
        """Store one candidate's judgments (each once); their ids in order."""
        return await self._write_judgments.submit(rows) if rows else []

    async def add_pair(self, pair: dict[str, Any]) -> bool:
        """Store a preference pair unless it is stored already; whether it was new."""
        return await self._write_pairs.submit(pair)

    def forget(self, item_id: int) -> None:
        """The item's graph is over: drop what was kept for it."""
        self._payloads.pop(item_id, None)
        self._candidates.pop(item_id, None)
        self._languages.pop(item_id, None)

    # -- the shared candidate step ----------------------------------------------------------------
    async def answer_and_store(self, engine: LLMEngine, item_id: int, run_id: str, sample_index: int, seed: int,
                               language: str = "auto") -> dict[str, Any]:
        """``graphs.common.candidates.answer_and_store`` on this memory: one candidate answer as a graph
        update, ``{"candidate_ids": [id]}``, ``{"failures": [why]}`` (the call failed: recorded, a
        re-run retries it) or ``{"unusable": [why]}`` (an empty answer)."""
        where = f"generate[{engine.model}:{sample_index}]"
        payload = await self.payload(item_id)
        # AnswerGenerator.answer's request, with its system prompt rendered once per language
        name = localized(AnswerGenerator.prompt, await self.language(item_id, language))
        system = self._system.get(name)
        if system is None:
            system = self._system[name] = render(name)[0]
        ctx = CallContext(run_id=run_id, item_id=item_id, role=AnswerGenerator.role, prompt_name=name,
                          prompt_hash=prompt_hash(name))
        try:
            res = await engine.chat([system, *conversation_of(payload)], ctx=ctx, seed=seed)
        except LLMCallFailed as exc:
            return {"failures": [f"{where}: {exc.reason}"]}
        if not res.text.strip():
            return {"unusable": [f"{where}: empty answer (call {res.call_id})"]}
        cid = await self.add_candidate(run_id=run_id, item_id=item_id, llm_call_id=res.call_id, choice_index=0,
                                       sample_index=sample_index, model=engine.model, text=res.text)
        return {"candidate_ids": [cid]}

    async def write_candidates(self, item_id: int, run_id: str, asks: Iterable[tuple[LLMEngine, int]], seed: int,
                               language: str = "auto") -> dict[str, Any]:
        """A pair graph's first step as one update: every ``(engine, sample index)`` of ``asks``
        answered at once, each stored as it comes (``answer_and_store``, seed ``seed + index``),
        then ``distinct_ids``: exact duplicates are judged once and paired never."""
        update = merged(await each(self.answer_and_store(engine, item_id, run_id, i, seed + i, language)
                                   for engine, i in asks))
        return {**update, "distinct_ids": await self.distinct_candidate_ids(item_id, update.get("candidate_ids", []))}

    async def distinct_candidate_ids(self, item_id: int, candidate_ids: Iterable[int]) -> list[int]:
        """``graphs.common.candidates.distinct_candidate_ids`` on this memory: distinct normalised texts,
        the first of each kept in (model, sample) order."""
        return first_of_each_text((await self.candidates(item_id, candidate_ids)).values())


def _rows_in_order(store: Store, ids: list[int]) -> list[CandidateRow | None]:
    found = candidate_rows(store, ids)
    return [found.get(i) for i in ids]
