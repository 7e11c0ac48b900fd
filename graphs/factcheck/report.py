"""``carealign factcheck report`` and ``export-run``: the methods of a batch compared, compute-matched
pairs side by side, and each method's answers as a MEDIQA-CORR 2024 run file.

The figures of one method come from ``benchmarks.factcheck_report`` (store only, no model call
except the optional BERTScore / BLEURT models of the official metrics); what needs the methods'
definitions is here: which methods are interactive and which sample independently
(``methods.py``), paired as compute-matched when their measured compute per text agrees
(``benchmarks.factcheck_report.measured_matches``), and which jobs a method name or run id names.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.datasets.mediqa_run import RunRow, format_line, write_run_file
from benchmarks.factcheck_report import (
    MethodResult,
    NoAnswers,
    markdown_report,
    measured_matches,
    method_result,
    method_run,
    write_plots,
)
from benchmarks.mediqa_corr import Scorer
from benchmarks.mediqa_scorers import model_scorers
from graphs.factcheck.configuration import FactcheckConfig
from graphs.factcheck.methods import MethodSpec, parse_method
from store import Store, StoreError
from store.factcheck import batch_methods, job_keys_of

REPORT_FILE = "factcheck_report.md"


@dataclass
class Comparison:
    results: list[MethodResult]  # one per method (named 'METHOD @ MODEL' when several models ran)
    matched: list[tuple[str, str]]  # (interactive, independent) method names with matching measured compute
    specs: dict[str, MethodSpec]  # method name -> its spec

    def calls(self, method: str) -> int:
        """Nominal LLM calls per text of a method."""
        return self.specs[method].calls

    def result(self, method: str) -> MethodResult:
        return next(r for r in self.results if r.method == method)


def official_scorers(config: FactcheckConfig) -> tuple[dict[str, Scorer], list[str]]:
    """BERTScore and BLEURT where their local model files are configured, and notes for the rest."""
    return model_scorers(config.bertscore_model, config.bertscore_layers, config.bleurt_checkpoint)


def compare(store: Store, job_keys: list[str], n_resamples: int,
            on_missing: Callable[[NoAnswers], None] | None = None, config: FactcheckConfig | None = None) -> Comparison:
    """Score every job; a job without a final answer is passed to ``on_missing`` and left out.
    Raises ``NoAnswers`` when none has one. ``config`` says where BERTScore and BLEURT models are."""
    scorers, notes = official_scorers(config or FactcheckConfig())
    results = []
    for key in job_keys:
        try:
            results.append(method_result(store, key, n_resamples=n_resamples, scorers=scorers, notes=notes))
        except NoAnswers as exc:  # every text failed for this method: say so, report the others
            if on_missing is not None:
                on_missing(exc)
    if not results:
        raise NoAnswers("no method produced a final answer: nothing to report (see `carealign runs show`)")
    if len({r.model for r in results}) > 1:
        for r in results:
            r.method = f"{r.method} @ {r.model}"
    specs = {}
    for r in results:
        specs[r.method] = parse_method(r.method.split(" @ ")[0])
        r.nominal_calls = specs[r.method].calls
    # matched on what each method measurably spent, not on its nominal calls (retries, repairs and
    # failed calls make debate cost more than agents x rounds)
    config = config or FactcheckConfig()
    sides = {name: (spec.interactive if spec.interactive or spec.agents > 1 else None) for name, spec in specs.items()}
    matched = measured_matches(results, {k: v for k, v in sides.items() if v is not None},
                               config.compute_match_by, config.compute_match_tolerance)
    return Comparison(results, matched, specs)


def write_report(comparison: Comparison, out_dir: Path, dataset: str = "") -> tuple[Path, list[Path]]:
    """The plots and the Markdown report in ``out_dir``: (report, plots)."""
    results = comparison.results
    plots = write_plots(results, out_dir)
    report = out_dir / REPORT_FILE
    report.write_text(markdown_report(results, comparison.matched, plots, dataset or results[0].dataset),
                      encoding="utf-8")
    return report, plots


# -- run files -------------------------------------------------------------------------------------
def jobs_named(store: Store, refs: list[str]) -> list[str]:
    """The jobs that each ref names: a method of the newest batch (every checker model's job of that
    method), else a fact-checking run id prefix (any batch). No refs: every job of the newest batch."""
    batch = batch_methods(store)
    if not refs:
        return [key for key, _, _ in batch]
    keys: list[str] = []
    for ref in refs:
        named = [key for key, method, _ in batch if method == ref.strip().lower()]
        if not named:
            try:
                named = job_keys_of(store, [ref])
            except StoreError:
                methods = ", ".join(dict.fromkeys(m for _, m, _ in batch))
                raise StoreError(f"{ref!r} is neither a method of the newest batch ({methods}) nor one fact-checking "
                                 "run id (or id prefix)") from None
        keys += named
    return list(dict.fromkeys(keys))


@dataclass
class ExportedRun:
    """One method's run file, as written."""

    method: str
    model: str
    path: Path
    rows: list[RunRow]


def _file_name(method: str, model: str | None) -> str:
    name = f"{method}__{model}" if model else method
    return re.sub(r"[^A-Za-z0-9@+.=-]", "_", name) + ".txt"


def export_runs(store: Store, job_keys: list[str], out: Path) -> list[ExportedRun]:
    """Each job's run file. One job: ``out`` is the file (or, when ``out`` is a folder, the file
    ``<method>.txt`` in it). Several: ``out`` is a folder, one ``<method>.txt`` per job
    (``<method>__<model>.txt`` when several checker models ran). Every file is built before any is
    written, so a text id a run file cannot hold leaves none written."""
    runs = [method_run(store, key) for key in job_keys]
    several_models = len({model for _, model, _ in runs}) > 1
    if len(runs) > 1 and out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file: with {len(runs)} methods --out must be a folder (one file per method)")
    exported = []
    for method, model, rows in runs:
        path = out / _file_name(method, model if several_models else None) if len(runs) > 1 or out.is_dir() else out
        exported.append(ExportedRun(method, model, path, rows))
    if len({e.path for e in exported}) < len(exported):
        raise ValueError(f"two jobs would write the same file in {out}: export them one at a time")
    for e in exported:  # every line checked before any file is written
        for row in e.rows:
            format_line(row)
    for e in exported:
        write_run_file(e.path, e.rows)
    return exported
