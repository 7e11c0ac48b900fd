"""Medication-knowledge bench (ChiDrug, PROTOCOLS.md section 5): item format, drug-label records
and metrics. ChiDrug's data and format are not public; this is carealign's documented format.

**Items** (JSONL, one per line)::

    {"id": "amx-ind-mc", "task": "indication", "question": "...",
     "options": {"A": "...", "B": "...", "C": "...", "D": "..."},   # absent or null: open answer
     "answer": "B",                      # multiple choice: the correct letter; open: the reference answer
     "drug": "Amoxiclin", "lang": "en", "evidence": "<the label text that supports the answer>"}

``task`` is one of the six ChiDrug task types: the knowledge tasks ``indication``,
``dosage_administration``, ``contraindicated_population``, ``mechanism_of_action`` and the reasoning
tasks ``drug_recommendation`` and ``drug_interaction``. Every item allows the answer "I don't know"
(an abstention, never counted as correct, never as over-confident). A multiple-choice answer is
right when the letter matches; an open answer is graded against the reference by the grader model.

**Drug labels** (the builder's input, JSON list): ``{"id", "drug", "lang"?, "sections": {"indications",
"dosage_administration", "contraindications", "mechanism_of_action", "interactions"}}``; a missing
section only skips the tasks that need it.

**Metrics**, overall and per task: accuracy (correct / items), abstention rate, accuracy when
answering (correct / answered), over-confidence (wrong and not abstaining / items), and ECE over the
answered items whose reply stated a confidence.
"""

from __future__ import annotations

import json
import re
import string
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agents.medication_roles import IDK
from benchmarks.datasets.instructions import InputError, Text, read_jsonl
from benchmarks.datasets.rows import InputReport
from benchmarks.metrics import expected_calibration_error, safe_div

TASKS = ("indication", "dosage_administration", "contraindicated_population", "mechanism_of_action",
         "drug_recommendation", "drug_interaction")
TASK_SECTIONS = {"indication": "indications", "dosage_administration": "dosage_administration",
                 "contraindicated_population": "contraindications", "mechanism_of_action": "mechanism_of_action",
                 "drug_recommendation": "indications", "drug_interaction": "interactions"}
SECTIONS = tuple(dict.fromkeys(TASK_SECTIONS.values()))
ABSTAIN_PHRASES = (IDK, "I do not know", "I am not sure", "unknown", "不知道", "我不知道")
Task = Literal["indication", "dosage_administration", "contraindicated_population", "mechanism_of_action",
               "drug_recommendation", "drug_interaction"]


class MedicationItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | int | None = None
    task: Task
    question: Text
    options: dict[str, Text] | None = None
    answer: Text
    drug: str | None = None
    lang: str | None = None
    evidence: str | None = None

    @model_validator(mode="after")
    def _answer_fits(self) -> MedicationItem:
        if self.options is not None:
            letters = list(self.options)
            if len(letters) < 2 or letters != list(string.ascii_uppercase[:len(letters)]):
                raise ValueError("options must be keyed A, B, C, ... in order (at least two)")
            if self.answer not in self.options:
                raise ValueError(f"answer {self.answer!r} is not one of the option letters {letters}")
        return self


def read_medication_items(path: str | Path, limit: int | None = None, report: Any = None) -> list[dict[str, Any]]:
    """Validated item records for ``upsert_items``; errors name the file, line and field (``report``
    as in ``benchmarks.datasets.rubric_bench.read_rubric_bench``)."""
    out = []
    for lineno, item in read_jsonl(path, MedicationItem,
                                   report if report is not None else InputReport(str(path), limit=limit)):
        payload = item.model_dump(mode="json", exclude={"id"})
        out.append({"payload": payload, "external_id": None if item.id is None else str(item.id),
                    "source": f"{Path(path).name}:{lineno}"})
    return out


class DrugLabel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Text
    drug: Text
    lang: str = "en"
    example: bool = False  # shipped examples are marked as such
    sections: dict[Literal["indications", "dosage_administration", "contraindications", "mechanism_of_action",
                           "interactions"], Text] = Field(min_length=1)


def read_drug_labels(path: str | Path) -> list[DrugLabel]:
    """Drug-label records from a JSON list; errors name the file, record and field."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: file does not exist") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not valid UTF-8 JSON: {exc}") from None
    if not isinstance(data, list) or not data:
        raise InputError(f"{path}: expected a non-empty JSON list of drug labels")
    labels = []
    for n, record in enumerate(data):
        try:
            labels.append(DrugLabel.model_validate(record))
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            raise InputError(f"{path}: label {n}: field '{field}': {err['msg']}") from None
    ids = [lab.id for lab in labels]
    if len(set(ids)) != len(ids):
        raise InputError(f"{path}: label ids must be unique")
    return labels


def normalise_words(text: str) -> str:
    """Case-, punctuation- and whitespace-insensitive form, for quote checks and abstention phrases."""
    text = re.sub(r"[\s\u3000]+", " ", text.casefold())
    return re.sub(r"[^\w\s]", "", text).strip()


def is_abstention(answer: str, phrases: Sequence[str]) -> bool:
    return normalise_words(answer) in {normalise_words(p) for p in phrases}


def _group(rows: Sequence[dict[str, Any]], n_bins: int) -> dict[str, Any]:
    n = len(rows)
    answered = [r for r in rows if not r["abstained"]]
    correct = sum(1 for r in rows if r["correct"])
    wrong_answered = sum(1 for r in answered if not r["correct"])
    confident = [r for r in answered if r.get("confidence") is not None]
    ece = expected_calibration_error([r["confidence"] for r in confident], [r["correct"] for r in confident],
                                     n_bins) if confident else None
    return {"n": n, "correct": correct, "answered": len(answered), "accuracy": safe_div(correct, n),
            "abstention_rate": safe_div(n - len(answered), n),
            "accuracy_when_answering": safe_div(correct, len(answered)) if answered else None,
            "over_confidence": safe_div(wrong_answered, n), "ece": ece, "n_with_confidence": len(confident)}


def medication_metrics(results: Sequence[dict[str, Any]], n_bins: int = 10) -> dict[str, Any]:
    """Overall and per-task metrics from per-item ``task``, ``abstained``, ``correct`` and optional
    ``confidence``. An abstention is never correct."""
    if not results:
        raise ValueError("no answered items to score")
    for n, r in enumerate(results):
        if r["abstained"] and r["correct"]:
            raise ValueError(f"result {n}: an abstention cannot be correct")
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        by_task[r["task"]].append(r)
    return {**_group(results, n_bins), "per_task": {t: _group(by_task[t], n_bins) for t in TASKS if t in by_task}}
