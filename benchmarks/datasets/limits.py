"""Input size limits, checked by every reader before anything is stored or sent.

A 10 MB line is accepted by a JSON parser and by a model server's HTTP layer alike, and then costs
millions of tokens per candidate; a model with a 4k context fails on it only after the call. Each
record is therefore measured as it is read: its bytes on the line, and an estimate of its tokens
(about four characters per token for alphabetic scripts, one per CJK character, which has no
spaces). Over a limit it is refused with the file, line and size, like any other bad input. The
limits in force are the command's settings (``max_input_bytes``, ``max_input_tokens``), set by the
command line for the readers through ``INPUT_LIMITS``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

_CJK = re.compile(r"[\u3000-\u9fff\uac00-\ud7af\uff00-\uffef]")


@dataclass(frozen=True)
class InputLimits:
    max_bytes: int = 1_000_000  # one line or record, as stored in the file
    max_tokens: int = 32_768  # one record's text, estimated


INPUT_LIMITS: ContextVar[InputLimits] = ContextVar("carealign_input_limits", default=InputLimits())  # noqa: B039


def estimate_tokens(text: str) -> int:
    """A cheap upper-leaning estimate of a text's tokens (no tokenizer: the model may be remote)."""
    cjk = len(_CJK.findall(text))
    return cjk + (len(text) - cjk + 3) // 4


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def check_size(where: str, n_bytes: int | None = None, record: Any = None) -> None:
    """Refuse a record over the limits; ``where`` is 'file:line'. Raises ``ValueError`` (readers
    turn it into their input error)."""
    limits = INPUT_LIMITS.get()
    if n_bytes is not None and n_bytes > limits.max_bytes:
        raise ValueError(f"{where}: the record is {n_bytes:,} bytes, over the limit of {limits.max_bytes:,} "
                         "(setting max_input_bytes)")
    if record is not None:
        tokens = sum(estimate_tokens(s) for s in _strings(record))
        if tokens > limits.max_tokens:
            raise ValueError(f"{where}: the record holds about {tokens:,} tokens, over the limit of "
                             f"{limits.max_tokens:,} (setting max_input_tokens)")
