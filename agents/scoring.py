"""Probability-weighted judge scores (G-Eval style) from a reply's token logprobs.

A judge that writes one integer per criterion throws away what it knows: a 7 written with 40%
probability on 8 means more than a flat 7, and small judges collapse onto a few values so that
most candidates tie. With ``top_logprobs`` the expected score ``sum_v p(v) * v / sum_v p(v)`` over
the integer tokens the judge considered at that position is continuous. If the score was not one
token, or no alternatives came back, the written integer is used and the caller is told so.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

_SCORE = re.compile(r'"score"\s*:\s*(-?\d+)')


@dataclass(frozen=True)
class ScoreReading:
    sampled: int | None
    expected: float | None
    mass: float  # probability the judge put on valid integer tokens at that position

    @property
    def value(self) -> float | None:
        return self.expected if self.expected is not None else (float(self.sampled) if self.sampled is not None
                                                                 else None)

    def as_dict(self) -> dict[str, Any]:
        return {"sampled": self.sampled, "expected": self.expected, "mass": round(self.mass, 4),
                "scoring": "expected" if self.expected is not None else "sampled"}


def _token_at(tokens: list[Any], offset: int) -> int | None:
    pos = 0
    for i, (tok, _) in enumerate(tokens):
        if pos <= offset < pos + len(tok):
            return i
        pos += len(tok)
    return None


def read_score(text: str, logprobs: list[Any] | None, key: str | None = None,
               low: int = 0, high: int = 10) -> ScoreReading:
    """The score after ``"score":`` (inside ``"key": {...}`` when ``key`` is given) in ``text``,
    with its expected value from ``logprobs`` (``agents.backends.compact_logprobs`` format)."""
    start = 0
    if key is not None:
        found = re.search(r'"' + re.escape(key) + r'"\s*:', text)
        if not found:
            return ScoreReading(None, None, 0.0)
        start = found.end()
    m = _SCORE.search(text, start)
    if not m:
        return ScoreReading(None, None, 0.0)
    sampled = int(m.group(1))
    if not logprobs or "".join(t for t, _ in logprobs) != text:
        return ScoreReading(sampled, None, 0.0)
    i = _token_at(logprobs, m.start(1))
    if i is None or logprobs[i][0].strip() != m.group(1):
        return ScoreReading(sampled, None, 0.0)  # the number spans several tokens
    weights: dict[int, float] = {}
    for alt, logprob in logprobs[i][1]:
        alt = alt.strip()
        if alt.lstrip("-").isdigit() and low <= int(alt) <= high:
            weights[int(alt)] = weights.get(int(alt), 0.0) + math.exp(logprob)
    mass = sum(weights.values())
    if mass <= 0:
        return ScoreReading(sampled, None, 0.0)
    return ScoreReading(sampled, sum(v * p for v, p in weights.items()) / mass, mass)
