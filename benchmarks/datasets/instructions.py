"""Reading instruction files: JSONL, validated line by line before anything is stored.

Each line is one instruction: ``{"prompt": "..."}`` or ``{"messages": [{"role", "content"}, ...]}``,
with optional ``id``, ``lang`` and ``meta``. Every problem is reported with the file, line and field,
and the whole file is read first, so a bad line never leaves half an input set in the store.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from benchmarks.datasets.limits import check_size


class InputError(ValueError):
    """An input file that cannot be used as given."""


def _no_nul(text: str | None) -> str | None:
    if text is not None and "\x00" in text:
        raise ValueError("contains a NUL character (\\u0000), which no store can keep")
    return text


Text = Annotated[str, Field(min_length=1), AfterValidator(_no_nul)]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: Text


class Instruction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | int | None = None
    prompt: Text | None = None
    messages: list[Message] | None = Field(default=None, min_length=1)
    lang: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_form(self) -> Instruction:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' or 'messages'")
        if self.messages is not None and self.messages[-1].role != "user":
            raise ValueError("the last message must have role 'user'")
        return self

    def payload(self) -> dict[str, Any]:
        """What identifies the instruction's content (the item's hash covers exactly this)."""
        data = self.model_dump(mode="json", exclude_none=True, exclude={"id"})
        if not data.get("meta"):
            data.pop("meta", None)
        return data


def _checked(check: Callable[..., None], *args: Any) -> None:
    try:
        check(*args)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def iter_jsonl(path: str | Path, report: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, JSON object) of each non-blank line, read lazily: a line that is not a JSON
    object, not UTF-8 or over the size limits goes to ``report.bad`` (a
    ``benchmarks.datasets.rows.InputReport``: raise, or list it and read on); blank lines are
    counted in ``report.blank``."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file does not exist")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a JSONL file")
    lines = path.read_bytes().split(b"\n")
    if lines and not lines[-1]:  # the newline that ends the last line opens no line
        lines.pop()
    for lineno, line in enumerate(lines, start=1):
        try:
            data = _json_line(path, lineno, line)
        except InputError as exc:
            report.bad(exc)
            continue
        if data is None:
            report.blank += 1
            continue
        yield lineno, data


def _json_line(path: Path, lineno: int, line: bytes) -> dict[str, Any] | None:
    """One line's object, None for a blank line; InputError naming the line otherwise."""
    _checked(check_size, f"{path}:{lineno}", len(line))
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}:{lineno}: not valid UTF-8 (byte {exc.start} of the line)") from None
    text = text.strip().lstrip("\ufeff")
    if not text:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{lineno}: invalid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}:{lineno}: expected a JSON object, got {type(data).__name__}")
    _checked(check_size, f"{path}:{lineno}", None, data)
    return data


def read_jsonl(path: str | Path, model: type[BaseModel], report: Any = None) -> list[tuple[int, BaseModel]]:
    """(line number, validated record) of each line (sizes within ``benchmarks.datasets.limits``),
    read lazily: a bad line goes to ``report`` (``benchmarks.datasets.rows.InputReport``: fail, the
    default, or skip), blank lines are counted, and reading stops at the report's ``limit``."""
    from benchmarks.datasets.rows import InputReport

    report = report if report is not None else InputReport(str(path))

    def record(lineno: int, data: dict[str, Any]) -> tuple[int, BaseModel]:
        try:
            return lineno, model.model_validate(data)
        except ValidationError as exc:
            raise InputError(f"{path}:{lineno}: {_first_error(exc)}") from None

    return report.collect(iter_jsonl(path, report), record)


def read_records(path: str | Path, model: type[BaseModel], convert: Callable[[int, Any], dict[str, Any]],
                 mapping: str | None = None, report: Any = None) -> list[dict[str, Any]]:
    """``convert(line, validated record)`` of each line of an instruction file: lines through ``mapping`` (see
    ``benchmarks.datasets.instruction_mapping``) or, recognised by their keys, HealthBench's own; a
    bad line goes to ``report`` (``benchmarks.datasets.rows.InputReport``: fail or skip), and
    reading stops at its ``limit``. Keys the model has no field for are dropped from HealthBench
    lines (``generate`` has no use for a rubric). ``convert`` may raise ``InputError``: a bad line too."""
    from benchmarks.datasets.instruction_mapping import (
        MappingError,
        healthbench_record,
        is_healthbench,
        mapped_record,
        parse_instruction_mapping,
    )
    from benchmarks.datasets.rows import InputReport

    path = Path(path)
    report = report if report is not None else InputReport(str(path))
    try:
        fields = parse_instruction_mapping(mapping) if mapping else None
    except MappingError as exc:
        raise InputError(str(exc)) from None

    def record(lineno: int, data: dict[str, Any]) -> dict[str, Any]:
        try:
            if fields is not None:  # keys the command has no use for (generate: a rubric) are dropped
                data = {k: v for k, v in mapped_record(data, fields).items() if k in model.model_fields}
            elif is_healthbench(data):
                data = {k: v for k, v in healthbench_record(data).items() if k in model.model_fields}
            return convert(lineno, model.model_validate(data))
        except MappingError as exc:
            raise InputError(f"{path}:{lineno}: {exc}") from None
        except ValidationError as exc:
            hint = ("; a line in another shape needs --mapping (e.g. Alpaca's prompt=instruction,input=input)"
                    if fields is None and not {"prompt", "messages"} & set(data) else "")
            raise InputError(f"{path}:{lineno}: {_first_error(exc)}{hint}") from None

    return report.collect(iter_jsonl(path, report), record)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    # drop pydantic's union-member tags (``list[dict[str, any]]``) from the field path
    field = ".".join(str(p) for p in err["loc"] if "[" not in str(p))
    what = f"field '{field}': " if field else ""
    return what + err["msg"].removeprefix("Value error, ")


def read_instructions(path: str | Path, mapping: str | None = None, report: Any = None) -> list[dict[str, Any]]:
    """Instruction records ready for ``store.records.upsert_items`` (``mapping`` and ``report`` as
    in ``read_records``)."""

    def record(lineno: int, ins: Instruction) -> dict[str, Any]:
        return {"payload": ins.payload(), "external_id": None if ins.id is None else str(ins.id),
                "source": f"{Path(path).name}:{lineno}"}

    return read_records(path, Instruction, record, mapping, report)


class RubricInstruction(Instruction):
    """An instruction with its clinical rubric: ``rubric`` is either HealthBench items
    (``[{"criterion", "points", "tags"}, ...]``) or a native rubric (``{"criteria": [...]}``, see
    ``agents.rubric``), or absent (then a reviewed rubric from the store is used, see
    ``carealign rubrics``); ``reference`` is an optional reference answer."""

    rubric: list[dict[str, Any]] | dict[str, Any] | None = None
    reference: Text | None = None

    @model_validator(mode="after")
    def _valid_rubric(self) -> RubricInstruction:
        self.parsed_rubric()
        return self

    def parsed_rubric(self):
        from agents.rubric import Rubric, from_healthbench

        if self.rubric is None:
            return None
        try:
            if isinstance(self.rubric, list):
                return from_healthbench(self.rubric)[0]
            return Rubric.model_validate(self.rubric)
        except (ValueError, KeyError, TypeError) as exc:
            detail = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            raise ValueError(f"invalid rubric: {detail.removeprefix('Value error, ')}") from None


RubricLookup = Callable[[list[dict[str, Any]]], tuple[int, dict[str, Any]] | None]


def read_rubric_instructions(path: str | Path, lookup: RubricLookup | None = None,
                             require_rubric: bool = True, mapping: str | None = None,
                             report: Any = None) -> list[dict[str, Any]]:
    """Instructions with rubrics, each payload carrying the rubric in native form (HealthBench
    items are converted once here, their points and tags kept for export). A line without a rubric
    gets the approved rubric ``lookup`` finds for its conversation (its id kept as ``rubric_id``);
    when there is none, that is an error naming the line, unless ``require_rubric`` is off (then the
    payload has no rubric: ``carealign rubrics draft`` writes one)."""
    from agents.roles import conversation_of

    def record(lineno: int, ins: RubricInstruction) -> dict[str, Any]:
        payload = ins.payload()
        rubric = ins.parsed_rubric()
        if rubric is not None:
            payload["rubric"] = rubric.model_dump(mode="json")
        else:
            payload.pop("rubric", None)
            found = lookup(conversation_of(payload)) if lookup else None
            if found is not None:
                payload["rubric_id"], payload["rubric"] = found
            elif require_rubric:
                raise InputError(
                    f"{path}:{lineno}: field 'rubric': missing, and the store has no approved rubric for this "
                    "instruction (draft one with `carealign rubrics draft`, approve it with "
                    "`carealign rubrics review`)")
        return {"payload": payload, "external_id": None if ins.id is None else str(ins.id),
                "source": f"{Path(path).name}:{lineno}"}

    return read_records(path, RubricInstruction, record, mapping, report)
