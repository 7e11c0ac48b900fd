"""LLMEngine end to end against the real fake OpenAI server: retries, failure records, structured
output and repair, response formats, the request cache, in-flight sharing, limits, secrets,
the LangChain backend and usage accounting."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import pytest
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field
from sqlalchemy import select

from agents import limits
from agents.backends import LangChainBackend, OpenAICompatBackend
from agents.engine import CallContext, EngineConfig, LLMEngine
from agents.errors import LLMCallFailed, LLMUnavailable
from agents.limits import Limiter, TokenBucket, shared_limiter
from store import Store
from store.models import LLMCall
from store.records import create_run
from tests.fake_server import FakeOpenAIServer, Reply

MSG = [{"role": "user", "content": "How much water should an adult drink per day?"}]
CTX = CallContext(run_id=None, role="test")


class Score(BaseModel):
    score: int = Field(ge=0, le=10)


def rows(store: Store) -> list[dict[str, Any]]:
    """Every llm_calls row, all columns, oldest first."""
    with store.session() as s:
        found = s.scalars(select(LLMCall).order_by(LLMCall.id)).all()
        return [{c.key: getattr(r, c.key) for c in LLMCall.__table__.columns} for r in found]


def words(text: str) -> int:
    return len(text.split())




# -- retries ------------------------------------------------------------------------------------
async def test_429_retry_after_is_honoured(fake_server, sqlite_store, make_engine):
    engine = make_engine(fake_server, sqlite_store, backoff_max=2.0)
    fake_server.script([Reply(status=429, headers={"Retry-After": "1"}), Reply(content="ok")])
    start = time.perf_counter()
    result = await engine.chat(MSG, ctx=CTX)
    elapsed = time.perf_counter() - start
    assert result.text == "ok"
    assert len(fake_server.requests) == 2
    assert elapsed >= 0.9, "the retry came before the server's Retry-After"
    [row] = rows(sqlite_store)
    assert row["ok"] is True and row["attempts"] == 2 and row["id"] == result.call_id
    assert engine.usage.retries == 1


@pytest.mark.parametrize("fault, timeout", [
    (Reply(status=500), 2.0),
    (Reply(delay=1.5), 0.3),  # the client times out before the server answers
    (Reply(raw_body="{not json"), 2.0),
    (Reply(raw_body='{"object": "error", "message": "overloaded"}'), 2.0),  # 200 without choices
], ids=["http-500", "read-timeout", "malformed-json", "no-choices-key"])
async def test_transient_fault_then_success(fake_server, sqlite_store, make_engine, fault, timeout):
    engine = make_engine(fake_server, sqlite_store, timeout=timeout)
    fake_server.script([fault, Reply(content="ok")])
    result = await engine.chat(MSG, ctx=CTX)
    assert result.texts == ["ok"] and not result.cached
    assert len(fake_server.requests) == 2
    [row] = rows(sqlite_store)
    assert row["ok"] is True and row["attempts"] == 2 and row["choices"] == ["ok"]


async def test_gives_up_after_max_retries_and_records_the_failure(fake_server, store, make_engine):
    with store.session() as s:
        run_id = create_run(s, "test", {"t": 1})
    engine = make_engine(fake_server, store, max_retries=2)
    fake_server.script([Reply(status=503)] * 10)
    with pytest.raises(LLMCallFailed) as failed:
        await engine.chat(MSG, ctx=CallContext(run_id=run_id, role="test"))
    assert len(fake_server.requests) == 3
    assert "HTTP 503" in failed.value.reason
    [row] = rows(store)
    assert row["id"] == failed.value.call_id
    assert row["ok"] is False and "HTTP 503" in row["error"]
    assert row["attempts"] == 3 and row["run_id"] == run_id
    assert not row["choices"]
    assert engine.usage.failures == 1 and engine.usage.calls == 1


async def test_http_400_is_not_retried_and_is_recorded(fake_server, sqlite_store, make_engine):
    engine = make_engine(fake_server, sqlite_store)
    fake_server.script([Reply(status=400), Reply(content="never sent")])
    with pytest.raises(LLMCallFailed) as failed:
        await engine.chat(MSG, ctx=CTX)
    assert len(fake_server.requests) == 1
    [row] = rows(sqlite_store)
    assert row["ok"] is False and "HTTP 400" in row["error"] and row["attempts"] == 1
    assert row["id"] == failed.value.call_id


async def test_reply_with_empty_choices_is_not_a_success(fake_server, sqlite_store, make_engine):
    engine = make_engine(fake_server, sqlite_store)
    fake_server.script([Reply(raw_body='{"choices": []}'), Reply(content="ok")])
    try:
        result = await engine.chat(MSG, ctx=CTX)
    except LLMCallFailed:
        result = None
    assert result is None or result.texts == ["ok"]
    assert not [r for r in rows(sqlite_store) if r["ok"] and not r["choices"]]


# -- structured output --------------------------------------------------------------------------
async def test_out_of_range_structured_reply_is_repaired(fake_server, sqlite_store, make_engine):
    engine = make_engine(fake_server, sqlite_store)
    bad = '{"score": 2097453861937917}'
    fake_server.script([Reply(content=bad), Reply(content='{"score": 7}')])
    result = await engine.chat(MSG, schema=Score, ctx=CTX)
    assert isinstance(result.value, Score) and result.value.score == 7
    assert len(fake_server.requests) == 2
    assert fake_server.requests[0]["messages"] == MSG
    repair = fake_server.requests[1]["messages"]
    assert repair[: len(MSG)] == MSG
    assert repair[len(MSG)] == {"role": "assistant", "content": bad}
    assert repair[len(MSG) + 1]["role"] == "user" and len(repair) == len(MSG) + 2
    assert "score" in repair[-1]["content"] and "less than or equal to 10" in repair[-1]["content"]
    [row] = rows(sqlite_store)
    assert row["ok"] is True and row["parsed"] == [{"score": 7}] and row["messages"] == MSG
    assert engine.usage.repairs == 1


async def test_a_reply_cut_off_at_max_tokens_says_so(fake_server, sqlite_store, make_engine):
    engine = make_engine(fake_server, sqlite_store, max_tokens=8)
    cut = Reply(content='{"score": 7, "no', finish_reason="length")
    fake_server.script([cut, cut])
    with pytest.raises(LLMCallFailed) as failed:
        await engine.chat(MSG, schema=Score, ctx=CTX)
    assert "stopped at max_tokens=8 before it was complete" in failed.value.reason
    assert "stopped at max_tokens=8" in fake_server.requests[1]["messages"][-1]["content"]  # the repair says why


async def test_structured_reply_invalid_twice_fails_with_the_schema_problem(fake_server, sqlite_store,
                                                                           make_engine):
    engine = make_engine(fake_server, sqlite_store)
    fake_server.script([Reply(content='{"score": 2097453861937917}'), Reply(content='{"score": -3}')])
    with pytest.raises(LLMCallFailed) as failed:
        await engine.chat(MSG, schema=Score, ctx=CTX)
    assert len(fake_server.requests) == 2
    assert "schema" in failed.value.reason and "score" in failed.value.reason
    [row] = rows(sqlite_store)
    assert row["ok"] is False and row["error"] == failed.value.reason and row["id"] == failed.value.call_id


async def test_fenced_json_reply_parses(fake_server, sqlite_store, make_engine):
    engine = make_engine(fake_server, sqlite_store)
    fake_server.script([Reply(content='Here you go:\n```json\n{"score": 3}\n```')])
    result = await engine.chat(MSG, schema=Score, ctx=CTX)
    assert result.value == Score(score=3)
    assert len(fake_server.requests) == 1


# -- request body -------------------------------------------------------------------------------
@pytest.mark.parametrize("style, expected", [
    ("json_schema", {"type": "json_schema",
                     "json_schema": {"name": "Score", "schema": Score.model_json_schema(), "strict": False}}),
    ("json_object", {"type": "json_object", "schema": Score.model_json_schema()}),
    ("none", None),
], ids=["json_schema", "json_object", "none"])
async def test_response_format_follows_the_style(fake_server, sqlite_store, make_engine, style, expected):
    engine = make_engine(fake_server, sqlite_store, style=style)
    fake_server.script([Reply(content='{"score": 1}')])
    await engine.chat(MSG, schema=Score, ctx=CTX)
    [body] = fake_server.requests
    assert body.get("response_format") == expected
    assert ("response_format" in body) is (expected is not None)


async def test_no_response_format_without_a_schema(fake_server, sqlite_store, make_engine):
    engine = make_engine(fake_server, sqlite_store, style="json_schema")
    await engine.chat(MSG, ctx=CTX)
    assert "response_format" not in fake_server.requests[0]


async def test_max_tokens_is_sent_in_every_request(fake_server, sqlite_store, make_engine):
    """llama.cpp ignores ``max_completion_tokens``: the cap must travel as ``max_tokens``."""
    engine = make_engine(fake_server, sqlite_store, max_tokens=77)
    fake_server.script([Reply(status=500), Reply(content='{"score": 99}'), Reply(content='{"score": 1}')])
    await engine.chat(MSG, schema=Score, ctx=CTX)
    await engine.chat(MSG, ctx=CTX, seed=5, temperature=0.1)
    assert len(fake_server.requests) == 4
    for body in fake_server.requests:
        assert body["max_tokens"] == 77
        assert "max_completion_tokens" not in body
    assert fake_server.requests[-1]["seed"] == 5 and fake_server.requests[-1]["temperature"] == 0.1


# -- cache --------------------------------------------------------------------------------------
async def test_identical_request_is_served_from_the_cache(fake_server, store, make_engine):
    engine = make_engine(fake_server, store)
    first = await engine.chat(MSG, ctx=CTX, seed=1)
    second = await engine.chat(MSG, ctx=CTX, seed=1)
    assert not first.cached and second.cached
    assert second.call_id == first.call_id and second.texts == first.texts
    assert len(fake_server.requests) == 1
    # the cache lives in the store: a new engine (a re-run) makes no call either
    again = await make_engine(fake_server, store).chat(MSG, ctx=CTX, seed=1)
    assert again.cached and again.call_id == first.call_id
    assert len(fake_server.requests) == 1
    other_seed = await engine.chat(MSG, ctx=CTX, seed=2)
    assert not other_seed.cached and other_seed.call_id != first.call_id
    assert len(fake_server.requests) == 2
    assert len(rows(store)) == 2
    assert engine.usage.calls == 2 and engine.usage.cache_hits == 1


async def test_cached_structured_reply_is_a_validated_model(fake_server, sqlite_store, make_engine):
    engine = make_engine(fake_server, sqlite_store)
    fake_server.script([Reply(content='{"score": 7}')])
    await engine.chat(MSG, schema=Score, ctx=CTX)
    hit = await engine.chat(MSG, schema=Score, ctx=CTX)
    assert hit.cached and hit.value == Score(score=7)
    # the same messages without a schema are a different request
    plain = await engine.chat(MSG, ctx=CTX)
    assert not plain.cached and len(fake_server.requests) == 2


async def test_cache_off_calls_the_server_every_time(fake_server, sqlite_store, make_engine):
    engine = make_engine(fake_server, sqlite_store, cache=False)
    first = await engine.chat(MSG, ctx=CTX, seed=1)
    second = await engine.chat(MSG, ctx=CTX, seed=1)
    assert not first.cached and not second.cached and first.call_id != second.call_id
    assert len(fake_server.requests) == 2 and len(rows(sqlite_store)) == 2


async def test_failed_call_is_never_served_from_the_cache(fake_server, store, make_engine):
    engine = make_engine(fake_server, store)
    fake_server.script([Reply(status=400), Reply(content="ok")])
    with pytest.raises(LLMCallFailed) as failed:
        await engine.chat(MSG, ctx=CTX)
    retry = await engine.chat(MSG, ctx=CTX)
    assert not retry.cached and retry.text == "ok" and retry.call_id != failed.value.call_id
    assert len(fake_server.requests) == 2
    hit = await engine.chat(MSG, ctx=CTX)
    assert hit.cached and hit.call_id == retry.call_id and hit.text == "ok"
    assert [r["ok"] for r in rows(store)] == [False, True]


async def test_identical_concurrent_requests_reach_the_server_once(fake_server, sqlite_store, make_engine):
    engine = make_engine(fake_server, sqlite_store)
    fake_server.script([Reply(content="shared", delay=0.2)])
    results = await asyncio.gather(*(engine.chat(MSG, ctx=CTX, seed=3) for _ in range(5)))
    assert len(fake_server.requests) == 1
    assert {r.call_id for r in results} == {results[0].call_id}
    assert all(r.texts == ["shared"] for r in results)
    assert len(rows(sqlite_store)) == 1


async def test_cancelling_one_caller_does_not_cancel_identical_waiters(fake_server, sqlite_store,
                                                                     make_engine):
    engine = make_engine(fake_server, sqlite_store)
    fake_server.script([Reply(content="slow", delay=0.5), Reply(content="ok")])
    owner = asyncio.create_task(engine.chat(MSG, ctx=CTX))
    await asyncio.sleep(0.1)
    waiter = asyncio.create_task(engine.chat(MSG, ctx=CTX))
    await asyncio.sleep(0.1)
    owner.cancel()
    try:
        result = await asyncio.wait_for(waiter, 5)
    except asyncio.CancelledError:
        pytest.fail("a caller that was never cancelled got CancelledError from another caller's cancel")
    assert result.text in ("slow", "ok")


# -- limits -------------------------------------------------------------------------------------
async def test_shared_limiter_bounds_concurrency_across_engines(sqlite_store, make_engine):
    limiter = Limiter(3)
    with FakeOpenAIServer(latency=0.2) as server:
        a = make_engine(server, sqlite_store, limiter=limiter)
        b = make_engine(server, sqlite_store, limiter=limiter)
        start = time.perf_counter()
        results = await asyncio.gather(*((a if i % 2 else b).chat(MSG, ctx=CTX, seed=i) for i in range(12)))
        elapsed = time.perf_counter() - start
        assert len(server.requests) == 12
        assert server.peak_concurrency <= 3
        assert server.peak_concurrency == 3, "the limiter serialised requests it should run in parallel"
    assert all(not r.cached for r in results) and len({r.call_id for r in results}) == 12
    assert limiter.peak_in_flight == 3
    assert elapsed >= 4 * 0.2 * 0.9


def test_shared_limiter_is_one_object_per_process(monkeypatch):
    monkeypatch.setattr(limits, "_SHARED", None)
    first = shared_limiter(3)
    assert shared_limiter(3) is first
    assert first.concurrency == 3


async def test_token_bucket_waits_for_refill_when_empty():
    bucket = TokenBucket(per_minute=60)  # a full bucket of 60, refilled at 1 per second
    start = time.monotonic()
    for _ in range(60):
        await bucket.take(1)
    assert time.monotonic() - start < 0.3
    await bucket.take(1)
    elapsed = time.monotonic() - start
    assert 0.9 <= elapsed < 1.6


# -- secrets ------------------------------------------------------------------------------------
async def test_api_key_goes_only_into_the_authorization_header(fake_server, sqlite_store, make_engine,
                                                              monkeypatch):
    monkeypatch.setenv("CAREALIGN_TEST_KEY", "sk-secret-123")
    engine = make_engine(fake_server, sqlite_store, api_key_env="CAREALIGN_TEST_KEY")
    fake_server.script([Reply(content="ok"), Reply(status=400)])
    assert (await engine.chat(MSG, ctx=CTX)).text == "ok"
    with pytest.raises(LLMCallFailed) as failed:
        await engine.chat(MSG, ctx=CTX, seed=9)
    assert [h["authorization"] for h in fake_server.headers] == ["Bearer sk-secret-123"] * 2
    assert "sk-secret-123" not in json.dumps(fake_server.requests)
    assert "sk-secret-123" not in failed.value.reason
    stored = rows(sqlite_store)
    assert [r["ok"] for r in stored] == [True, False]
    assert "sk-secret-123" not in json.dumps(stored, default=str)


async def test_credentials_in_base_url_are_not_stored(fake_server, sqlite_store, make_engine):
    url = f"http://user:s3cr3tpw@127.0.0.1:{fake_server.port}/v1"
    engine = make_engine(fake_server, sqlite_store, base_url=url)
    fake_server.script([Reply(content="ok"), Reply(status=400)])
    await engine.chat(MSG, ctx=CTX)
    with pytest.raises(LLMCallFailed) as failed:
        await engine.chat(MSG, ctx=CTX, seed=9)
    assert "s3cr3tpw" not in failed.value.reason
    stored = rows(sqlite_store)
    assert [r["base_url"] for r in stored] == [fake_server.base_url] * 2
    assert "s3cr3tpw" not in json.dumps(stored, default=str)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_unreachable_server_error_does_not_show_url_credentials():
    backend = OpenAICompatBackend(f"http://user:s3cr3tpw@127.0.0.1:{_closed_port()}/v1", api_key_env=None)
    try:
        with pytest.raises(LLMUnavailable) as unavailable:
            await backend.check()
    finally:
        await backend.aclose()
    assert "127.0.0.1" in str(unavailable.value)
    assert "s3cr3tpw" not in str(unavailable.value)


# -- LangChain backend --------------------------------------------------------------------------
def langchain_engine(server: FakeOpenAIServer, store: Store, **config: Any) -> LLMEngine:
    chat_model = ChatOpenAI(base_url=server.base_url, api_key="x", model="fake-model", max_retries=0,
                            timeout=5)
    cfg = {"max_retries": 3, "backoff_base": 0.01, "backoff_max": 0.05, **config}
    return LLMEngine(LangChainBackend(chat_model), EngineConfig(model="fake-model", **cfg), Limiter(4), store)


async def test_langchain_backend_through_the_engine(fake_server, sqlite_store):
    engine = langchain_engine(fake_server, sqlite_store)
    result = await engine.chat(MSG, ctx=CTX, seed=4)
    assert len(fake_server.requests) == 1
    assert result.text.startswith("echo(seed=4)")
    assert result.prompt_tokens == words(MSG[0]["content"]) > 0
    assert result.completion_tokens == words(result.text)
    [row] = rows(sqlite_store)
    assert row["ok"] is True and row["prompt_tokens"] == result.prompt_tokens
    assert row["completion_tokens"] == result.completion_tokens


async def test_langchain_backend_5xx_is_retried_by_the_engine(fake_server, sqlite_store):
    engine = langchain_engine(fake_server, sqlite_store)
    fake_server.script([Reply(status=500), Reply(content="ok")])
    result = await engine.chat(MSG, ctx=CTX)
    assert result.text == "ok"
    assert len(fake_server.requests) == 2
    [row] = rows(sqlite_store)
    assert row["ok"] is True and row["attempts"] == 2


async def test_langchain_backend_sends_max_tokens(fake_server, sqlite_store):
    engine = langchain_engine(fake_server, sqlite_store, max_tokens=77)
    await engine.chat(MSG, ctx=CTX)
    [body] = fake_server.requests
    assert body.get("max_tokens") == 77
    assert "max_completion_tokens" not in body


# -- accounting ---------------------------------------------------------------------------------
async def test_usage_tokens_and_cost_match_what_the_server_reported(fake_server, sqlite_store, make_engine):
    engine = make_engine(fake_server, sqlite_store, prices={"fake-model": {"input": 1.0, "output": 2.0}})
    conversations = [MSG, [{"role": "system", "content": "Be brief."}, *MSG],
                     [{"role": "user", "content": "one two three four five six"}]]
    results = [await engine.chat(m, ctx=CTX, seed=i) for i, m in enumerate(conversations)]
    await engine.chat(conversations[0], ctx=CTX, seed=0)  # a cache hit costs nothing
    pt = sum(words(m["content"]) for body in fake_server.requests for m in body["messages"])
    ct = sum(words(t) for r in results for t in r.texts)
    assert len(fake_server.requests) == 3
    assert engine.usage.calls == 3 and engine.usage.cache_hits == 1
    assert engine.usage.prompt_tokens == pt and engine.usage.completion_tokens == ct
    assert pt > 0 and ct > 0
    assert engine.usage.cost_usd == pytest.approx((pt * 1.0 + ct * 2.0) / 1e6)
    stored = rows(sqlite_store)
    assert sum(r["prompt_tokens"] for r in stored) == pt
    assert sum(r["completion_tokens"] for r in stored) == ct
    assert sum(r["cost_usd"] for r in stored) == pytest.approx(engine.usage.cost_usd)


async def test_concurrent_calls_are_recorded_in_shared_batches_with_their_own_ids(sqlite_store, make_engine):
    """The call log batches inserts made together, and each caller still gets its own row's id."""
    with FakeOpenAIServer(latency=0.1) as server:
        server.responder = lambda body: f"reply to seed {body['seed']}"
        engine = make_engine(server, sqlite_store, limiter=Limiter(40))
        results = await asyncio.gather(*(engine.chat(MSG, ctx=CTX, seed=i) for i in range(40)))
    assert engine.call_log.batches < 40
    stored = {r["id"]: r for r in rows(sqlite_store)}
    assert len(stored) == 40
    for i, res in enumerate(results):
        assert stored[res.call_id]["choices"] == [f"reply to seed {i}"] == res.texts
        assert stored[res.call_id]["params"]["seed"] == i


async def test_a_row_the_database_rejects_does_not_cost_the_others_their_records(store):
    """CallLog inserts in batches; when one row fails, the rest are retried alone and stored."""
    from agents.call_log import CallLog

    log = CallLog(store)
    good = [{"request_hash": f"h{i}", "model": "m", "messages": [], "params": {}} for i in range(6)]
    bad = {"request_hash": "bad", "model": None, "messages": [], "params": {}}  # NOT NULL violation
    results = await asyncio.gather(*(log.record(dict(r)) for r in [*good[:3], bad, *good[3:]]),
                                   return_exceptions=True)
    log.close()
    assert isinstance(results[3], Exception)
    ids = [r for i, r in enumerate(results) if i != 3]
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == 6
    stored = {r["id"]: r["request_hash"] for r in rows(store)}
    assert [stored[i] for i in ids] == [f"h{i}" for i in range(6)]


async def test_nul_characters_in_replies_are_stored_as_replacement_characters(fake_server, store, make_engine):
    engine = make_engine(fake_server, store)
    fake_server.script([Reply(content="bad\x00byte")])
    result = await engine.chat(MSG, ctx=CTX)
    assert result.text == "bad\ufffdbyte"
    assert rows(store)[0]["choices"] == ["bad\ufffdbyte"]


async def test_model_is_taken_from_the_server_list_with_the_api_key(fake_server, sqlite_store, monkeypatch):
    from carealign.engines import open_engines
    from carealign.settings import load_settings

    monkeypatch.setenv("CAREALIGN_TEST_KEY", "sk-list-models")
    settings = load_settings(None, base_url=fake_server.base_url, api_key_env="CAREALIGN_TEST_KEY")
    async with open_engines(settings, sqlite_store) as engines:
        assert engines.generator.model == "fake-model" and engines.judge.model == "fake-model"
    assert fake_server.model_list_headers[-1]["authorization"] == "Bearer sk-list-models"
    assert engines.generator.backend._closed and engines.judge.backend._closed


async def test_a_failed_server_check_closes_what_was_already_opened(fake_server, sqlite_store, monkeypatch):
    """The generator engine opens, the judge's server is down: both are closed, one clear error."""
    from agents import backends
    from carealign.engines import open_engines
    from carealign.settings import load_settings

    made: list = []
    real_init = backends.OpenAICompatBackend.__init__

    def recording_init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(backends.OpenAICompatBackend, "__init__", recording_init)
    settings = load_settings(None, base_url=fake_server.base_url, judge_base_url="http://127.0.0.1:9/v1")
    with pytest.raises(LLMUnavailable, match="cannot reach the model server at http://127.0.0.1:9/v1"):
        async with open_engines(settings, sqlite_store):
            pass
    assert len(made) == 2 and all(b._closed for b in made)


def test_llama_cpp_style_drops_string_length_bounds_that_crash_its_grammar_compiler():
    from pydantic import BaseModel, Field

    from agents.backends import response_format
    from agents.structured import schema_of

    class Reply(BaseModel):
        reasoning: str = Field(min_length=800, max_length=4000)
        note: str | None = Field(default=None, max_length=2000)
        score: int = Field(ge=0, le=10)

    schema = schema_of(Reply)
    loose = response_format("json_object", schema, "r")["schema"]
    assert "maxLength" not in json.dumps(loose) and "minLength" not in json.dumps(loose)
    assert loose["properties"]["score"] == schema["properties"]["score"]  # other bounds kept
    strict = response_format("json_schema", schema, "r")["json_schema"]["schema"]
    assert strict["properties"]["reasoning"]["minLength"] == 800  # vLLM gets the schema unchanged
