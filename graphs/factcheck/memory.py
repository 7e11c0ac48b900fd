"""What the checking graph's nodes read and write, kept cheap: ``CheckMemory``.

Every node used to load the text with an ORM ``get`` (twice: its sentences, then its language) and
store each answer in a session of its own, then load it back by id: at a fast model server that
was most of ``factcheck run``'s CPU per request. Here a text's payload is read once (texts asked
for together: one query, ``ItemMemory``), its prompt language decided once, and each answer is
written with those of every other text in flight (one transaction per wave, ``store.batching``)
and kept, as stored, for the text's life. The state still carries answer ids only, and every answer
is stored before its node returns: an interrupted run loses nothing. What memory lacks (an answer
an earlier run stored, a text evicted) is read from the store, so memory is a shortcut, never the
truth.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from agents.language import choose_lang
from graphs.common.item_memory import MAX_ITEMS, ItemMemory
from store import Store, StoreError
from store.batching import BatchQueue
from store.factcheck import AGENT_ROLES, AnswerRow, insert_answers, item_answers


class CheckMemory:
    """Texts and answers of one fact-checking job, per text for the text's life."""

    def __init__(self, store: Store, job_key: str, max_items: int = MAX_ITEMS):
        self.job_key, self.max_items = job_key, max_items
        self.items = ItemMemory(store, max_items)
        self._answers: OrderedDict[int, dict[int, AnswerRow]] = OrderedDict()  # item -> answer id -> row
        self._read_all: set[int] = set()  # items whose stored answers were all read
        self._languages: dict[int, str] = {}
        self._write = BatchQueue(lambda rows: insert_answers(store, rows))
        self._read = BatchQueue(lambda ids: item_answers(store, job_key, ids))

    # -- the text ---------------------------------------------------------------------------------
    async def payload(self, item_id: int) -> dict[str, Any]:
        """The text's payload (gold fields included: only the location judge reads those)."""
        return await self.items.payload(item_id)

    async def sentences(self, item_id: int) -> list[str]:
        return list((await self.items.payload(item_id))["sentences"])

    async def language(self, item_id: int, setting: str) -> str:
        """The checkers' prompt language for this text, as ``FactChecker`` chooses it (the setting,
        else the text's ``lang``, else detected from its sentences), decided once: passed to the
        checker as the text's language, it gives the same prompts without detecting on every call."""
        if setting != "auto":
            return choose_lang(setting)
        lang = self._languages.get(item_id)
        if lang is None:
            payload = await self.items.payload(item_id)
            lang = self._languages[item_id] = choose_lang(setting, payload.get("lang"), list(payload["sentences"]))
        return lang

    # -- answers ----------------------------------------------------------------------------------
    async def save(self, row: dict[str, Any]) -> AnswerRow:
        """Store an answer (idempotent on its slot) and remember it; the answer stored in its slot."""
        stored = await self._write.submit(row)
        self._remember(stored)
        return stored

    async def answer(self, item_id: int, answer_id: int) -> AnswerRow:
        """One answer of the text by id: from memory, else from the store."""
        found = self._answers.get(item_id, {}).get(answer_id)
        if found is None:
            await self._read_stored(item_id)
            found = self._answers.get(item_id, {}).get(answer_id)
        if found is None or found.item_id != item_id:
            raise StoreError(f"check answer {answer_id} is not in the store")
        return found

    async def round_answers(self, item_id: int, round_: int) -> list[AnswerRow]:
        """The agents' answers to the text in one round, in agent order, as ``store.factcheck.round_answers``
        (answers an earlier run of the job stored included)."""
        await self._read_stored(item_id)
        rows = [a for a in self._answers.get(item_id, {}).values() if a.round == round_ and a.role in AGENT_ROLES]
        return sorted(rows, key=lambda a: a.agent)

    def forget(self, item_id: int) -> None:
        """The text's graph is over: drop what was kept for it."""
        self.items.forget(item_id)
        self._answers.pop(item_id, None)
        self._read_all.discard(item_id)
        self._languages.pop(item_id, None)

    async def _read_stored(self, item_id: int) -> None:
        if item_id in self._read_all:
            return
        for row in await self._read.submit(item_id):
            self._remember(row)
        self._read_all.add(item_id)

    def _remember(self, row: AnswerRow) -> None:
        answers = self._answers.get(row.item_id)
        if answers is None:
            answers = self._answers[row.item_id] = {}
            while len(self._answers) > self.max_items:
                old, _ = self._answers.popitem(last=False)
                self._read_all.discard(old)
                self._languages.pop(old, None)
        answers.setdefault(row.id, row)
