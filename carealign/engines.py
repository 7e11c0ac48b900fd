"""From settings to ready engines: start the embedded model if no server is given, check that the
server answers before anything is written, and hand out generator and judge engines that share
the process's one limiter. A role's server may be several replicas (``agents.replicas``)."""

from __future__ import annotations

import asyncio
import sys
import warnings
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

from agents.backends import OpenAICompatBackend
from agents.engine import EngineConfig, LLMEngine
from agents.errors import LLMUnavailable
from agents.limits import shared_limiter
from agents.local_server import LocalServer, LocalServerConfig
from agents.replicas import ReplicaBackend, safe_urls, split_urls
from carealign.settings import Settings
from store import Store


@dataclass
class Engines:
    generator: LLMEngine
    judge: LLMEngine
    local: LocalServer | None
    more_generators: list[LLMEngine] = field(default_factory=list)
    more_judges: list[LLMEngine] = field(default_factory=list)  # on the judge's server

    @property
    def second_judge(self) -> LLMEngine | None:
        return self.more_judges[0] if self.more_judges else None

    @property
    def judges(self) -> list[LLMEngine]:
        return [self.judge, *self.more_judges]

    @property
    def generators(self) -> list[LLMEngine]:
        return [self.generator, *self.more_generators]

    @property
    def same_model(self) -> bool:
        return (self.generator.model == self.judge.model
                and self.generator.backend.base_url == self.judge.backend.base_url)


def local_server_config(settings: Settings, port: int | None = None) -> LocalServerConfig:
    """The embedded server as the settings describe it (``carealign serve-local`` and every workflow)."""
    return LocalServerConfig(
        model=settings.local_model, n_ctx=settings.local_n_ctx, n_threads=settings.local_threads, port=port,
        startup_timeout=settings.local_startup_timeout, server=settings.local_server,
        parallel=settings.local_parallel, binary=settings.local_server_binary, jinja=settings.local_jinja,
    )


def _style(settings: Settings, local: LocalServer | None) -> str:
    """How constrained decoding is asked for. llama.cpp's native server takes OpenAI's
    ``json_schema`` (string bounds and enums included); llama-cpp-python's server answers HTTP 500 to
    it and takes ``json_object`` with a schema."""
    if settings.response_format != "auto":
        return settings.response_format
    return "json_object" if local is not None and local.kind == "python" else "json_schema"


def _backend(settings: Settings, base_url: str, local: LocalServer | None) -> OpenAICompatBackend | ReplicaBackend:
    """One server, or several replicas of it (``--base-url A,B`` or the option given twice): requests
    go to the replica with the fewest in flight, within ``[replicas]``'s capacity and rest rules."""
    urls = split_urls(base_url)

    def one(url: str) -> OpenAICompatBackend:
        return OpenAICompatBackend(url, api_key_env=settings.api_key_env, timeout=settings.timeout,
                                   response_format_style=_style(settings, local),
                                   max_connections=max(settings.replicas.capacity or settings.concurrency, 8))

    return one(urls[0]) if len(urls) == 1 else ReplicaBackend([one(u) for u in urls], settings.replicas)


async def _engine(settings: Settings, store: Store | None, base_url: str, model: str | None,
                  local: LocalServer | None, stack: AsyncExitStack) -> LLMEngine:
    backend = _backend(settings, base_url, local)
    stack.push_async_callback(backend.aclose)
    await backend.check()
    if model is None:  # the server's first model (vLLM serves exactly one)
        model = (await backend.list_models() or [None])[0]
        if model is None:
            raise LLMUnavailable(f"the model server at {safe_urls(base_url)} lists no models; pass --model")
    config = EngineConfig(
        model=model, temperature=settings.temperature, max_tokens=settings.max_tokens, cache=settings.cache,
        max_retries=settings.max_retries, prices=settings.prices,
    )
    engine = LLMEngine(backend, config, shared_limiter(settings.concurrency, settings.rpm, settings.tpm), store)
    stack.push_async_callback(engine.aclose)
    return engine


@asynccontextmanager
async def open_engines(settings: Settings, store: Store | None, more_generator_models: list[str] | None = None,
                       more_judge_models: list[str] | None = None,
                       warn_self_grading: bool = True) -> AsyncIterator[Engines]:
    """Everything opened here (the embedded server, HTTP sessions, the call-log thread) is closed
    on the way out, also when a check fails halfway or the user presses Ctrl-C. A workflow whose
    judge grades nobody's answers (rubric drafting) turns the self-grading warning off."""
    async with AsyncExitStack() as stack:
        local: LocalServer | None = None
        base_url, model = settings.base_url, settings.model
        if base_url is None:
            local = LocalServer(local_server_config(settings))
            stack.callback(local.stop)
            local.catch_sigterm()  # here, on the main thread: start() runs on a worker thread
            await asyncio.to_thread(local.start)
            print(f"embedded model {local.model_name} on {local.describe()} at {local.base_url}", file=sys.stderr)
            base_url, model = local.base_url, model or local.model_name
        generator = await _engine(settings, store, base_url, model, local, stack)
        judge_url = settings.judge_base_url or base_url
        judge_local = local if settings.judge_base_url is None else None
        judge = await _engine(settings, store, judge_url, settings.judge_model or
                              (generator.model if judge_url == base_url else None), judge_local, stack)
        more = [await _engine(settings, store, base_url, m, local, stack)
                for m in (more_generator_models or [])]
        judges = [await _engine(settings, store, judge_url, m, judge_local, stack) for m in (more_judge_models or [])]
        engines = Engines(generator, judge, local, more, judges)
        grades_own = any(g.model == judge.model and g.backend.base_url == judge.backend.base_url for g in more)
        if warn_self_grading and grades_own:
            warnings.warn(f"the grader ({judge.model}) is also one of the generators: it grades its own answers",
                          stacklevel=2)
        if warn_self_grading and engines.same_model:
            warnings.warn(
                f"the judge and the generator are the same model ({judge.model}): it grades its own "
                "answers; set --judge-model / --judge-base-url for an independent judge",
                stacklevel=2,
            )
        yield engines
