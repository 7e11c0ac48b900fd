"""Fact-checking data in one schema (MedFact's), whatever file it came from.

The fact-checking benchmark (PROTOCOLS.md section 4) scores veracity per text and error location
per flagged text, so every source is read into the same ``FactCheckItem``: MedFact-style JSONL,
MedErrBench CSVs (the public stand-in for MedFact) and any other CSV or JSONL through a column
mapping. As with instruction files (``benchmarks.datasets.instructions``), the rows a command uses
are validated before anything is returned (all of them, or the first ``limit``), NUL characters are
refused, and every problem is an ``InputError`` reading ``file:line: field 'x': message`` (CSV
lines are physical lines, the header being line 1, so a row whose quoted cells span several lines
is reported at its first line). Blank rows are passed over and counted; a bad row fails the file,
or with ``on_bad_row`` skip is listed and left out (``benchmarks.datasets.rows.InputReport``). A
mapping without a location field reads a veracity-only file.

Sentence ids are 0-based, as MedErrBench's ``Error Sentence ID`` (whose -1 means "no error"):
``error_sentence_id`` i names ``sentences[i]``, and the sentences are cut the way MedErrBench cuts
them (``benchmarks.datasets.sentences``), so a sentence-ID match means the same thing on every source.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from benchmarks.datasets.instructions import InputError, Text, iter_jsonl
from benchmarks.datasets.mederrbench import REQUIRED
from benchmarks.datasets.rows import InputReport, UniqueIds, file_kind, read_csv_rows
from benchmarks.datasets.sentences import ResplitCheck, detect_lang, numbered_columns, parse_numbered, split_sentences

MEDERRBENCH_COLUMNS = (*REQUIRED, "Sentences", "Error Sentence ID", "Error Type", "Difficulty")
# which MedErrBench column each field comes from, so that errors name what the user sees
_MEDERRBENCH_FIELDS = {
    "id": "Text ID", "text": "Text", "label": "Error Flag", "sentences": "Sentences",
    "error_sentence_id": "Error Sentence ID", "error_span": "Error Sentence", "error_start": "Error Sentence",
    "error_end": "Error Sentence", "correction": "Corrected Sentence", "error_type": "Error Type",
    "difficulty": "Difficulty",
}
_EMPTY = ("", "NA")  # how MedErrBench (and most CSV exports) write a missing value
_INT_FIELDS = ("error_sentence_id", "error_start", "error_end")
LOCATION_FIELDS = ("error_sentence_id", "error_span", "error_start", "error_end")
NO_LOCALISATION = ("localisation not available: the mapping gives no error location (error_sentence_id or "
                   "error_span), so only veracity is scored")
_MAPPING_OPTIONS = ("label_values", "sentence_id_base")


class _FieldError(ValueError):
    """A rule over several fields, broken at one of them: carries that field so the message names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class FactCheckItem(BaseModel):
    """One text to check: correct, or holding one error located by sentence id and/or span.

    ``sentences`` default to the text split as MedErrBench would; ``lang`` defaults to the one
    detected in the text; a span given without offsets gets them when it occurs exactly once in the
    text, and offsets given without a span get the span (span-level scoring needs both)."""

    model_config = ConfigDict(extra="forbid")
    id: Text
    text: Text
    label: Literal["correct", "error"]
    sentences: list[Text] = Field(min_length=1)
    error_sentence_id: int | None = None
    error_span: Text | None = None
    error_start: int | None = Field(default=None, ge=0)
    error_end: int | None = Field(default=None, ge=0)
    correction: Text | None = None
    error_type: Text | None = None
    specialty: Text | None = None
    writing_style: Text | None = None
    difficulty: Text | None = None
    lang: Literal["zh", "en"] | None = None
    source: Text | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _numeric_id(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("text"), str) and data["text"].strip():
            data = dict(data)
            if data.get("lang") is None:
                data["lang"] = detect_lang(data["text"])
            if data.get("sentences") is None:
                lang = data["lang"] if data["lang"] in ("zh", "en") else None
                data["sentences"] = split_sentences(data["text"], lang)
        return data

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> FactCheckItem:
        context = info.context or {}
        if self.label == "correct":
            for name in ("error_sentence_id", "error_span", "error_start", "error_end", "correction"):
                if getattr(self, name) is not None:
                    raise _FieldError(name, "a correct item must not have an error location or correction")
        elif (self.error_sentence_id is None and self.error_span is None and self.error_start is None
              and not context.get("veracity_only")):
            raise _FieldError("error_sentence_id", "an error item needs error_sentence_id or error_span")
        n = len(self.sentences)
        if self.error_sentence_id is not None and not 0 <= self.error_sentence_id < n:
            hint = context.get("split_hint", "")
            raise _FieldError("error_sentence_id", f"sentence id {self.error_sentence_id} is out of range: "
                              f"the text has {n} sentences, ids 0 to {n - 1}{hint}")
        if (self.error_start is None) != (self.error_end is None):
            raise _FieldError("error_end" if self.error_end is None else "error_start",
                              "give both error_start and error_end, or neither")
        if self.error_start is not None and self.error_end is not None:
            if not self.error_start < self.error_end <= len(self.text):
                raise _FieldError("error_end", f"offsets {self.error_start}..{self.error_end} are not a span "
                                  f"of the text ({len(self.text)} characters)")
            span = self.text[self.error_start:self.error_end]
            if self.error_span is None:
                self.error_span = span
            elif self.error_span != span:
                raise _FieldError("error_span", f"{self.error_span!r} does not match text[{self.error_start}:"
                                  f"{self.error_end}] = {span!r}")
        elif self.error_span is not None and self.text.count(self.error_span) == 1:
            self.error_start = self.text.index(self.error_span)
            self.error_end = self.error_start + len(self.error_span)
        return self


def _validate(data: dict[str, Any], where: str, columns: dict[str, str] | None = None,
              context: dict[str, Any] | None = None) -> FactCheckItem:
    """The item, or an InputError naming the field (as the source column when there is one)."""
    try:
        return FactCheckItem.model_validate(data, context=context)
    except ValidationError as exc:
        err = exc.errors()[0]
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, _FieldError):
            loc, msg = [cause.field], str(cause)
        else:  # drop union-member tags such as ``literal[...]`` from the path, as benchmarks.datasets.instructions does
            loc = [str(p) for p in err["loc"] if "[" not in str(p)]
            msg = err["msg"].removeprefix("Value error, ")
        if loc and columns:
            loc[0] = columns.get(loc[0], loc[0])
        what = f"field '{'.'.join(loc)}': " if loc else ""
        raise InputError(f"{where}: {what}{msg}") from None


def _cell(value: str) -> str | None:
    value = value.strip()
    return None if value in _EMPTY else value


def _int(value: Any, where: str, column: str) -> int | None:
    """An integer cell; MedErrBench's -1 and empty cells mean "none"."""
    if value is None or isinstance(value, str) and value.strip() in _EMPTY:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        number = int(value)
    else:
        raise InputError(f"{where}: field '{column}': expected an integer, got {value!r}")
    return None if number == -1 else number


def _lang_of_file(path: Path) -> Literal["zh", "en"] | None:
    # mederrbench.language_of calls every non-CN file English; here other names are detected per text
    prefix = path.name[:2].upper()
    return "zh" if prefix in ("CN", "ZH") else "en" if prefix == "EN" else None


def _report(path: Path, report: InputReport | None) -> InputReport:
    if report is None:
        return InputReport(str(path))
    report.path = report.path or str(path)
    return report


def _mederrbench_item(path: Path, line: int, row: dict[str, str], file_lang: str | None) -> FactCheckItem:
    where = f"{path}:{line}"
    flag = row["Error Flag"].strip()
    if flag not in ("0", "1"):
        raise InputError(f"{where}: field 'Error Flag': expected 0 or 1, got {row['Error Flag']!r}")
    text = row["Text"].strip()
    data: dict[str, Any] = {
        "id": row["Text ID"].strip(), "text": text, "label": "error" if flag == "1" else "correct",
        "error_sentence_id": _int(row["Error Sentence ID"], where, "Error Sentence ID"),
        "error_span": _cell(row["Error Sentence"]), "correction": _cell(row["Corrected Sentence"]),
        "error_type": _cell(row["Error Type"]), "difficulty": (_cell(row["Difficulty"]) or "").capitalize() or None,
        "lang": file_lang, "source": f"{path.name}:{line}",
    }
    if text:
        try:
            data["sentences"] = parse_numbered(row["Sentences"], text)
        except ValueError as exc:
            raise InputError(f"{where}: field 'Sentences': {exc}") from None
    return _validate(data, where, _MEDERRBENCH_FIELDS)


def read_mederrbench_csv(path: str | Path, report: InputReport | None = None) -> list[FactCheckItem]:
    """MedErrBench rows as items: label from ``Error Flag``, sentences and their ids from
    ``Sentences`` (placed on the text), span from ``Error Sentence``, correction from ``Corrected
    Sentence``; ``Difficulty`` stripped and capitalised (the files mix "Medium ", "medium").
    ``report`` says what to do with bad rows and how many to read (``benchmarks.datasets.rows``)."""
    path = Path(path)
    report = _report(path, report)
    header, rows = read_csv_rows(path, report)
    missing = [c for c in MEDERRBENCH_COLUMNS if c not in header]
    if missing:
        raise InputError(f"{path}:1: not a MedErrBench file, missing columns {missing}")
    file_lang = _lang_of_file(path)
    return report.collect(rows, lambda line, row: _mederrbench_item(path, line, row, file_lang),
                          UniqueIds(path, "Text ID"))


def _jsonl_records(path: Path, report: InputReport) -> Iterator[tuple[int, dict[str, Any]]]:
    return iter_jsonl(path, report)


def read_medfact_jsonl(path: str | Path, report: InputReport | None = None) -> list[FactCheckItem]:
    """JSONL in the ``FactCheckItem`` schema, one object a line; ``sentences`` split from the text
    when absent, ``source`` set to file:line when absent."""
    path = Path(path)
    report = _report(path, report)

    def item(line: int, data: dict[str, Any]) -> FactCheckItem:
        data.setdefault("source", f"{path.name}:{line}")
        return _validate(data, f"{path}:{line}")

    return report.collect(_jsonl_records(path, report), item, UniqueIds(path, "id"))


def _check_mapping(mapping: dict[str, Any]) -> dict[str, Any]:
    fields = set(FactCheckItem.model_fields)
    for key, value in mapping.items():
        if key not in fields and key not in _MAPPING_OPTIONS:
            raise InputError(f"mapping: unknown field '{key}' (fields: {', '.join(FactCheckItem.model_fields)}; "
                             f"options: {', '.join(_MAPPING_OPTIONS)})")
        if key in fields and (not isinstance(value, str) or not value.strip()):
            raise InputError(f"mapping: field '{key}' needs a column name, got {value!r}")
    for key in ("text", "label"):
        if key not in mapping:
            raise InputError(f"mapping: field '{key}' is required (e.g. {key}=<column>)")
    values = mapping.get("label_values")
    if values is not None:
        if not isinstance(values, dict) or not values:
            raise InputError("mapping: label_values must map source values to 'correct' or 'error'")
        for raw, label in values.items():
            if label not in ("correct", "error"):
                raise InputError(f"mapping: label_values maps {raw!r} to {label!r}; use 'correct' or 'error'")
    if mapping.get("sentence_id_base", 0) not in (0, 1):
        raise InputError(f"mapping: sentence_id_base must be 0 or 1, got {mapping['sentence_id_base']!r}")
    if values is not None:
        mapping = {**mapping, "label_values": {str(k).strip(): v for k, v in values.items()}}
    return mapping


def parse_mapping(spec: str) -> dict[str, Any]:
    """``text=content,label=flag,label_values=1:error;0:correct`` (as given on a command line) as a
    mapping for ``read_mapped``: field=column items separated by commas; ``label_values`` holds
    value:label pairs separated by semicolons; ``sentence_id_base=1`` for 1-based sentence ids."""
    mapping: dict[str, Any] = {}
    for item in spec.split(","):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key:
            raise InputError(f"mapping: {item.strip()!r} is not field=column (in {spec!r})")
        if key in mapping:
            raise InputError(f"mapping: field '{key}' is given twice (in {spec!r})")
        if key == "label_values":
            pairs = {}
            for pair in value.split(";"):
                raw, colon, label = (p.strip() for p in pair.rpartition(":"))
                if not colon or not raw:
                    raise InputError(f"mapping: label_values item {pair.strip()!r} is not value:label (in {spec!r})")
                if raw in pairs:
                    raise InputError(f"mapping: label_values gives value {raw!r} twice (in {spec!r})")
                pairs[raw] = label
            mapping[key] = pairs
        elif key == "sentence_id_base":
            mapping[key] = int(value) if value in ("0", "1") else value
        else:
            mapping[key] = value
    return _check_mapping(mapping)


def _scalar(value: Any) -> Any:
    """JSON numbers as strings where the schema wants text (difficulty 3, specialty codes)."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if isinstance(value, int | float) else value


def _mapped_data(path: Path, line: int, record: dict[str, Any], mapping: dict[str, Any],
                 columns: dict[str, str]) -> dict[str, Any]:
    where = f"{path}:{line}"
    labels: dict[str, str] | None = mapping.get("label_values")
    data: dict[str, Any] = {"source": f"{path.name}:{line}", "id": f"{path.stem}-{line}"}
    for field, column in columns.items():
        if column not in record:
            if field in ("text", "label", "id"):
                raise InputError(f"{where}: field '{field}': mapped key {column!r} is missing")
            continue
        value = _scalar(record[column]) if field != "text" else record[column]
        if isinstance(value, str) and field != "text":
            value = value.strip()
            if field not in ("id", "label", "sentences") and value in _EMPTY:
                continue
        if field in _INT_FIELDS:
            value = _int(value, where, column)
            if field == "error_sentence_id" and value is not None:
                value -= mapping.get("sentence_id_base", 0)
        elif field == "label" and labels is not None:
            if not isinstance(value, str | int | float | bool):
                raise InputError(f"{where}: field '{column}': expected a single value, got {type(value).__name__}")
            if value not in labels:
                raise InputError(f"{where}: field '{column}': value {value!r} is not in label_values "
                                 f"({', '.join(map(repr, labels))})")
            value = labels[value]
        elif field == "lang" and isinstance(value, str):
            value = value.lower()
        data[field] = value
    if isinstance(data.get("sentences"), str) and isinstance(data.get("text"), str):
        try:
            data["sentences"] = parse_numbered(data["sentences"], data["text"])
        except ValueError as exc:
            raise InputError(f"{where}: field '{columns['sentences']}': {exc}") from None
    return data


def read_mapped(path: str | Path, mapping: dict[str, Any], report: InputReport | None = None) -> list[FactCheckItem]:
    """Any CSV or JSONL as items, through ``mapping`` (field -> source column, plus ``label_values``
    and ``sentence_id_base``). Empty and "NA" values of optional fields count as absent; items
    without a mapped id are named file-stem-line; a mapped ``sentences`` column is an indexed list
    as in MedErrBench (or, in JSONL, a list of strings). A mapping with no location field
    (``error_sentence_id``, ``error_span``, offsets) reads a veracity-only file: its error items
    carry no location, and localisation is reported as not available."""
    path = Path(path)
    report = _report(path, report)
    mapping = _check_mapping(mapping)
    columns = {k: v for k, v in mapping.items() if k not in _MAPPING_OPTIONS}
    context: dict[str, Any] = {}
    if not any(f in columns for f in LOCATION_FIELDS):
        context["veracity_only"] = True
        report.notes.append(NO_LOCALISATION)
    if "sentences" not in columns:
        context["split_hint"] = (" (the texts were split here: the mapping has no 'sentences'; if the file numbers "
                                 "its sentences in a column, map it with sentences=<column>)")
    resplit = None
    if file_kind(path) == "jsonl":
        records: Any = _jsonl_records(path, report)
    else:
        header, records = read_csv_rows(path, report)
        for field, column in columns.items():
            if column not in header:
                raise InputError(f"{path}:1: field '{field}': mapped column {column!r} is not in the header "
                                 f"(columns: {', '.join(header)})")
        if "sentences" not in columns and "error_sentence_id" in columns and numbered_columns(header, columns):
            resplit = ResplitCheck(numbered_columns(header, columns))
    ids = UniqueIds(path, columns.get("id", "id"))

    def item(line: int, record: Any) -> FactCheckItem:
        made = _validate(_mapped_data(path, line, record, mapping, columns), f"{path}:{line}", columns, context)
        ids.check(made, line)
        if resplit is not None:
            resplit.compare(line, record, made)
        return made

    items = report.collect(records, item)
    if resplit is not None:
        report.warnings += resplit.warnings(path)
    return items


def load_dataset(path: str | Path, mapping: dict[str, Any] | str | None = None,
                 report: InputReport | None = None) -> list[FactCheckItem]:
    """Items from any supported file: through ``mapping`` (a dict or a ``parse_mapping`` string)
    when given, else MedFact JSONL or a MedErrBench CSV (recognised by its header). ``report``
    (``benchmarks.datasets.rows.InputReport``) sets ``on_bad_row`` and ``limit`` and collects what
    was skipped; without one a bad row fails the whole file."""
    path = Path(path)
    report = _report(path, report)
    if mapping is not None:
        return read_mapped(path, parse_mapping(mapping) if isinstance(mapping, str) else mapping, report)
    if file_kind(path) == "jsonl":
        return read_medfact_jsonl(path, report)
    header, _ = read_csv_rows(path, InputReport(str(path)))
    missing = [c for c in MEDERRBENCH_COLUMNS if c not in header]
    if missing:
        raise InputError(f"{path}:1: not a MedErrBench file (missing columns {missing}); other CSV files need "
                         "a column mapping such as 'text=<column>,label=<column>,label_values=1:error;0:correct'")
    return read_mederrbench_csv(path, report)
