"""The correct texts a benchmark grows from: every source file read and validated before any call.

A correct line is used as it is; an error line (MedErrBench, MedFact) is used through its correction
when it says exactly where the error is and what replaces it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agents.error_injector import ErrorType
from benchmarks.datasets.factcheck import FactCheckItem, load_dataset
from benchmarks.datasets.instructions import InputError


def corrected(item: FactCheckItem) -> FactCheckItem | None:
    """The correct text behind an error item (its located error replaced by the correction), or
    None when the item does not say exactly where and what the correction is."""
    if item.label == "correct":
        return item
    if item.error_start is None or item.error_end is None or not item.correction or item.error_span is None:
        return None
    text = item.text[:item.error_start] + item.correction + item.text[item.error_end:]
    sentences = list(item.sentences)
    sid = item.error_sentence_id
    if sid is not None and item.error_span in sentences[sid]:
        sentences[sid] = sentences[sid].replace(item.error_span, item.correction, 1)
    else:
        sentences = None
    return FactCheckItem.model_validate({
        "id": f"{item.id}-corrected", "text": text, "label": "correct", "sentences": sentences,
        "specialty": item.specialty, "writing_style": item.writing_style, "lang": item.lang,
        "source": item.source})


def read_sources(paths: list[Path], mapping: dict[str, Any] | str | None,
                 error_types: list[ErrorType]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Correct texts from every file as store records (the payload a ``FactCheckItem`` dump), and
    counts of what was used. Every file is read and validated before anything is returned; a
    correct line that asks for an error type (its ``error_type``) must name a known one."""
    known = {t.name for t in error_types}
    records, counts = [], {"correct rows": 0, "corrected error rows": 0, "error rows without a correction": 0}
    for path in paths:
        for item in load_dataset(path, mapping):
            source = corrected(item)
            if source is None:
                counts["error rows without a correction"] += 1
                continue
            counts["correct rows" if item.label == "correct" else "corrected error rows"] += 1
            wanted = item.error_type if item.label == "correct" else None
            if wanted is not None and wanted not in known:
                line = (item.source or "").rpartition(":")[2]
                raise InputError(f"{path}:{line}: field 'error_type': unknown error type {wanted!r} "
                                 f"(known: {', '.join(sorted(known))})")
            payload = source.model_dump(mode="json", exclude_none=True, exclude={"id", "source"})
            if wanted is None:
                payload.pop("error_type", None)
            records.append({"payload": payload, "external_id": source.id, "source": source.source})
    return records, counts
