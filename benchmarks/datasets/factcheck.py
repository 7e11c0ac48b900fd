"""Fact-checking data in one schema (MedFact's), whatever file it came from.

The fact-checking benchmark (PROTOCOLS.md section 4) scores veracity per text and error location
per flagged text, so every source is read into the same ``FactCheckItem``: MedFact-style JSONL,
MedErrBench CSVs (the public stand-in for MedFact) and any other CSV or JSONL through a column
mapping. As with instruction files (``benchmarks.datasets.instructions``), the whole file is validated before anything
is returned, NUL characters are refused, and every problem is an ``InputError`` reading
``file:line: field 'x': message`` (CSV lines are physical lines, the header being line 1, so a row
whose quoted cells span several lines is reported at its first line).

Sentence ids are 0-based, as MedErrBench's ``Error Sentence ID`` (whose -1 means "no error"):
``error_sentence_id`` i names ``sentences[i]``, and the sentences are cut the way MedErrBench cuts
them (``benchmarks.datasets.sentences``), so a sentence-ID match means the same thing on every source.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from benchmarks.datasets.instructions import InputError, Text, read_jsonl
from benchmarks.datasets.limits import check_size
from benchmarks.datasets.mederrbench import REQUIRED
from benchmarks.datasets.sentences import detect_lang, parse_numbered, split_sentences

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
    def _consistent(self) -> FactCheckItem:
        if self.label == "correct":
            for name in ("error_sentence_id", "error_span", "error_start", "error_end", "correction"):
                if getattr(self, name) is not None:
                    raise _FieldError(name, "a correct item must not have an error location or correction")
        elif self.error_sentence_id is None and self.error_span is None and self.error_start is None:
            raise _FieldError("error_sentence_id", "an error item needs error_sentence_id or error_span")
        n = len(self.sentences)
        if self.error_sentence_id is not None and not 0 <= self.error_sentence_id < n:
            raise _FieldError("error_sentence_id", f"sentence id {self.error_sentence_id} is out of range: "
                              f"the text has {n} sentences, ids 0 to {n - 1}")
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


def _validate(data: dict[str, Any], where: str, columns: dict[str, str] | None = None) -> FactCheckItem:
    """The item, or an InputError naming the field (as the source column when there is one)."""
    try:
        return FactCheckItem.model_validate(data)
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


def _unique(items: list[FactCheckItem], lines: list[int], path: Path, id_field: str) -> list[FactCheckItem]:
    """Results are joined to items by id, so two items with one id would silently share a score."""
    first: dict[str, int] = {}
    for item, line in zip(items, lines, strict=True):
        if item.id in first:
            raise InputError(f"{path}:{line}: field '{id_field}': duplicate id {item.id!r} "
                             f"(first at line {first[item.id]})")
        first[item.id] = line
    return items


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and (first physical line, row) pairs, every row checked for shape and NUL characters."""
    if not path.exists():
        raise InputError(f"{path}: file does not exist")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a CSV file")
    raw = path.read_bytes()
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not valid UTF-8 (byte offset {exc.start})") from None
    reader = csv.reader(io.StringIO(content, newline=""))
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        header = next(reader, None)
        if not header:
            raise InputError(f"{path}: no records (the file is empty)")
        header = [h.strip() for h in header]
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes:
            raise InputError(f"{path}:1: columns {dupes} appear more than once in the header")
        start = reader.line_num + 1
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not cells:
                continue
            if len(cells) != len(header):
                raise InputError(f"{path}:{line}: expected {len(header)} fields as in the header, got {len(cells)}")
            for name, cell in zip(header, cells, strict=True):
                if "\x00" in cell:
                    raise InputError(f"{path}:{line}: field '{name}': contains a NUL character (\\u0000)")
            try:
                check_size(f"{path}:{line}", sum(len(c.encode("utf-8")) for c in cells), cells)
            except ValueError as exc:
                raise InputError(str(exc)) from None
            rows.append((line, dict(zip(header, cells, strict=True))))
    except csv.Error as exc:
        raise InputError(f"{path}:{reader.line_num}: not a readable CSV file: {exc}") from None
    if not rows:
        raise InputError(f"{path}: no records (only a header)")
    return header, rows


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


def read_mederrbench_csv(path: str | Path) -> list[FactCheckItem]:
    """MedErrBench rows as items: label from ``Error Flag``, sentences and their ids from
    ``Sentences`` (placed on the text), span from ``Error Sentence``, correction from ``Corrected
    Sentence``; ``Difficulty`` stripped and capitalised (the files mix "Medium ", "medium")."""
    path = Path(path)
    header, rows = _read_csv(path)
    missing = [c for c in MEDERRBENCH_COLUMNS if c not in header]
    if missing:
        raise InputError(f"{path}:1: not a MedErrBench file, missing columns {missing}")
    file_lang = _lang_of_file(path)
    items, lines = [], []
    for line, row in rows:
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
        items.append(_validate(data, where, _MEDERRBENCH_FIELDS))
        lines.append(line)
    return _unique(items, lines, path, "Text ID")


class _Record(BaseModel):
    """Any JSON object: lets ``benchmarks.datasets.instructions.read_jsonl`` do the line, UTF-8 and JSON checks."""

    model_config = ConfigDict(extra="allow")


def _jsonl_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    return [(line, dict(rec.model_extra or {})) for line, rec in read_jsonl(path, _Record)]


def read_medfact_jsonl(path: str | Path) -> list[FactCheckItem]:
    """JSONL in the ``FactCheckItem`` schema, one object a line; ``sentences`` split from the text
    when absent, ``source`` set to file:line when absent."""
    path = Path(path)
    items, lines = [], []
    for line, data in _jsonl_records(path):
        data.setdefault("source", f"{path.name}:{line}")
        items.append(_validate(data, f"{path}:{line}"))
        lines.append(line)
    return _unique(items, lines, path, "id")


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


def read_mapped(path: str | Path, mapping: dict[str, Any]) -> list[FactCheckItem]:
    """Any CSV or JSONL as items, through ``mapping`` (field -> source column, plus ``label_values``
    and ``sentence_id_base``). Empty and "NA" values of optional fields count as absent; items
    without a mapped id are named file-stem-line; a mapped ``sentences`` column is an indexed list
    as in MedErrBench (or, in JSONL, a list of strings)."""
    path = Path(path)
    mapping = _check_mapping(mapping)
    columns = {k: v for k, v in mapping.items() if k not in _MAPPING_OPTIONS}
    if _kind(path) == "jsonl":
        records = _jsonl_records(path)
    else:
        header, records = _read_csv(path)
        for field, column in columns.items():
            if column not in header:
                raise InputError(f"{path}:1: field '{field}': mapped column {column!r} is not in the header "
                                 f"(columns: {', '.join(header)})")
    labels: dict[str, str] | None = mapping.get("label_values")
    items, lines = [], []
    for line, record in records:
        where = f"{path}:{line}"
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
        items.append(_validate(data, where, columns))
        lines.append(line)
    return _unique(items, lines, path, columns.get("id", "id"))


def _kind(path: Path) -> str:
    """"jsonl" or "csv", by extension, else by the first character of the file."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix == ".csv" or not path.is_file():
        return "csv"
    with open(path, "rb") as fh:
        head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return "jsonl" if head.startswith(b"{") else "csv"


def load_dataset(path: str | Path, mapping: dict[str, Any] | str | None = None) -> list[FactCheckItem]:
    """Items from any supported file: through ``mapping`` (a dict or a ``parse_mapping`` string)
    when given, else MedFact JSONL or a MedErrBench CSV (recognised by its header)."""
    path = Path(path)
    if mapping is not None:
        return read_mapped(path, parse_mapping(mapping) if isinstance(mapping, str) else mapping)
    if _kind(path) == "jsonl":
        return read_medfact_jsonl(path)
    header, _ = _read_csv(path)
    missing = [c for c in MEDERRBENCH_COLUMNS if c not in header]
    if missing:
        raise InputError(f"{path}:1: not a MedErrBench file (missing columns {missing}); other CSV files need "
                         "a column mapping such as 'text=<column>,label=<column>,label_values=1:error;0:correct'")
    return read_mederrbench_csv(path)
