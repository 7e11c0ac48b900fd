"""Showing and comparing bench runs: headline metrics per bench, one run's summary rows, PNG plots
(matplotlib, Agg backend) and a Markdown report. Pure functions of the stored run summaries; no
store access here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display, safe in threads and on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

HEADLINES: dict[str, tuple[str, ...]] = {
    "rubric": ("score", "bootstrap_std"),
    "rubric_pairwise": ("accuracy", "safety_f1"),
    "rubric_meta": ("macro_f1", "f1_met", "f1_not_met"),
    "strategy": ("q", "weighted_f1", "bias"),
    "medication": ("accuracy", "abstention_rate", "accuracy_when_answering", "over_confidence", "ece"),
    "medication_build": ("accepted", "rejected"),
}


@dataclass(frozen=True)
class RunEntry:
    run_id: str
    started: str
    summary: dict[str, Any]

    @property
    def bench(self) -> str:
        return self.summary["bench"]

    @property
    def label(self) -> str:
        return f"{self.summary.get('model', '?')} ({self.run_id[:8]})"


def headline(summary: dict[str, Any]) -> dict[str, float | None]:
    """The numbers a comparison shows for one run of its bench (axes and tasks included)."""
    bench = summary["bench"]
    values: dict[str, float | None] = {}
    if bench == "rubric":
        values = {"score": summary["score"], "bootstrap_std": summary["overall"]["bootstrap_std"]}
        values.update({f"axis:{a}": v["score"] for a, v in summary.get("axes", {}).items()})
    elif bench == "rubric_pairwise":
        values = {"accuracy": summary["accuracy"], "safety_f1": summary["safety"]["f1"]}
        values.update({f"kind:{k}": v["accuracy"] for k, v in summary.get("per_kind", {}).items()})
        if summary.get("criterion_accuracy") is not None:  # a reward model judged: each criterion's own accuracy
            values["criterion_accuracy"] = summary["criterion_accuracy"]
            values.update({f"criterion:{k}": v["accuracy"] for k, v in summary.get("per_criterion_kind", {}).items()})
    elif bench == "medication":
        values = {k: summary[k] for k in HEADLINES[bench]}
        values.update({f"task:{t}": v["accuracy"] for t, v in summary.get("per_task", {}).items()})
    elif bench in HEADLINES:
        values = {k: summary.get(k) for k in HEADLINES[bench]}
    return values


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def compare_rows(entries: Sequence[RunEntry]) -> tuple[list[str], list[list[str]]]:
    """Table columns and rows: one row per run, one column per headline metric seen in any run."""
    metrics = list(dict.fromkeys(k for e in entries for k in headline(e.summary)))
    columns = ["run", "bench", "model", "dataset", "n", *metrics]
    rows = []
    for e in entries:
        h = headline(e.summary)
        n = e.summary.get("n", e.summary.get("labels"))
        rows.append([e.run_id[:12], e.bench, str(e.summary.get("model", "")), str(e.summary.get("dataset", "")),
                     str(n if n is not None else "-"), *(_fmt(h.get(m)) for m in metrics)])
    return columns, rows


def summary_rows(summary: dict[str, Any], run_id: str) -> list[tuple[str, str]]:
    """One run's summary as (metric, value) rows: its comparison row, and the items without a result."""
    columns, rows = compare_rows([RunEntry(run_id, "", summary)])
    out = list(zip(columns, rows[0], strict=True))
    return out + ([("items without a result", str(summary["n_failed"]))] if summary.get("n_failed") else [])


MEDICATION_TASK_COLUMNS = ("task", "n", "accuracy", "abstention", "acc. when answering", "over-confidence", "ECE")


def medication_task_rows(summary: dict[str, Any]) -> list[list[str]]:
    """The medication bench per task, in the order of ``MEDICATION_TASK_COLUMNS``."""
    return [[task, str(m["n"]), *(f"{m[k]:.3f}" if m[k] is not None else "-" for k in (
        "accuracy", "abstention_rate", "accuracy_when_answering", "over_confidence", "ece"))]
            for task, m in summary["per_task"].items()]


def plot_metrics(entries: Sequence[RunEntry], bench: str, path: Path) -> Path:
    """Grouped bars: the headline metrics of one bench, one bar per run."""
    runs = [e for e in entries if e.bench == bench]
    metrics = [m for m in dict.fromkeys(k for e in runs for k in headline(e.summary))
               if any(headline(e.summary).get(m) is not None for e in runs)]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(metrics) * max(1, len(runs)) + 2), 4.5))
    width = 0.8 / max(1, len(runs))
    x = np.arange(len(metrics))
    for n, e in enumerate(runs):
        h = headline(e.summary)
        ax.bar(x + n * width, [h.get(m) or 0.0 for m in metrics], width, label=e.label)
    ax.set_xticks(x + width * (len(runs) - 1) / 2, metrics, rotation=30, ha="right")
    ax.set_title(f"bench {bench}")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_confusion(summary: dict[str, Any], path: Path) -> Path:
    """The strategy confusion matrix (rows gold, columns predicted) with its counts."""
    names, matrix = summary["strategies"], np.asarray(summary["confusion"])
    fig, ax = plt.subplots(figsize=(1.0 * len(names) + 3, 0.9 * len(names) + 2.5))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=40, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                    color="white" if matrix[i, j] > matrix.max() / 2 else "black")
    ax.set_title(f"{summary.get('model', '')}: Q {summary['q']:.3f}, B {summary['bias']:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_distribution(summary: dict[str, Any], path: Path) -> Path:
    """Gold vs predicted strategy counts side by side."""
    names = summary["strategies"]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(1.0 * len(names) + 3, 4.0))
    ax.bar(x - 0.2, [summary["gold_distribution"][s] for s in names], 0.4, label="gold")
    ax.bar(x + 0.2, [summary["pred_distribution"][s] for s in names], 0.4, label="predicted")
    ax.set_xticks(x, names, rotation=40, ha="right")
    ax.set_title("strategy distribution")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def strategy_plots(summary: dict[str, Any], run_id: str, out_dir: Path) -> list[Path]:
    """A strategy run's confusion matrix and distribution, named after the run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return [plot_confusion(summary, out_dir / f"strategy_confusion_{run_id[:8]}.png"),
            plot_distribution(summary, out_dir / f"strategy_distribution_{run_id[:8]}.png")]


def write_plots(entries: Sequence[RunEntry], out_dir: Path) -> list[Path]:
    """One metrics chart per bench, plus each strategy run's confusion matrix and distribution."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [plot_metrics(entries, b, out_dir / f"{b}_metrics.png") for b in dict.fromkeys(e.bench for e in entries)]
    for e in entries:
        if e.bench == "strategy":
            paths += strategy_plots(e.summary, e.run_id, out_dir)
    return paths


def markdown_report(entries: Sequence[RunEntry], plots: Sequence[Path]) -> str:
    """A Markdown report: the comparison table, notes the metrics code raised, and the plots."""
    columns, rows = compare_rows(entries)
    lines = ["# carealign bench comparison", "", f"Runs: {', '.join(e.run_id for e in entries)}", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    for e in entries:
        notes = e.summary.get("notes") or []
        failed = e.summary.get("n_failed")
        if notes or failed:
            lines += ["", f"## {e.label}, {e.bench}", ""]
            lines += [f"- {failed} items have no result (failed calls; see `carealign runs show {e.run_id}`)"] \
                if failed else []
            lines += [f"- {n}" for n in notes]
    lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines) + "\n"
