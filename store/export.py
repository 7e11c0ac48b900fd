"""Export stored pairs as the datasets trl trainers load.

- ``preference``: conversational ``prompt`` / ``chosen`` / ``rejected`` (DPOTrainer, RewardTrainer):
  ``prompt`` is the message list, ``chosen`` and ``rejected`` are one-message assistant lists.
- ``prompt``: one row per distinct prompt, ``{"prompt": [...messages]}`` (GRPOTrainer).

Formats: JSONL, Parquet, or a Hugging Face ``datasets`` folder (``save_to_disk``). Files are
written to a temporary name and renamed, so a failed export never leaves a half-written file.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from store.db import Store
from store.errors import StoreError
from store.models import PreferencePair

FORMATS = ("jsonl", "parquet", "hf")
SHAPES = ("preference", "prompt")


@dataclass(frozen=True)
class PairFilter:
    kind: str | None = None
    run_id: str | None = None
    min_margin: float | None = None
    language: str | None = None


def iter_pairs(store: Store, flt: PairFilter, batch: int = 5000) -> Iterator[dict[str, Any]]:
    cols = (
        PreferencePair.id, PreferencePair.kind, PreferencePair.run_id, PreferencePair.item_id,
        PreferencePair.prompt, PreferencePair.chosen, PreferencePair.rejected, PreferencePair.margin,
        PreferencePair.language,
    )
    q = select(*cols).order_by(PreferencePair.id)
    if flt.kind:
        q = q.where(PreferencePair.kind == flt.kind)
    if flt.run_id:
        q = q.where(PreferencePair.run_id == flt.run_id)
    if flt.min_margin is not None:
        q = q.where(PreferencePair.margin >= flt.min_margin)
    if flt.language:
        q = q.where(PreferencePair.language == flt.language)
    with store.engine.connect() as conn:
        result = conn.execution_options(yield_per=batch).execute(q)
        for row in result:
            yield row._asdict()


def to_record(pair: dict[str, Any], shape: str, with_metadata: bool) -> dict[str, Any]:
    if shape == "prompt":
        rec: dict[str, Any] = {"prompt": pair["prompt"]}
    else:
        rec = {
            "prompt": pair["prompt"],
            "chosen": [{"role": "assistant", "content": pair["chosen"]}],
            "rejected": [{"role": "assistant", "content": pair["rejected"]}],
        }
    if with_metadata:
        rec.update(
            pair_id=pair["id"], kind=pair["kind"], run_id=pair["run_id"], item_id=pair["item_id"],
            margin=pair["margin"], language=pair["language"],
        )
    return rec


def export_pairs(
    store: Store, out: Path, fmt: str = "jsonl", shape: str = "preference", flt: PairFilter | None = None,
    with_metadata: bool = False,
) -> int:
    """Write the selected pairs to ``out``; returns the number of rows written."""
    if fmt not in FORMATS:
        raise StoreError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if shape not in SHAPES:
        raise StoreError(f"unknown export shape {shape!r}; choose one of {', '.join(SHAPES)}")
    out = Path(out)
    if not out.parent.exists():
        raise StoreError(f"cannot write {str(out)!r}: folder {str(out.parent)!r} does not exist")
    flt = flt or PairFilter()
    seen_prompts: set[str] = set()

    def records() -> Iterator[dict[str, Any]]:
        for pair in iter_pairs(store, flt):
            if shape == "prompt":
                key = json.dumps(pair["prompt"], sort_keys=True, ensure_ascii=False)
                if key in seen_prompts:
                    continue
                seen_prompts.add(key)
            yield to_record(pair, shape, with_metadata)

    _check_target(out, fmt)
    tmp = out.with_name(out.name + ".partial")
    try:
        if fmt == "jsonl":
            n = _write_jsonl(tmp, records())
        else:
            n = _write_arrow(tmp, list(records()), fmt)
        if n == 0:
            raise StoreError(f"no pairs match the selection ({_describe(flt)}); nothing written to {str(out)!r}")
        if out.is_dir():  # only ever a previous datasets export (checked above)
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    return n


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
    parts = [f"{k}={v}" for k, v in flt.__dict__.items() if v is not None]
    return ", ".join(parts) or "all pairs"


def _write_jsonl(path: Path, records: Iterator[dict[str, Any]]) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False))
            fh.write("\n")
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
