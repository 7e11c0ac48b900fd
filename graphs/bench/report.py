"""What the bench commands write besides the store: the comparison of stored runs (a table, PNG
plots and ``report.md``) and the items the medication builder accepted and rejected (JSONL)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.bench_report import RunEntry, compare_rows, markdown_report, write_plots
from store import Store
from store.bench import run_summaries


@dataclass
class Comparison:
    columns: list[str]
    rows: list[list[str]]
    report: Path
    plots: list[Path] = field(default_factory=list)


def compare_runs(store: Store, run_ids: list[str], out_dir: Path) -> Comparison:
    """The stored summaries of these runs (unique id prefixes are enough) side by side; writes the
    plots and ``report.md`` to ``out_dir``."""
    entries = [RunEntry(run.id, str(run.started_at), row.metrics) for run, row in run_summaries(store, run_ids)]
    columns, rows = compare_rows(entries)
    plots = write_plots(entries, out_dir)
    report = out_dir / "report.md"
    report.write_text(markdown_report(entries, plots), encoding="utf-8")
    return Comparison(columns, rows, report, plots)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def write_built_items(out: Path, accepted: list[dict[str, Any]], rejected: list[dict[str, Any]]) -> Path:
    """Accepted items to ``out`` (medication bench JSONL), rejections with their reasons to
    ``OUT.rejected.jsonl``; returns the latter's path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_jsonl(out, accepted)
    rejections = out.with_name(out.name + ".rejected.jsonl")
    _write_jsonl(rejections, rejected)
    return rejections
