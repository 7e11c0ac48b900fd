"""Instruction files in other people's shapes: a field mapping, and HealthBench's own JSONL.

``generate`` and ``rubric-prefs`` read ``{"prompt"|"messages", "id"?, "lang"?, "meta"?, "rubric"?,
"reference"?}`` lines. Published instruction sets name their fields otherwise: Alpaca writes
``instruction`` + ``input`` (+ ``output``), others ``question`` or ``query``. ``--mapping`` says
which key holds what: ``prompt=instruction,input=input,reference=output`` (``input``, when
non-empty, is appended to the prompt after a blank line, as Alpaca's template does); keys the
mapping does not name are kept under ``meta``. HealthBench's file (``prompt`` a list of messages,
``rubrics``, ``prompt_id``, ``example_tags``) is recognised by its keys and read as it is.
"""

from __future__ import annotations

from typing import Any

FIELDS = ("prompt", "input", "messages", "id", "lang", "rubric", "reference", "meta")
HEALTHBENCH_KEYS = ("prompt_id", "example_tags", "ideal_completions_data", "canary")


class MappingError(ValueError):
    """A mapping that cannot be used; the readers turn it into their input error."""


def parse_instruction_mapping(spec: str) -> dict[str, str]:
    """``prompt=instruction,input=input`` -> {field: source key}; ``prompt`` or ``messages`` required."""
    mapping: dict[str, str] = {}
    for item in spec.split(","):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key or not value:
            raise MappingError(f"mapping: {item.strip()!r} is not field=key (in {spec!r})")
        if key not in FIELDS:
            raise MappingError(f"mapping: unknown field '{key}' (fields: {', '.join(FIELDS)})")
        if key in mapping:
            raise MappingError(f"mapping: field '{key}' is given twice (in {spec!r})")
        mapping[key] = value
    if ("prompt" in mapping) == ("messages" in mapping):
        raise MappingError("mapping: give exactly one of prompt=<key> or messages=<key>")
    if "input" in mapping and "prompt" not in mapping:
        raise MappingError("mapping: input=<key> is appended to the prompt, so it needs prompt=<key>")
    return mapping


def mapped_record(data: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    """The record in the instruction schema; a mapped key missing from the line is an error naming
    the key (``input`` may be absent or empty)."""
    out: dict[str, Any] = {}
    for field, key in mapping.items():
        if key not in data:
            if field in ("prompt", "messages"):
                raise MappingError(f"field '{field}': mapped key {key!r} is missing (keys: {', '.join(data)})")
            continue
        value = data[key]
        if field == "input":
            continue
        out[field] = str(value) if field == "id" and isinstance(value, int | float) else value
    extra = data.get(mapping["input"]) if "input" in mapping else None
    if extra is not None and not isinstance(extra, str):
        raise MappingError(f"field '{mapping['input']}': expected text, got {type(extra).__name__}")
    if extra and extra.strip() and isinstance(out.get("prompt"), str):
        out["prompt"] = f"{out['prompt'].rstrip()}\n\n{extra.strip()}"
    used = set(mapping.values())
    meta = {k: v for k, v in data.items() if k not in used}
    if meta and "meta" not in out:
        out["meta"] = meta
    return out


def is_healthbench(data: dict[str, Any]) -> bool:
    """HealthBench's line: ``rubrics`` (plural), or ``prompt`` given as a list of messages."""
    return "rubrics" in data or isinstance(data.get("prompt"), list)


def healthbench_record(data: dict[str, Any]) -> dict[str, Any]:
    """A HealthBench line in the instruction schema: ``prompt`` -> ``messages``, ``rubrics`` ->
    ``rubric`` (converted later, points and tags kept), ``prompt_id`` -> ``id``, ``example_tags``
    into ``meta``; the ideal completion, when present, as ``reference``; the canary string dropped."""
    out: dict[str, Any] = {}
    prompt = data.get("prompt")
    if isinstance(prompt, list):
        out["messages"] = prompt
    elif prompt is not None:
        out["prompt"] = prompt
    if "messages" in data:
        out["messages"] = data["messages"]
    if "rubrics" in data:
        out["rubric"] = data["rubrics"]
    if data.get("prompt_id") is not None:
        out["id"] = data["prompt_id"]
    for key in ("id", "lang", "reference"):
        if key in data:
            out[key] = data[key]
    if data.get("meta") is not None and not isinstance(data["meta"], dict):
        raise MappingError(f"field 'meta': expected an object, got {type(data['meta']).__name__}")
    meta = dict(data.get("meta") or {})
    if data.get("example_tags"):
        meta["example_tags"] = data["example_tags"]
    ideal = data.get("ideal_completions_data")
    if isinstance(ideal, dict) and isinstance(ideal.get("ideal_completion"), str) and "reference" not in out:
        out["reference"] = ideal["ideal_completion"]
    if meta:
        out["meta"] = meta
    return out
