"""``carealign factcheck report``: the methods of a batch compared, compute-matched pairs side by side.

The figures of one method come from ``benchmarks.factcheck_report`` (store only, no model call);
what needs the methods' definitions is here: the nominal calls of each method and which
interactive method is compute-matched with which independent-sampling one (``methods.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.factcheck_report import MethodResult, NoAnswers, markdown_report, method_result, write_plots
from graphs.factcheck.methods import MethodSpec, compute_matched, parse_method
from store import Store

REPORT_FILE = "factcheck_report.md"


@dataclass
class Comparison:
    results: list[MethodResult]  # one per method (named 'METHOD @ MODEL' when several models ran)
    matched: list[tuple[str, str]]  # (interactive, independent) method names with equal nominal calls
    specs: dict[str, MethodSpec]  # method name -> its spec

    def calls(self, method: str) -> int:
        """Nominal LLM calls per text of a method."""
        return self.specs[method].calls


def compare(store: Store, job_keys: list[str], n_resamples: int,
            on_missing: Callable[[NoAnswers], None] | None = None) -> Comparison:
    """Score every job; a job without a final answer is passed to ``on_missing`` and left out.
    Raises ``NoAnswers`` when none has one."""
    results = []
    for key in job_keys:
        try:
            results.append(method_result(store, key, n_resamples=n_resamples))
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
    matched = [(a, b) for a in specs for b in specs
               if (specs[a], specs[b]) in compute_matched([specs[a], specs[b]])
               and a.split(" @ ")[1:] == b.split(" @ ")[1:]]
    return Comparison(results, matched, specs)


def write_report(comparison: Comparison, out_dir: Path, dataset: str = "") -> tuple[Path, list[Path]]:
    """The plots and the Markdown report in ``out_dir``: (report, plots)."""
    results = comparison.results
    plots = write_plots(results, out_dir)
    report = out_dir / REPORT_FILE
    report.write_text(markdown_report(results, comparison.matched, plots, dataset or results[0].dataset),
                      encoding="utf-8")
    return report, plots
