"""Structured replies: pydantic model -> JSON schema for constrained decoding, reply -> model.

A schema constrains shape, not meaning: constrained decoders happily emit 2097453861937917 for a
0-10 score. So every reply is validated with the pydantic model (ranges and all), never trusted.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ValidationError

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


def extract_json(text: str) -> Any:
    """Parse a reply as JSON, tolerating code fences and prose around one JSON object."""
    text = text.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    for candidate in _FENCE.findall(text):
        try:
            return json.loads(candidate.strip())
        except ValueError:
            continue
    start, end = text.find("{"), text.rfind("}")
    if start != -1 and end > start:
        return json.loads(text[start : end + 1])
    raise ValueError("no JSON object found in the reply")


def parse_reply(text: str, model: type[BaseModel]) -> BaseModel:
    """Return the validated model, or raise ValueError with a reason short enough to show an LLM."""
    try:
        data = extract_json(text)
    except ValueError as exc:
        raise ValueError(f"invalid JSON: {exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise ValueError(f"does not match the schema: {problems}") from None
