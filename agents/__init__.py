"""LLM engine and agent roles.

``LLMEngine`` is the one path to a model (OpenAI-compatible HTTP or any LangChain chat model), with
caching, limits, retries, validation and accounting. Roles (generator, judge, ...) sit on top and
own their prompt templates in ``agents/templates/``.
"""

from agents.engine import CallContext, ChatResult, EngineConfig, LLMEngine, Usage
from agents.errors import LLMCallFailed, LLMError, LLMUnavailable

__all__ = [
    "CallContext", "ChatResult", "EngineConfig", "LLMCallFailed", "LLMEngine", "LLMError",
    "LLMUnavailable", "Usage",
]
