"""MEDIQA-CORR 2024 run files: the plain format clinical error-detection results are published in.

One line per text, fields separated by single spaces (the reference is the task's README and its
evaluation scripts, repository abachaa/MEDIQA-CORR-2024, ``README.md`` and ``evaluation/``):

    TEXT_ID FLAG SENTENCE_ID CORRECTED_SENTENCE
    en-val-4 0 -1 NA
    en-val-5 1 7 Chlamydia trachomatis is the causal pathogen.

``FLAG`` is 1 when the text holds an error; ``SENTENCE_ID`` is the erroneous sentence's id in the
input's own numbering (MedErrBench's and MEDIQA-CORR's, 0-based), -1 when none; the correction is
the rest of the line, ``NA`` when none. A correction is written on one line (its whitespace
collapsed), as the official parser would read it anyway.

From carealign's answers (``run_row``): an "error" verdict is flag 1 with its sentence (-1 when the
checker named none) and its correction (``NA`` when it gave none); "correct" and "unsure" are flag 0
(unsure is not a claim of an error, as in the fact-check report); a text without a final answer is
written as ``0 -1 NA`` and marked unanswered. Gold rows (``gold_row``) come from the same
``FactCheckItem`` fields the report scores.

Reading is stricter than the official script, which prints "Invalid line" and scores the text as
missing: here a malformed line, a flag other than 0/1 or a repeated id is an ``InputError`` naming
the file, line and field. Ids outside the official pattern ``[a-z0-9-]+`` (upper case, underscores)
are accepted; ``unofficial_ids`` lists them, because the official script would skip those lines.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.datasets.instructions import InputError
from benchmarks.datasets.limits import check_size

NA = "NA"
OFFICIAL_ID = re.compile(r"[a-z0-9\-]+")  # the text ids the official parser accepts
_SENTENCE_ID = re.compile(r"-?[0-9]+")


@dataclass(frozen=True)
class RunRow:
    """One line of a run file."""

    text_id: str
    flag: int  # 1: the text holds an error
    sentence_id: int  # the erroneous sentence, -1 when none
    correction: str  # NA when none
    answered: bool | None = True  # False: no final answer (written as 0 -1 NA); None: unknown (read from a file)


@dataclass(frozen=True)
class GoldRow:
    """What a run is scored against: a dataset text's label, error sentence and correction."""

    text_id: str
    flag: int
    sentence_id: int | None  # -1 for a correct text; None: an erroneous text with no gold sentence id
    correction: str  # NA when the text has none


def one_line(text: str | None) -> str:
    """A correction as a run file holds it: whitespace collapsed, ``NA`` when empty."""
    collapsed = " ".join((text or "").split())
    return collapsed or NA


def run_row(text_id: str, verdict: str | None, sentence_id: int | None, correction: str | None,
            id_base: int = 0) -> RunRow:
    """A method's final answer as a run-file row; ``verdict`` None: the text has no answer.
    ``id_base`` 1 writes sentence ids 1-based, as an input read with ``sentence_id_base=1``."""
    if verdict is None:
        return RunRow(text_id, 0, -1, NA, answered=False)
    if verdict != "error":
        return RunRow(text_id, 0, -1, NA)
    return RunRow(text_id, 1, -1 if sentence_id is None else sentence_id + id_base, one_line(correction))


def gold_row(text_id: str, item: Mapping[str, Any], id_base: int = 0) -> GoldRow:
    """The gold row of a text in the ``FactCheckItem`` schema (an item, or its stored payload)."""
    if item["label"] != "error":
        return GoldRow(text_id, 0, -1, NA)
    sentence = item.get("error_sentence_id")
    return GoldRow(text_id, 1, None if sentence is None else sentence + id_base, one_line(item.get("correction")))


def format_line(row: RunRow) -> str:
    """The row as a run-file line (no newline). Raises ValueError for an id a line cannot hold."""
    if not row.text_id or any(c.isspace() for c in row.text_id):
        raise ValueError(f"text id {row.text_id!r} is empty or holds whitespace: a run file cannot hold it")
    return f"{row.text_id} {row.flag} {row.sentence_id} {one_line(row.correction)}"


def write_run_file(path: Path, rows: Iterable[RunRow]) -> int:
    """Write the rows (UTF-8, one line each, in the given order); returns the number of lines.
    Every line is formatted before the file is opened, so a bad id leaves no half-written file."""
    lines = [format_line(r) for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return len(lines)


def unofficial_ids(rows: Iterable[RunRow]) -> list[str]:
    """Text ids the official evaluation script would reject as invalid lines (and so score as missing)."""
    return [r.text_id for r in rows if not OFFICIAL_ID.fullmatch(r.text_id)]


def read_run_file(path: str | Path, gold_ids: Collection[str] | None = None, gold_name: str = "the gold texts"
                  ) -> list[RunRow]:
    """A run file's rows in file order; blank lines are skipped, anything else malformed is an error,
    and so is a text id outside ``gold_ids`` when given (a run scored against the wrong gold file)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file does not exist" if not path.exists() else f"{path}: is not a file")
    try:
        content = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:  # exc.object: the bytes decoded
        bad_line = exc.object[:exc.start].count(b"\n") + 1
        raise InputError(f"{path}:{bad_line}: not valid UTF-8") from None
    rows: list[RunRow] = []
    first: dict[str, int] = {}
    # lines end as in the official script's text-mode reading (\n, \r\n, \r), not at every Unicode separator
    for number, line in enumerate(content.replace("\r\n", "\n").replace("\r", "\n").split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            check_size(where, len(line.encode("utf-8")), line)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        parts = line.split(maxsplit=3)
        if len(parts) < 4:
            raise InputError(f"{where}: expected 'TEXT_ID FLAG SENTENCE_ID CORRECTED_SENTENCE' (the correction "
                             f"NA when none), got {len(parts)} fields")
        text_id, flag, sentence, correction = parts
        if flag not in ("0", "1"):
            raise InputError(f"{where}: field 'flag': expected 0 or 1, got {flag!r}")
        if not _SENTENCE_ID.fullmatch(sentence):
            raise InputError(f"{where}: field 'sentence id': expected an integer (-1 for none), got {sentence!r}")
        if gold_ids is not None and text_id not in gold_ids:
            raise InputError(f"{where}: field 'text id': {text_id!r} is not among {gold_name}")
        if text_id in first:
            raise InputError(f"{where}: field 'text id': duplicate id {text_id!r} (first at line {first[text_id]})")
        first[text_id] = number
        rows.append(RunRow(text_id, int(flag), int(sentence), one_line(correction), answered=None))
    if not rows:
        raise InputError(f"{path}: no run lines (the file is empty)")
    return rows
