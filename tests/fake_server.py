"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests and benchmarks.

It answers ``GET /v1/models`` and ``POST /v1/chat/completions`` over real sockets (uvicorn), so the
client path is exercised end to end: connection handling, status codes, headers, bodies. Tests
script it:

- ``server.script([Reply(status=429, headers={"Retry-After": "0"}), Reply(content="ok")])``:
  replies consumed one per request, in order (faults: 429, 5xx, timeouts via ``delay``, malformed
  bodies via ``raw_body``);
- ``server.responder = fn(body) -> str``: the content when no scripted reply is queued;
- ``server.fault = fn(body) -> Reply | None``: a fault chosen per request (a status, a delay past the
  client's timeout, a malformed body) when no scripted reply is queued; ``None`` answers normally;
- ``latency`` (seconds per request) and ``capacity`` (requests processed at once; others queue),
  for throughput benchmarks.
- ``fail_after = K``: every request after the first K answers ``fail_status`` (500): a replica that
  breaks down for good.

Every request body is kept in ``server.requests``. Run standalone for benchmarks:
``python -m tests.fake_server --port 8001 --latency 0.1 --capacity 32``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class Reply:
    content: str | None = None
    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    raw_body: str | None = None  # sent verbatim (e.g. malformed JSON)
    finish_reason: str = "stop"


def _openai_logprobs(tokens: list[Any] | None) -> dict[str, Any] | None:
    if not tokens:
        return None
    return {"content": [
        {"token": tok, "logprob": max(alts.values()) if alts else 0.0, "bytes": list(tok.encode()),
         "top_logprobs": [{"token": a, "logprob": lp, "bytes": list(a.encode())} for a, lp in alts.items()]}
        for tok, alts in tokens]}


def default_responder(body: dict[str, Any]) -> str:
    last = body["messages"][-1]["content"]
    return f"echo(seed={body.get('seed')}): {last[:60]}"


class FakeOpenAIServer:
    def __init__(self, latency: float = 0.0, capacity: int | None = None, models: tuple[str, ...] = ("fake-model",)):
        self.latency, self.capacity, self.models = latency, capacity, list(models)
        self.responder: Callable[[dict[str, Any]], str] = default_responder
        self.fault: Callable[[dict[str, Any]], Reply | None] | None = None
        self.requests: list[dict[str, Any]] = []
        self.arrivals: list[float] = []  # time.monotonic() of each request, as requests
        self.headers: list[dict[str, str]] = []  # request headers, lower-case names
        self.model_list_headers: list[dict[str, str]] = []
        self.served = 0
        self.peak_concurrency = 0
        self.fail_after: int | None = None
        self.fail_status = 500
        self._active = 0
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._sem: asyncio.Semaphore | None = None
        # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto
        # says TCP; without it every keep-alive reply stalls ~40 ms (Nagle + delayed ACK).
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        app = Starlette(routes=[
            Route("/v1/models", self._models, methods=["GET"]),
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
        ])
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off",
                                                     timeout_keep_alive=30, backlog=2048))
        self._thread: threading.Thread | None = None

    # -- scripting ------------------------------------------------------------------------------
    def script(self, replies: list[Reply]) -> None:
        with self._lock:
            self._script.extend(replies)

    def _next(self) -> Reply | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    # -- handlers -------------------------------------------------------------------------------
    async def _models(self, request: Request) -> Response:
        self.model_list_headers.append({k.lower(): v for k, v in request.headers.items()})
        return JSONResponse({"object": "list", "data": [{"id": m, "object": "model", "owned_by": "fake"}
                                                         for m in self.models]})

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        broken = self.fail_after is not None and len(self.requests) >= self.fail_after
        self.requests.append(body)
        self.arrivals.append(time.monotonic())
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.capacity or 1_000_000)
        async with self._sem:
            self._active += 1
            self.peak_concurrency = max(self.peak_concurrency, self._active)
            try:
                if broken:
                    return JSONResponse({"error": {"message": "injected: broken for good"}},
                                        status_code=self.fail_status)
                return await self._answer(body)
            finally:
                self._active -= 1
                self.served += 1

    async def _answer(self, body: dict[str, Any]) -> Response:
        reply = self._next() or (self.fault(body) if self.fault else None) or Reply()
        if self.latency or reply.delay:
            await asyncio.sleep(self.latency + reply.delay)
        if reply.raw_body is not None:
            return Response(reply.raw_body, status_code=reply.status, headers=reply.headers,
                            media_type="application/json")
        if reply.status != 200:
            return JSONResponse({"error": {"message": f"injected HTTP {reply.status}"}},
                                status_code=reply.status, headers=reply.headers)
        n = int(body.get("n") or 1)
        raw = [reply.content if reply.content is not None else self.responder(body) for _ in range(n)]
        # a responder may return {"content": str, "logprobs": [[token, {alternative: logprob}], ...]}
        contents = [r["content"] if isinstance(r, dict) else r for r in raw]
        logprobs = [_openai_logprobs(r.get("logprobs")) if isinstance(r, dict) else None for r in raw]
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        completion_tokens = sum(len(c.split()) for c in contents)
        return JSONResponse({
            "id": f"chatcmpl-{self.served}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": i, "message": {"role": "assistant", "content": c},
                         "finish_reason": reply.finish_reason,
                         **({"logprobs": logprobs[i]} if body.get("logprobs") and logprobs[i] else {})}
                        for i, c in enumerate(contents)],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }, headers=reply.headers)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> FakeOpenAIServer:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._server.serve(sockets=[self._sock])),
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread:
            self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description="fake OpenAI-compatible server (benchmarks)")
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--capacity", type=int, default=None)
    ap.add_argument("--ready-file", default=None, help="write the base URL here once serving")
    args = ap.parse_args()
    server = FakeOpenAIServer(latency=args.latency, capacity=args.capacity).start()
    if args.ready_file:
        with open(args.ready_file, "w") as fh:
            json.dump({"base_url": server.base_url}, fh)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
