"""Errors of the LLM path, split by what a caller should do about them."""

from __future__ import annotations


class LLMError(Exception):
    """Base class: a request to a model did not give a usable answer."""


class TransientLLMError(LLMError):
    """Worth retrying: timeout, connection error, 429, 5xx. ``retry_after`` in seconds if given."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class PermanentLLMError(LLMError):
    """Not worth retrying: a 4xx other than 429 (bad request, unknown model, auth)."""


class LLMUnavailable(LLMError):
    """The model server cannot be reached at all (checked before a run writes anything)."""


class LLMCallFailed(LLMError):
    """A call that failed after its retries (and repair); it is recorded in the store."""

    def __init__(self, reason: str, call_id: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.call_id = call_id
