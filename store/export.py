"""Export stored pairs as the datasets trl trainers load.

- ``preference``: conversational ``prompt`` / ``chosen`` / ``rejected`` (DPOTrainer, RewardTrainer):
  ``prompt`` is the message list, ``chosen`` and ``rejected`` are one-message assistant lists.
- ``prompt``: one row per distinct prompt, ``{"prompt": [...messages]}`` (GRPOTrainer).

Formats: JSONL, Parquet, or a Hugging Face ``datasets`` folder (``save_to_disk``). Files are
written to a temporary name and renamed, so a failed export never leaves a half-written file. With
``card`` a dataset card (Hugging Face format, ``store.dataset_card``) describes the export: ``README.md``
inside an ``hf`` folder, ``<name>.README.md`` beside a file (``pairs.jsonl`` -> ``pairs.README.md``).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Text, cast, or_, select

from store.db import Store
from store.errors import StoreError
from store.models import PreferencePair
from store.review import unflagged_clause

if TYPE_CHECKING:
    from store.dataset_card import CardOptions

FORMATS = ("jsonl", "parquet", "hf")
SHAPES = ("preference", "prompt")


@dataclass(frozen=True)
class PairFilter:
    kind: str | None = None
    run_id: str | None = None
    min_margin: float | None = None
    language: str | None = None
    include_flagged: bool = False  # pairs a reviewer flagged as wrong (review app) are left out unless asked
    # rubric pairs' margins, each in its own unit (veto count, S1, S2 differences: margins s3, s1, s2);
    # pairs without that component (generic, esc) are not filtered by it
    min_veto_margin: float | None = None
    min_s1_margin: float | None = None
    min_s2_margin: float | None = None


COMPONENT_MARGINS = (("min_veto_margin", "s3"), ("min_s1_margin", "s1"), ("min_s2_margin", "s2"))


COLUMNS = ("id", "kind", "run_id", "item_id", "prompt_json", "chosen", "rejected", "margin", "language")


def filter_clauses(flt: PairFilter) -> list[ColumnElement[bool]]:
    """The WHERE clauses of a selection (the export's rows and its card describe the same pairs)."""
    clauses = []
    if flt.kind:
        clauses.append(PreferencePair.kind == flt.kind)
    if flt.run_id:
        clauses.append(PreferencePair.run_id == flt.run_id)
    if flt.min_margin is not None:
        clauses.append(PreferencePair.margin >= flt.min_margin)
    for attr, key in COMPONENT_MARGINS:
        if getattr(flt, attr) is not None:
            value = PreferencePair.margins[key].as_float()
            clauses.append(or_(value.is_(None), value >= getattr(flt, attr)))
    if flt.language:
        clauses.append(PreferencePair.language == flt.language)
    if not flt.include_flagged:
        clauses.append(unflagged_clause())
    return clauses


def iter_pairs(store: Store, flt: PairFilter, batch: int = 5000) -> Iterator[tuple[Any, ...]]:
    """Rows in ``COLUMNS`` order; the prompt comes as its stored JSON text (not decoded), so a
    JSONL export copies it instead of parsing and re-serialising 100k message lists."""
    q = select(
        PreferencePair.id, PreferencePair.kind, PreferencePair.run_id, PreferencePair.item_id,
        cast(PreferencePair.prompt, Text), PreferencePair.chosen, PreferencePair.rejected,
        PreferencePair.margin, PreferencePair.language,
    ).where(*filter_clauses(flt)).order_by(PreferencePair.id)
    with store.engine.connect() as conn:
        yield from conn.execution_options(yield_per=batch).execute(q)


def _metadata(row: tuple[Any, ...]) -> dict[str, Any]:
    pid, kind, run_id, item_id, _, _, _, margin, language = row
    return {"pair_id": pid, "kind": kind, "run_id": run_id, "item_id": item_id, "margin": margin,
            "language": language}


def to_jsonl_line(row: tuple[Any, ...], shape: str, with_metadata: bool) -> str:
    """One JSONL line, built around the stored prompt JSON text."""
    parts = ['{"prompt": ', row[4]]
    if shape == "preference":
        parts += [', "chosen": [{"role": "assistant", "content": ', json.dumps(row[5], ensure_ascii=False),
                  '}], "rejected": [{"role": "assistant", "content": ', json.dumps(row[6], ensure_ascii=False),
                  "}]"]
    if with_metadata:
        parts += [", ", json.dumps(_metadata(row), ensure_ascii=False)[1:-1]]
    parts.append("}\n")
    return "".join(parts)


def to_record(row: tuple[Any, ...], shape: str, with_metadata: bool) -> dict[str, Any]:
    rec: dict[str, Any] = {"prompt": json.loads(row[4])}
    if shape == "preference":
        rec["chosen"] = [{"role": "assistant", "content": row[5]}]
        rec["rejected"] = [{"role": "assistant", "content": row[6]}]
    if with_metadata:
        rec.update(_metadata(row))
    return rec


def export_pairs(
    store: Store, out: Path, fmt: str = "jsonl", shape: str = "preference", flt: PairFilter | None = None,
    with_metadata: bool = False, card: CardOptions | None = None,
) -> int:
    """Write the selected pairs to ``out``; returns the number of rows written. With ``card``, the
    dataset card is written too (inside the folder before it replaces the old one; beside a file
    right after it), so ``carealign db export`` never leaves an export without its card."""
    if fmt not in FORMATS:
        raise StoreError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if shape not in SHAPES:
        raise StoreError(f"unknown export shape {shape!r}; choose one of {', '.join(SHAPES)}")
    out = Path(out)
    if not out.parent.exists():
        raise StoreError(f"cannot write {str(out)!r}: folder {str(out.parent)!r} does not exist")
    flt = flt or PairFilter()
    seen_prompts: set[str] = set()

    def rows() -> Iterator[tuple[Any, ...]]:
        for row in iter_pairs(store, flt):
            if shape == "prompt":  # one row per distinct prompt
                if row[4] in seen_prompts:
                    continue
                seen_prompts.add(row[4])
            yield row

    _check_target(out, fmt)
    tmp = out.with_name(out.name + ".partial")
    try:
        if fmt == "jsonl":
            n = _write_jsonl(tmp, (to_jsonl_line(r, shape, with_metadata) for r in rows()))
        else:
            n = _write_arrow(tmp, [to_record(r, shape, with_metadata) for r in rows()], fmt)
        if n == 0:
            raise StoreError(f"no pairs match the selection ({_describe(flt)}); nothing written to {str(out)!r}")
        if card is not None and fmt == "hf":
            write_card(store, tmp, out, fmt, shape, flt, with_metadata, n, card)
        if out.is_dir():  # only ever a previous datasets export (checked above)
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    if card is not None and fmt != "hf":
        write_card(store, out, out, fmt, shape, flt, with_metadata, n, card)
    return n


def write_card(store: Store, written: Path, out: Path, fmt: str, shape: str, flt: PairFilter, with_metadata: bool,
               rows: int, card: CardOptions) -> Path:
    """The card of an export at ``written`` (its final path ``out``); see ``store.dataset_card``."""
    from store.dataset_card import card_path, dataset_card

    path = card_path(written, fmt)
    text = dataset_card(store, out, fmt, shape, flt, with_metadata, rows, card)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def _is_hf_export(folder: Path) -> bool:
    return (folder / "dataset_info.json").is_file() and (folder / "state.json").is_file()


def _check_target(out: Path, fmt: str) -> None:
    """Never delete what a user did not ask to replace: a file replaces a file, and an ``hf``
    export replaces only a previous ``hf`` export."""
    if fmt == "hf":
        if out.is_file():
            raise StoreError(f"cannot write an hf dataset folder at {str(out)!r}: a file is there")
        if out.is_dir() and any(out.iterdir()) and not _is_hf_export(out):
            raise StoreError(f"{str(out)!r} is a folder that is not a previous hf export; choose another --out")
    elif out.is_dir():
        raise StoreError(f"{str(out)!r} is a folder; --out must name a file for format {fmt}")


def _describe(flt: PairFilter) -> str:
    parts = [f"{k}={v}" for k, v in flt.__dict__.items() if v is not None and k != "include_flagged"]
    return ", ".join(parts) or "all pairs"


def _write_jsonl(path: Path, lines: Iterator[str]) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(line)
            n += 1
    return n


def _write_arrow(path: Path, rows: list[dict[str, Any]], fmt: str) -> int:
    import pyarrow as pa

    if not rows:
        return 0
    table = pa.Table.from_pylist(rows)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    else:
        from datasets import Dataset, disable_progress_bars

        disable_progress_bars()
        Dataset(table).save_to_disk(str(path))
    return len(rows)
