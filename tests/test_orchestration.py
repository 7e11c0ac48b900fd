"""The cheap hot path of the per-item graphs (issue 20) gives up nothing: the same requests and cache
keys as before, batched writes that keep their natural keys and their per-caller results, and item
completions that still belong to the claiming worker only."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from agents.engine import CallContext, request_key, schema_and_json
from agents.roles import AnswerGenerator
from graphs.common.item_memory import ItemMemory
from store.batching import BatchQueue
from store.queue import DONE, FAILED, claim, complete_many, enqueue
from store.records import create_run, sha256_of, upsert_items


class Reply(BaseModel):
    score: int
    reason: str = ""


def test_the_request_key_is_the_hash_of_the_whole_request_as_before():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Fièvre à 39 °C, \"grave\" ?"}]
    params = {"temperature": 0.7, "max_tokens": 64, "n": 1, "seed": 3}
    for schema in (Reply, None):
        as_dict, as_json = schema_and_json(schema) if schema else (None, "null")
        assert request_key("m", messages, params, as_json) == sha256_of(
            {"model": "m", "messages": messages, "params": params, "schema": as_dict})
    assert schema_and_json(Reply)[0] is schema_and_json(Reply)[0]  # built once per reply model


async def test_a_batch_that_fails_costs_only_the_bad_value_its_caller():
    seen: list[list[int]] = []

    def work(values: list[int]) -> list[int]:
        seen.append(values)
        if 3 in values:
            raise ValueError("three is bad")
        return [v * 10 for v in values]

    queue = BatchQueue(work)
    results = await asyncio.gather(*(queue.submit(v) for v in range(6)), return_exceptions=True)
    assert results[:3] == [0, 10, 20] and results[4:] == [40, 50]
    assert isinstance(results[3], ValueError)
    assert len(seen[0]) == 6  # asked together: one batch first


async def test_candidates_and_judgments_are_stored_once_with_their_ids(store, fake_server, make_engine):
    engine = make_engine(fake_server, store)
    with store.session() as s:
        run_id = create_run(s, "test", {})
        [item_id] = upsert_items(s, "d", [{"payload": {"prompt": "Fever of 39 C?"}}])
    memory = ItemMemory(store)
    # the memory's candidate request is AnswerGenerator's, byte for byte: the second is a cache hit
    direct = await AnswerGenerator(engine).answer({"prompt": "Fever of 39 C?"}, seed=1,
                                                  ctx=CallContext(run_id=run_id, item_id=item_id))
    update = await memory.answer_and_store(engine, item_id, run_id, 1, 1)
    assert len(fake_server.requests) == 1 and engine.usage.cache_hits == 1
    [cid] = update["candidate_ids"]
    again = await ItemMemory(store).answer_and_store(engine, item_id, run_id, 1, 1)  # a re-run
    assert again == update
    rows = await ItemMemory(store).candidates(item_id, [cid])  # read back from the store
    assert rows[cid].text == direct.text and rows[cid].llm_call_id == direct.call_id
    judgments = [{"run_id": run_id, "candidate_id": cid, "llm_call_id": direct.call_id, "criterion": c,
                  "criterion_kind": "generic", "score": 5.0, "reason": "r", "details": {}, "judge_model": "m"}
                 for c in ("accuracy", "safety")]
    first, second = await asyncio.gather(memory.add_judgments(judgments), memory.add_judgments(judgments[::-1]))
    assert first == second[::-1] and len(set(first)) == 2
    pair = {"kind": "generic", "run_id": run_id, "item_id": item_id, "prompt": [], "chosen": "a", "rejected": "b",
            "margin": 1.0}
    assert await asyncio.gather(memory.add_pair(pair), memory.add_pair(pair)) == [True, False]


def test_completions_in_one_batch_belong_to_the_claiming_worker_only(store):
    with store.session() as s:
        ids = upsert_items(s, "d", [{"payload": {"prompt": f"q{i}"}} for i in range(3)])
        enqueue(s, "job", ids)
        mine = claim(s, "job", "me", 2)
        theirs = claim(s, "job", "other", 1)
    outcomes = [(mine[0][0], None, DONE), (mine[1][0], "boom", FAILED), (theirs[0][0], None, DONE)]
    assert complete_many(store, "me", outcomes) == [True, True, False]
    with pytest.raises(ValueError, match="needs its reason"):
        complete_many(store, "me", [(mine[0][0], None, FAILED)])
