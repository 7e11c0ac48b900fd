"""Ways to reach a chat model. One request shape, two implementations.

``OpenAICompatBackend`` speaks the OpenAI chat-completions protocol over HTTP (vLLM, SGLang, OpenAI,
llama.cpp's server). ``LangChainBackend`` wraps any LangChain chat model. Both only translate and
classify errors (transient vs permanent); retries, caching and accounting live in the engine so
they behave the same whatever the backend.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from agents.errors import LLMUnavailable, PermanentLLMError, TransientLLMError

# How constrained decoding is requested. vLLM/SGLang/OpenAI take ``json_schema``; llama-cpp-python's
# server answers HTTP 500 to that and takes ``json_object`` with a ``schema`` key instead.
RESPONSE_FORMAT_STYLES = ("json_schema", "json_object", "none")


@dataclass
class BackendRequest:
    model: str
    messages: list[dict[str, Any]]
    params: dict[str, Any]
    schema: dict[str, Any] | None = None
    schema_name: str = "reply"


@dataclass
class BackendResponse:
    choices: list[str]
    finish_reasons: list[str | None] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # per choice, when asked for (``logprobs=True, top_logprobs=k``): [[token, [[alt, logprob], ...]], ...]
    logprobs: list[Any] | None = None


def compact_logprobs(choice: dict[str, Any]) -> list[Any] | None:
    """The OpenAI ``logprobs.content`` of a choice as ``[[token, [[alternative, logprob], ...]], ...]``,
    cut to the tokens that spell the message text (see ``tokens_of_text``)."""
    content = (choice.get("logprobs") or {}).get("content")
    if not content:
        return None
    tokens = [[t["token"], [[a["token"], float(a["logprob"])] for a in t.get("top_logprobs") or []]]
              for t in content]
    return tokens_of_text(tokens, (choice.get("message") or {}).get("content") or "")


def tokens_of_text(tokens: list[Any], text: str) -> list[Any]:
    """The tokens that spell ``text``, when the model wrote more than the server returns as the
    message: llama.cpp's native server lets a model wrap a ``json_schema`` reply in a ```json fence
    and strips the fence from the message, but not from the logprobs. Tokens outside the text are
    dropped; a token cut at its edge keeps only its part inside, without alternatives (they are
    alternatives to the whole token). Anything else is returned as it is."""
    written = "".join(tok for tok, _ in tokens)
    start = written.find(text) if text and written != text else -1
    if start < 0:
        return tokens
    end, pos, kept = start + len(text), 0, []
    for tok, alternatives in tokens:
        first, pos = pos, pos + len(tok)
        if pos <= start or first >= end:
            continue
        piece = tok[max(start - first, 0):len(tok) - max(pos - end, 0)]
        kept.append([piece, alternatives if piece == tok else []])
    return kept


class ChatBackend(Protocol):
    base_url: str | None

    async def complete(self, req: BackendRequest) -> BackendResponse: ...

    async def check(self) -> None: ...

    async def aclose(self) -> None: ...


LENGTH_KEYS = ("minLength", "maxLength")


def without_length_bounds(schema: Any) -> Any:
    """The schema without string length bounds, for llama.cpp: its grammar compiler unrolls
    ``maxLength: 2000`` into thousands of rules and the server process dies (measured on
    llama-cpp-python 0.3.36). The bounds are still enforced: every reply is validated with pydantic."""
    if isinstance(schema, dict):
        return {k: without_length_bounds(v) for k, v in schema.items() if k not in LENGTH_KEYS}
    if isinstance(schema, list):
        return [without_length_bounds(v) for v in schema]
    return schema


def response_format(style: str, schema: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    if schema is None or style == "none":
        return None
    if style == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": False}}
    if style == "json_object":
        return {"type": "json_object", "schema": without_length_bounds(schema)}
    raise ValueError(f"unknown response format style {style!r}; choose one of {RESPONSE_FORMAT_STYLES}")


def clean_text(text: str) -> str:
    """Model output as storable text: NUL characters (which PostgreSQL cannot store) become U+FFFD."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def safe_http_url(url: str | None) -> str | None:
    """The URL without credentials or query string, safe to store and print."""
    if not url:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class OpenAICompatBackend:
    """POST /chat/completions with ``max_tokens`` sent explicitly (llama.cpp ignores the newer
    ``max_completion_tokens``). The API key is read from the environment variable named by
    ``api_key_env`` and lives only in the request header.

    HTTP goes through aiohttp: at hundreds of requests in flight httpx's connection pool costs
    several times more CPU per request (encode/httpx#3215; measured in tests/perf/bench_engine.py).
    """

    def __init__(
        self, base_url: str, api_key_env: str | None = "OPENAI_API_KEY", timeout: float = 120.0,
        response_format_style: str = "json_schema", max_connections: int = 64,
    ):
        if response_format_style not in RESPONSE_FORMAT_STYLES:
            raise ValueError(f"unknown response format style {response_format_style!r}")
        self.base_url = base_url.rstrip("/")
        self.style = response_format_style
        self._headers = {"Content-Type": "application/json"}
        key = os.environ.get(api_key_env) if api_key_env else None
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=min(timeout, 10.0))
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _client(self) -> aiohttp.ClientSession:
        # created lazily: an aiohttp session belongs to the event loop that is running it
        if self._closed:
            raise TransientLLMError("the backend is closed")
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers, timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=self._max_connections),
            )
        return self._session

    async def check(self) -> None:
        """Fail fast, before a run writes anything, when nothing answers at ``base_url``."""
        where = safe_http_url(self.base_url)
        try:
            async with self._client().get(f"{self.base_url}/models",
                                          timeout=aiohttp.ClientTimeout(total=10.0)) as resp:
                status = resp.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise LLMUnavailable(f"cannot reach the model server at {where}: {type(exc).__name__}") from None
        if status in (401, 403):
            raise LLMUnavailable(f"the model server at {where} refused the API key (HTTP {status})")
        if status >= 500:
            raise LLMUnavailable(f"the model server at {where} answered HTTP {status}")

    async def list_models(self) -> list[str]:
        """The ids the server lists at ``/models`` (with this backend's API key)."""
        where = safe_http_url(self.base_url)
        try:
            async with self._client().get(f"{self.base_url}/models",
                                          timeout=aiohttp.ClientTimeout(total=10.0)) as resp:
                status, text = resp.status, await resp.text()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise LLMUnavailable(f"cannot reach the model server at {where}: {type(exc).__name__}") from None
        if status in (401, 403):
            raise LLMUnavailable(f"the model server at {where} refused the API key (HTTP {status})")
        try:
            return [str(m["id"]) for m in json.loads(text)["data"]]
        except (ValueError, KeyError, TypeError):
            raise LLMUnavailable(f"the model server at {where} did not list its models (HTTP {status}); "
                                 "pass --model") from None

    async def complete(self, req: BackendRequest) -> BackendResponse:
        body: dict[str, Any] = {"model": req.model, "messages": req.messages}
        body.update({k: v for k, v in req.params.items() if v is not None})
        fmt = response_format(self.style, req.schema, req.schema_name)
        if fmt is not None:
            body["response_format"] = fmt
        try:
            async with self._client().post(f"{self.base_url}/chat/completions", json=body) as resp:
                status, text = resp.status, await resp.text()
                retry_after = _retry_after(resp.headers.get("Retry-After"))
        except TimeoutError:
            raise TransientLLMError("timeout: no complete reply in time") from None
        except aiohttp.ClientError as exc:
            raise TransientLLMError(f"connection error: {type(exc).__name__}: {exc}") from None
        if status == 429 or status >= 500:
            raise TransientLLMError(f"HTTP {status}: {text[:200]}", retry_after)
        if status >= 400:
            raise PermanentLLMError(f"HTTP {status}: {text[:300]}")
        try:
            data = json.loads(text)
            choices = data["choices"]
            if not choices:
                raise ValueError("the reply has no choices")
            texts = [clean_text((c.get("message") or {}).get("content") or "") for c in choices]
            reasons = [c.get("finish_reason") for c in choices]
            logprobs = [compact_logprobs(c) for c in choices] if req.params.get("logprobs") else None
            usage = data.get("usage") or {}
            prompt_tokens = int(usage.get("prompt_tokens") or 0)
            completion_tokens = int(usage.get("completion_tokens") or 0)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise TransientLLMError(f"malformed response body: {type(exc).__name__}: {exc}: {text[:200]}") from None
        return BackendResponse(choices=texts, finish_reasons=reasons, prompt_tokens=prompt_tokens,
                               completion_tokens=completion_tokens, logprobs=logprobs)

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None and not self._session.closed:
            await self._session.close()


class LangChainBackend:
    """Any LangChain chat model in place of the HTTP client. Configure the model with its own
    retries off (``max_retries=0``): the engine retries. Sampling parameters are bound per call
    (for ChatOpenAI, ``max_tokens`` goes into the request body as such, see ``max_tokens_in_body``);
    ``n`` > 1 becomes n calls. Constrained decoding is not requested: replies are validated."""

    def __init__(self, chat_model: Any, base_url: str | None = None, max_tokens_in_body: bool | None = None):
        self.model = chat_model
        self.base_url = base_url
        if max_tokens_in_body is None:  # OpenAI-protocol LangChain models take raw body fields
            max_tokens_in_body = type(chat_model).__name__ in ("ChatOpenAI", "AzureChatOpenAI")
        self.max_tokens_in_body = max_tokens_in_body

    async def check(self) -> None:
        return None

    async def complete(self, req: BackendRequest) -> BackendResponse:
        params = {k: v for k, v in req.params.items() if v is not None and k != "n"}
        if "max_tokens" in params and self.max_tokens_in_body:
            # langchain-openai renames max_tokens to max_completion_tokens, which llama.cpp ignores
            params["extra_body"] = {"max_tokens": params.pop("max_tokens")}
        bound = self.model.bind(**params) if params else self.model
        out = BackendResponse(choices=[])
        for _ in range(int(req.params.get("n") or 1)):
            try:
                msg = await bound.ainvoke([(m["role"], m["content"]) for m in req.messages])
            except Exception as exc:  # noqa: BLE001 - classify whatever the integration raises
                raise _classify_langchain_error(exc) from None
            content = msg.content if isinstance(msg.content, str) else str(msg.content)
            out.choices.append(clean_text(content))
            meta = getattr(msg, "response_metadata", {}) or {}
            out.finish_reasons.append(meta.get("finish_reason"))
            usage = getattr(msg, "usage_metadata", None) or {}
            out.prompt_tokens += int(usage.get("input_tokens") or 0)
            out.completion_tokens += int(usage.get("output_tokens") or 0)
        return out

    async def aclose(self) -> None:
        return None


def _classify_langchain_error(exc: Exception) -> Exception:
    status = getattr(exc, "status_code", None) or getattr(getattr(exc, "response", None), "status_code", None)
    name = type(exc).__name__
    if status is not None:
        if status == 429 or status >= 500:
            return TransientLLMError(f"HTTP {status}: {exc}")
        return PermanentLLMError(f"HTTP {status}: {exc}")
    if "Timeout" in name or "Connection" in name:
        return TransientLLMError(f"{name}: {exc}")
    return PermanentLLMError(f"{name}: {exc}")
