"""The LLM engine: every model call in carealign goes through ``LLMEngine.chat``.

Around a backend it adds what data generation at scale needs:
- a request cache in the store, keyed by model + messages + sampling params + schema, so re-running
  finished work makes no calls (identical requests in flight at once are also sent only once);
- the process-wide limiter (concurrency, requests and tokens per minute);
- retries with exponential backoff and full jitter on transient errors, honouring Retry-After;
- structured output: validated with pydantic, one repair round-trip, then a recorded failure;
- a row in ``llm_calls`` for every outcome, failures included with their reason, and token,
  latency and cost accounting per call and per run.
"""

from __future__ import annotations

import asyncio
import random
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from agents.backends import BackendRequest, BackendResponse, ChatBackend, safe_http_url
from agents.call_log import CallLog
from agents.errors import LLMCallFailed, PermanentLLMError, TransientLLMError
from agents.limits import Limiter
from agents.prompts import language_of, localized, render
from agents.structured import parse_reply, schema_of
from store import Store
from store.records import canonical_json, sha256_of

_SCHEMAS: weakref.WeakKeyDictionary[type[BaseModel], tuple[dict[str, Any], str]] = weakref.WeakKeyDictionary()


def schema_and_json(schema: type[BaseModel]) -> tuple[dict[str, Any], str]:
    """A reply model's JSON schema and its canonical JSON, made once per model class (building a
    pydantic schema costs more than the rest of a request's bookkeeping; it is never mutated)."""
    got = _SCHEMAS.get(schema)
    if got is None:
        built = schema_of(schema)
        got = _SCHEMAS[schema] = (built, canonical_json(built))
    return got


def request_key(model: str, messages: list[dict[str, Any]], params: dict[str, Any], schema_json: str) -> str:
    """The request cache key: ``sha256_of({"model", "messages", "params", "schema"})``, byte for byte
    (keys in sorted order), with the schema's canonical JSON made once per reply model."""
    return sha256_of(f'{{"messages":{canonical_json(messages)},"model":{canonical_json(model)},'
                     f'"params":{canonical_json(params)},"schema":{schema_json}}}')


@dataclass
class EngineConfig:
    model: str
    temperature: float = 0.7
    top_p: float | None = None
    max_tokens: int = 512
    cache: bool = True
    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    retry_after_max: float = 300.0  # a server's Retry-After is honoured up to this many seconds
    repair_retries: int = 1
    prices: dict[str, dict[str, float]] = field(default_factory=dict)  # model -> USD per 1M tokens


@dataclass
class CallContext:
    """Where a call belongs: recorded with it so every output traces back to its run and input."""

    run_id: str | None = None
    item_id: int | None = None
    role: str | None = None
    prompt_name: str | None = None
    prompt_hash: str | None = None


@dataclass
class ChatResult:
    call_id: int | None
    texts: list[str]
    parsed: list[Any] | None
    cached: bool
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    logprobs: list[Any] | None = None  # per choice, see agents.backends.compact_logprobs

    @property
    def text(self) -> str:
        return self.texts[0]

    @property
    def value(self) -> Any:
        return self.parsed[0] if self.parsed else None


@dataclass
class Usage:
    calls: int = 0
    cache_hits: int = 0
    failures: int = 0
    retries: int = 0
    repairs: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class LLMEngine:
    def __init__(self, backend: ChatBackend, config: EngineConfig, limiter: Limiter, store: Store | None = None):
        self.backend, self.config, self.limiter, self.store = backend, config, limiter, store
        self.call_log = CallLog(store) if store is not None else None
        self.usage = Usage()
        self._in_flight: dict[str, asyncio.Task[ChatResult]] = {}

    @property
    def model(self) -> str:
        return self.config.model

    def request_params(self, **overrides: Any) -> dict[str, Any]:
        cfg = self.config
        params = {"temperature": cfg.temperature, "top_p": cfg.top_p, "max_tokens": cfg.max_tokens, "n": 1}
        params.update({k: v for k, v in overrides.items() if v is not None})
        return {k: v for k, v in params.items() if v is not None}

    async def chat(
        self, messages: list[dict[str, Any]], *, schema: type[BaseModel] | None = None,
        ctx: CallContext | None = None, **params: Any,
    ) -> ChatResult:
        """One chat request. Raises ``LLMCallFailed`` (already recorded) if no usable reply came."""
        ctx = ctx or CallContext()
        schema_dict, schema_json = schema_and_json(schema) if schema else (None, "null")
        req = BackendRequest(
            model=self.config.model, messages=messages, params=self.request_params(**params),
            schema=schema_dict, schema_name=schema.__name__ if schema else "reply",
        )
        key = request_key(req.model, req.messages, req.params, schema_json)
        if self.config.cache and self.call_log is not None:
            hit = await self._from_cache(key, schema)
            if hit is not None:
                return hit
        task = self._in_flight.get(key)
        if task is None:
            # The request runs as its own task, shared by every caller asking the same thing at the
            # same time: one caller being cancelled does not cancel the answer the others wait for.
            task = asyncio.ensure_future(self._call(req, key, schema, ctx))
            self._in_flight[key] = task
            task.add_done_callback(lambda t, k=key: self._in_flight.pop(k, None))
        return await asyncio.shield(task)

    async def _from_cache(self, key: str, schema: type[BaseModel] | None) -> ChatResult | None:
        row = await self.call_log.lookup(key)
        if row is None:
            return None
        call_id, choices, stored_parsed, pt, ct, lat, logprobs = row
        texts = list(choices or [])
        parsed = None
        if schema is not None:
            parsed = [schema.model_validate(p) if p is not None else None for p in (stored_parsed or [])]
        self.usage.cache_hits += 1
        return ChatResult(call_id, texts, parsed, True, pt, ct, lat, logprobs)

    async def _call(
        self, req: BackendRequest, key: str, schema: type[BaseModel] | None, ctx: CallContext
    ) -> ChatResult:
        start = time.perf_counter()
        attempts, pt, ct = 0, 0, 0
        messages = req.messages
        resp: BackendResponse | None = None
        parsed: list[Any] | None = None
        error: str | None = None
        for repair_round in range(self.config.repair_retries + 1):
            try:
                resp, n_attempts = await self._send(BackendRequest(req.model, messages, req.params, req.schema,
                                                                   req.schema_name))
                attempts += n_attempts
            except (TransientLLMError, PermanentLLMError) as exc:
                attempts += getattr(exc, "attempts", 1)
                error = str(exc)
                break
            pt, ct = pt + resp.prompt_tokens, ct + resp.completion_tokens
            if schema is None:
                error = None
                break
            parsed, problems = self._validate(resp.choices, schema)
            if any(p is not None for p in parsed):
                error = None
                break
            if (resp.finish_reasons or [None])[0] == "length":  # say why it is broken: it was cut off
                problems[0] = (f"the reply stopped at max_tokens={req.params.get('max_tokens')} before it was "
                               f"complete (write shorter values) - {problems[0]}")
            error = f"invalid structured reply: {problems[0]}"
            if repair_round < self.config.repair_retries:
                self.usage.repairs += 1
                messages = req.messages + [
                    {"role": "assistant", "content": resp.choices[0]},
                    # in the language of the prompt it repairs (its recorded name says which)
                    {"role": "user", "content": render(localized("repair", language_of(ctx.prompt_name)),
                                                       problem=problems[0], schema=req.schema)[0]["content"]},
                ]
        latency_ms = (time.perf_counter() - start) * 1000.0
        cost = self._cost(pt, ct)
        self.usage.calls += 1
        self.usage.retries += max(0, attempts - 1)
        self.usage.prompt_tokens += pt
        self.usage.completion_tokens += ct
        self.usage.latency_ms += latency_ms
        self.usage.cost_usd += cost or 0.0
        ok = error is None
        if not ok:
            self.usage.failures += 1
        call_id = await self._record(req, key, ctx, resp, parsed, pt, ct, latency_ms, attempts, cost, error)
        if not ok:
            raise LLMCallFailed(error, call_id)
        return ChatResult(call_id, list(resp.choices), parsed, False, pt, ct, latency_ms, resp.logprobs)

    async def _send(self, req: BackendRequest) -> tuple[BackendResponse, int]:
        """Send with retries; returns the response and the number of attempts it took."""
        est = sum(len(str(m.get("content", ""))) for m in req.messages) // 3 + int(req.params.get("max_tokens", 0))
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self.limiter.slot(est):
                    resp = await self.backend.complete(req)
                self.limiter.settle_tokens(est, resp.prompt_tokens + resp.completion_tokens)
                return resp, attempt
            except TransientLLMError as exc:
                if attempt > self.config.max_retries:
                    exc.attempts = attempt  # type: ignore[attr-defined]
                    exc.args = (f"{exc.reason} (gave up after {attempt} attempts)",)
                    raise
                await asyncio.sleep(self._backoff(attempt, exc.retry_after))
            except PermanentLLMError as exc:
                exc.attempts = attempt  # type: ignore[attr-defined]
                raise

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Full-jitter exponential backoff, never sooner than the server's Retry-After (up to
        ``retry_after_max``)."""
        cap = min(self.config.backoff_max, self.config.backoff_base * (2 ** (attempt - 1)))
        delay = random.uniform(0, cap)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.config.retry_after_max))
        return delay

    @staticmethod
    def _validate(choices: list[str], schema: type[BaseModel]) -> tuple[list[Any], list[str]]:
        parsed, problems = [], []
        for text in choices:
            try:
                parsed.append(parse_reply(text, schema))
            except ValueError as exc:
                parsed.append(None)
                problems.append(str(exc))
        return parsed, problems or ["no choices in the reply"]

    def _cost(self, pt: int, ct: int) -> float | None:
        price = self.config.prices.get(self.config.model)
        if not price:
            return None
        return (pt * price.get("input", 0.0) + ct * price.get("output", 0.0)) / 1_000_000

    async def _record(self, req, key, ctx, resp, parsed, pt, ct, latency_ms, attempts, cost, error) -> int | None:
        if self.call_log is None:
            return None
        return await self.call_log.record(dict(
                request_hash=key, run_id=ctx.run_id, item_id=ctx.item_id, role=ctx.role,
                prompt_name=ctx.prompt_name, prompt_hash=ctx.prompt_hash, model=req.model,
                base_url=safe_http_url(self.backend.base_url),
                messages=req.messages, params=req.params, response_schema=req.schema,
                choices=list(resp.choices) if resp else None,
                # by alias: what the model wrote, and what validation reads back from the cache
                parsed=([p.model_dump(mode="json", by_alias=True) if p is not None else None for p in parsed]
                        if parsed else None),
                finish_reasons=list(resp.finish_reasons) if resp else None,
                logprobs=resp.logprobs if resp else None,
                prompt_tokens=pt, completion_tokens=ct, latency_ms=latency_ms, attempts=attempts,
                cost_usd=cost, ok=error is None, error=error,
        ))

    async def aclose(self) -> None:
        await self.backend.aclose()
        if self.call_log is not None:
            self.call_log.close()  # waits for queued records to be written
