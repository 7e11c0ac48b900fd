"""MedErrBench texts as clinical instructions with data-derived rubrics (for rubric-prefs demos).

Each MedErrBench row is a real clinical text that is either correct or holds exactly one error
(with the erroneous sentence and its correction). The instruction asks for a review of the text;
the rubric comes from the gold labels (origin ``dataset``): find the error and correct it, or say
there is none, and a safety veto for calling a correct sentence wrong (over-criticism, the failure
mode the MedFact study measures). English and Chinese files give English and Chinese prompts; the
wording lives in ``benchmarks/datasets/data/mederrbench.json``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from benchmarks.datasets.instructions import InputError

REQUIRED = ("Text ID", "Text", "Error Flag", "Error Sentence", "Corrected Sentence")

TEXTS = json.loads((Path(__file__).parent / "data" / "mederrbench.json").read_text(encoding="utf-8"))


def language_of(path: Path) -> str:
    return "zh" if path.name.upper().startswith("CN") else "en"


def rubric_for(row: dict[str, str], lang: str) -> dict[str, Any]:
    c = TEXTS["criteria"][lang]
    if row["Error Flag"].strip() == "1":
        prof = [{"id": "find", "text": c["find"].format(sentence=row["Error Sentence"].strip()),
                 "kind": "proficiency", "dimension": "accuracy", "weight": 0.5},
                {"id": "fix", "text": c["fix"].format(correction=row["Corrected Sentence"].strip()),
                 "kind": "proficiency", "dimension": "accuracy", "weight": 0.5}]
    else:
        prof = [{"id": "none", "text": c["none"], "kind": "proficiency", "dimension": "accuracy", "weight": 1.0}]
    return {"criteria": [
        *prof,
        {"id": "explain", "text": c["explain"], "kind": "bonus", "dimension": "logical_clarity"},
        {"id": "overcritical", "text": c["veto"], "kind": "veto", "dimension": "severe_hallucination"},
    ]}


def mederrbench_instructions(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Rubric instructions (the JSONL shape ``rubric-prefs`` reads) from a MedErrBench CSV."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file does not exist")
    lang = language_of(path)
    try:
        return _read(path, lang, limit)
    except csv.Error as exc:
        raise InputError(f"{path}: not a readable CSV file: {exc}") from None


def _read(path: Path, lang: str, limit: int | None) -> list[dict[str, Any]]:
    from benchmarks.datasets.rows import decode_utf8

    out: list[dict[str, Any]] = []
    reader = csv.DictReader(io.StringIO(decode_utf8(path, path.read_bytes()), newline=""))
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise InputError(f"{path}: not a MedErrBench file, missing columns {missing}")
    start = reader.line_num + 1
    for row in reader:
        lineno, start = start, reader.line_num + 1
        if all(not (v or "").strip() for v in row.values() if isinstance(v, str)):
            continue  # a row of bare commas (spreadsheet exports end with hundreds)
        if row["Error Flag"].strip() not in ("0", "1"):
            raise InputError(f"{path}:{lineno}: field 'Error Flag': expected 0 or 1, got {row['Error Flag']!r}")
        out.append({"id": row["Text ID"], "prompt": TEXTS["prompt"][lang].format(text=row["Text"].strip()),
                    "lang": lang, "rubric": rubric_for(row, lang),
                    "meta": {"source": "mederrbench", "error_flag": int(row["Error Flag"]),
                             "error_type": row.get("Error Type", "").strip()}})
        if limit is not None and len(out) >= limit:
            break
    return out
