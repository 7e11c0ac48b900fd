"""Fact-checking results from the store (read through ``store.factcheck``): one ``MethodResult``
per method, then tables, plots and Markdown. Nothing here calls a model: a report can be rebuilt at
any time from what runs stored.

A method's results are those of its job (``runs.job_key``): a job interrupted and resumed spans
several runs, and its calls and tokens are summed over all of them. Gold labels come from the item
payloads (the checkers never saw them).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.datasets.factcheck import parse_mapping
from benchmarks.datasets.mediqa_run import GoldRow, RunRow, gold_row, run_row
from benchmarks.factcheck_metrics import (
    FactCheckMetrics,
    RoundsReport,
    ScoredText,
    breakdown,
    factcheck_bootstrap,
    factcheck_metrics,
    rounds_report,
)
from benchmarks.mediqa_corr import AGGREGATE, BERTSCORE, BLEURT, ROUGE, OfficialMetrics, Scorer, official_metrics
from benchmarks.metrics import BootstrapResult
from store import Store, StoreError
from store.factcheck import AGENT_ROLES, JobAnswers, job_answers

if TYPE_CHECKING:
    from store.models import CheckAnswer

BREAKDOWNS = ("error_type", "difficulty", "specialty", "writing_style")


class NoAnswers(StoreError):
    """A fact-checking job with no final answer to score (every text failed, or none ran yet)."""


@dataclass
class MethodResult:
    method: str
    job_key: str
    model: str
    run_ids: list[str]
    n_texts: int
    metrics: FactCheckMetrics
    ci: dict[str, BootstrapResult]
    breakdowns: dict[str, dict[Any, FactCheckMetrics]]
    calls: int
    tokens: int
    failed_calls: int
    rounds: RoundsReport | None = None  # majority verdict of each round (debate)
    per_agent: dict[int, RoundsReport] = field(default_factory=dict)
    nominal_calls: int | None = None
    dataset: str = ""
    n_queued: int = 0  # texts in the job; those without a final answer (failed) are not scored
    official: OfficialMetrics | None = None  # MEDIQA-CORR 2024's figures over every queued text
    attempts: int = 0  # HTTP requests behind the calls: retries and repair rounds included

    @property
    def _per(self) -> int:
        """Compute is spent on every text of the job, answered or not."""
        return max(self.n_queued, self.n_texts)

    @property
    def calls_per_text(self) -> float:
        return self.calls / self._per if self._per else 0.0

    @property
    def attempts_per_text(self) -> float:
        return self.attempts / self._per if self._per else 0.0

    @property
    def failed_per_text(self) -> float:
        return self.failed_calls / self._per if self._per else 0.0

    @property
    def tokens_per_text(self) -> float:
        return self.tokens / self._per if self._per else 0.0


def _majority(verdicts: list[str], tie: str) -> str:
    counts = {v: verdicts.count(v) for v in set(verdicts)}
    top = max(counts.values())
    leaders = sorted(v for v, c in counts.items() if c == top)
    return leaders[0] if len(leaders) == 1 else (tie if tie in leaders else leaders[0])


def _id_base(config: dict[str, Any]) -> int:
    """1 when the job's input was read with ``sentence_id_base=1`` (run files keep the input's ids)."""
    mapping = config.get("mapping")
    return int(parse_mapping(mapping).get("sentence_id_base", 0)) if mapping else 0


def run_rows(job: JobAnswers) -> list[RunRow]:
    """The job's final answers as MEDIQA-CORR run-file rows, one per queued text in input order (a
    text without a final answer as ``0 -1 NA``, marked unanswered)."""
    finals = {r.item_id: r for r in job.answers if r.role == "final"}
    base, rows = _id_base(job.config), []
    for item_id, text_id in job.texts:
        final = finals.get(item_id)
        rows.append(run_row(text_id, None, None, None) if final is None
                    else run_row(text_id, final.verdict, final.sentence_id, final.correction, base))
    return rows


def gold_rows(job: JobAnswers) -> list[GoldRow]:
    base = _id_base(job.config)
    return [gold_row(text_id, job.payloads[item_id], base) for item_id, text_id in job.texts]


def method_run(store: Store, job_key: str) -> tuple[str, str, list[RunRow]]:
    """(method, checker model, run-file rows) of a job, for ``factcheck export-run``."""
    job = job_answers(store, job_key)
    model = str(job.config.get("checker_model") or next((r.model for r in job.answers if r.model), ""))
    return str(job.config.get("method", "?")), model, run_rows(job)


def method_result(store: Store, job_key: str, *, n_resamples: int = 1000, seed: int = 0,
                  scorers: dict[str, Scorer] | None = None, notes: list[str] | None = None) -> MethodResult:
    """A method's figures; ``scorers`` and ``notes`` (``benchmarks.mediqa_scorers``) add the
    model-based correction metrics to its official MEDIQA-CORR figures, or say why they are absent."""
    job = job_answers(store, job_key)
    config, rows, items = job.config, job.answers, job.payloads
    finals = {r.item_id: r for r in rows if r.role == "final"}
    judged = {r.item_id: r.verdict == "match" for r in rows if r.role == "location_judge"}
    order = sorted(finals)
    scored = [_scored(items[i], finals[i], judged.get(i)) for i in order]
    if not scored:
        raise NoAnswers(f"method {config.get('method', '?')} (job {job_key}) has no final answers: nothing to score")
    fields = [{k: items[i].get(k) for k in BREAKDOWNS} for i in order]
    result = MethodResult(
        method=config.get("method", "?"), job_key=job_key,
        model=str(config.get("checker_model") or finals[order[0]].model),
        run_ids=job.run_ids, n_texts=len(scored), metrics=factcheck_metrics(scored),
        ci=factcheck_bootstrap(scored, n_resamples=n_resamples, seed=seed),
        breakdowns={b: breakdown(scored, fields, b) for b in BREAKDOWNS if any(f[b] for f in fields)},
        calls=job.calls, tokens=job.tokens, failed_calls=job.failed_calls, dataset=str(config.get("dataset", "")),
        n_queued=job.queued, official=official_metrics(run_rows(job), gold_rows(job), scorers, notes or ()),
        attempts=job.attempts)
    _add_rounds(result, rows, items, order, config.get("factcheck", {}).get("vote_tie", "correct"))
    return result


def _scored(payload: dict[str, Any], final: CheckAnswer, judged: bool | None) -> ScoredText:
    has_error = payload["label"] == "error"
    # a judge's verdict needs a gold location to compare with (a veracity-only item has none)
    located = payload.get("error_sentence_id") is not None or payload.get("error_span") is not None
    return ScoredText(has_error, payload.get("error_sentence_id") if has_error else None, final.verdict,
                      final.sentence_id, judged if has_error and located and final.verdict == "error" else None)


def _add_rounds(result: MethodResult, rows: list[CheckAnswer], items: dict[int, dict[str, Any]],
                order: list[int], tie: str) -> None:
    """Per-round and per-agent figures for multi-round methods. The majority rows cover the texts
    every agent answered in every round; each agent's rows the texts that agent answered in every
    round: each ``RoundStats`` carries its ``n_texts`` (the tables print it against all scored texts)."""
    by = defaultdict(dict)  # (round) -> {(item, agent): verdict}
    for r in rows:
        if r.role in AGENT_ROLES:
            by[r.round][(r.item_id, r.agent)] = r.verdict
    if len(by) < 2:
        return
    rounds = sorted(by)
    agents = sorted({a for rnd in by.values() for (_, a) in rnd})
    complete = [i for i in order if all((i, a) in by[r] for r in rounds for a in agents)]
    if complete:
        gold = [items[i]["label"] == "error" for i in complete]
        result.rounds = rounds_report(gold, [[_majority([by[r][(i, a)] for a in agents], tie) for i in complete]
                                             for r in rounds])
    for a in agents:
        mine = [i for i in order if all((i, a) in by[r] for r in rounds)]
        if mine:
            result.per_agent[a] = rounds_report([items[i]["label"] == "error" for i in mine],
                                                [[by[r][(i, a)] for i in mine] for r in rounds])


def measured_matches(results: list[MethodResult], interactive: dict[str, bool], by: str = "calls",
                     tolerance: float = 0.1) -> list[tuple[str, str]]:
    """(interactive, independent-sampling) method pairs whose measured compute per text (``by``:
    calls or tokens) differs by at most ``tolerance`` of the larger; methods of different checker
    models are never paired. ``interactive[name]`` says which side a method is on; single-agent
    methods (``interactive`` None) are on neither."""
    def cost(r: MethodResult) -> float:
        return r.calls_per_text if by == "calls" else r.tokens_per_text

    def model(r: MethodResult) -> str:
        return r.method.split(" @ ", 1)[1] if " @ " in r.method else ""

    out = []
    for a in results:
        for b in results:
            if interactive.get(a.method) is True and interactive.get(b.method) is False and model(a) == model(b):
                top = max(cost(a), cost(b))
                if top > 0 and abs(cost(a) - cost(b)) <= tolerance * top:
                    out.append((a.method, b.method))
    return out


def write_plots(results: list[MethodResult], out_dir: Path) -> list[Path]:
    """FPR vs recall per method; FPR and recall by round for multi-round methods."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, ax = plt.subplots(figsize=(6, 5))
    markers = "osD^vP*Xh<>"
    for n, r in enumerate(results):  # a legend, not labels: methods often land on the same point
        ax.scatter(r.metrics.veracity.recall, r.metrics.fpr, s=60, marker=markers[n % len(markers)], alpha=0.8,
                   label=r.method)
    ax.legend(fontsize=8, loc="best")
    ax.set(xlabel="recall (erroneous texts flagged)", ylabel="false-positive rate (correct texts flagged)",
           xlim=(-0.05, 1.05), ylim=(-0.05, 1.05), title="Over-criticism vs recall")
    ax.grid(alpha=0.3)
    paths.append(out_dir / "fpr_vs_recall.png")
    fig.savefig(paths[-1], dpi=120, bbox_inches="tight")
    plt.close(fig)
    multi = [r for r in results if r.rounds]
    if multi:
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in multi:
            xs = list(range(len(r.rounds.per_round)))
            ax.plot(xs, [x.fpr for x in r.rounds.per_round], marker="o", label=f"{r.method} FPR")
            ax.plot(xs, [x.recall for x in r.rounds.per_round], marker="s", ls="--", label=f"{r.method} recall")
        ax.set(xlabel="round", ylabel="rate", ylim=(-0.05, 1.05), title="Debate: FPR and recall by round")
        ax.set_xticks(xs)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        paths.append(out_dir / "fpr_by_round.png")
        fig.savefig(paths[-1], dpi=120, bbox_inches="tight")
        plt.close(fig)
    return paths


def _pct(x: float) -> str:
    return f"{x:.3f}"


def _rate(x: float, denominator: int) -> str:
    """A rate, or "n/a" when it has no denominator (an FPR over no correct text is not 0)."""
    return f"{x:.3f}" if denominator else "n/a"


def _loc(m: FactCheckMetrics, x: float) -> str:
    return f"{x:.3f}" if m.localisation_available else "n/a"


def _ci(r: MethodResult, key: str) -> str:
    c = r.ci[key]
    return f"[{c.lo:.3f}, {c.hi:.3f}]"


def _coverage(r: MethodResult) -> str:
    """Scored texts, and the texts of the job left without an answer (every call failed)."""
    return str(r.n_texts) if r.n_queued <= r.n_texts else f"{r.n_texts} ({r.n_queued - r.n_texts} no answer)"


COMPUTE_HEAD = ["calls/text", "attempts/text", "failed/text", "tokens/text"]


def compute_cells(r: MethodResult) -> list[str]:
    """What a method spent per text of its job, measured: calls (failed ones included), HTTP
    attempts (retries and repair rounds included), failed calls, tokens."""
    return [f"{r.calls_per_text:.2f}", f"{r.attempts_per_text:.2f}", f"{r.failed_per_text:.2f}",
            f"{r.tokens_per_text:.0f}"]


def compact_rows(results: list[MethodResult]) -> tuple[list[str], list[list[str]]]:
    """The terminal table: the headline figures and the measured compute (CIs are in the Markdown)."""
    head = ["method", "texts", "P", "R", "F1", "FPR", "loc F1", *COMPUTE_HEAD]
    return head, [[r.method, _coverage(r), _pct(r.metrics.veracity.precision),
                   _rate(r.metrics.veracity.recall, r.metrics.n_erroneous), _pct(r.metrics.veracity.f1),
                   _rate(r.metrics.fpr, r.metrics.n_correct), _loc(r.metrics, r.metrics.localisation.f1),
                   *compute_cells(r)] for r in results]


def summary_rows(results: list[MethodResult]) -> tuple[list[str], list[list[str]]]:
    """The comparison table: one row per method (shared by the terminal table and the Markdown)."""
    head = ["method", "texts", "P", "R", "F1 (95% CI)", "acc", "FPR (95% CI)", "loc P", "loc R", "loc F1",
            "unsure", *COMPUTE_HEAD]
    rows = []
    for r in results:
        m = r.metrics
        fpr = f"{m.fpr:.3f} {_ci(r, 'fpr')}" if m.n_correct else "n/a"
        rows.append([r.method, _coverage(r), _pct(m.veracity.precision), _rate(m.veracity.recall, m.n_erroneous),
                     f"{m.veracity.f1:.3f} {_ci(r, 'veracity_f1')}", _pct(m.accuracy), fpr,
                     _loc(m, m.localisation.precision), _loc(m, m.localisation.recall), _loc(m, m.localisation.f1),
                     _pct(m.unsure_rate), *compute_cells(r)])
    return head, rows


def official_of(results: list[MethodResult]) -> list[tuple[str, OfficialMetrics]]:
    """(method, official figures) of the results that have them."""
    return [(r.method, r.official) for r in results if r.official is not None]


def official_rows(named: list[tuple[str, OfficialMetrics]], pair_means: bool = True
                  ) -> tuple[list[str], list[list[str]]]:
    """MEDIQA-CORR 2024's figures per method (or run file): accuracies and composite correction
    scores (BERTScore, BLEURT and Aggregate columns only when computed); ``pair_means`` adds ROUGE's
    mean over the sentence pairs."""
    extras = [k for k in (BERTSCORE, BLEURT, AGGREGATE) if any(k in o.corrections for _, o in named)]
    head = ["method", "texts", "unanswered", "flag acc", "sentence acc",
            *(f"{k} comp" for k in (*ROUGE, *extras)), "pairs"]
    head += [f"{k} pairs" for k in ROUGE] if pair_means else []
    rows = []
    for name, o in named:
        row = [name, str(o.n_texts), "n/a" if o.n_unanswered is None else str(o.n_unanswered), _pct(o.flag_accuracy),
               "n/a" if o.sentence_accuracy is None else _pct(o.sentence_accuracy)]
        row += [_pct(o.corrections[k].composite) if k in o.corrections else "n/a" for k in (*ROUGE, *extras)]
        row.append(str(o.n_pairs))
        if pair_means:
            row += ["n/a" if o.corrections[k].pair_mean is None else _pct(o.corrections[k].pair_mean) for k in ROUGE]
        rows.append(row)
    return head, rows


def official_notes(named: list[tuple[str, OfficialMetrics]]) -> list[str]:
    """What the official table leaves out and why (each note once)."""
    return list(dict.fromkeys(note for _, o in named for note in o.notes))


def round_rows(results: list[MethodResult]) -> tuple[list[str], list[list[str]]]:
    """Per round, for the majority vote and each agent, over the texts it covers ("texts": N of the
    method's scored texts; the majority covers those every agent answered in every round); a rate
    without a denominator (FPR on texts none of which is correct) is "n/a"."""
    head = ["method", "who", "round", "texts", "FPR", "recall", "F1", "flips correct->error",
            "flips error->correct"]
    rows = []
    for r in results:
        reports = ([("majority", r.rounds)] if r.rounds else []) + [(f"agent {a}", rep)
                                                                   for a, rep in sorted(r.per_agent.items())]
        for who, rep in reports:
            for k, st in enumerate(rep.per_round):
                flip = rep.flips[k - 1] if k > 0 else None
                rows.append([r.method, who, str(k), f"{st.n_texts} of {r.n_texts}", _rate(st.fpr, st.n_correct),
                             _rate(st.recall, st.n_erroneous), _pct(st.f1),
                             str(flip.correct_to_error) if flip else "", str(flip.error_to_correct) if flip else ""])
    return head, rows


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_report(results: list[MethodResult], matched: list[tuple[str, str]], plots: list[Path],
                    dataset: str = "") -> str:
    """A self-contained Markdown report: comparison, compute-matched pairs, rounds, breakdowns."""
    parts = [f"# Fact-checking comparison{f': {dataset}' if dataset else ''}", "",
             "Positive class: the text contains an error. FPR = correct texts flagged as wrong (over-criticism). "
             "Localisation: a flagged erroneous text whose predicted location matches the gold error "
             "(precision over all flagged texts, recall over all erroneous texts). CIs: percentile bootstrap "
             "over texts. Texts left without an answer (every call failed after retries and the repair round; "
             "the reasons are in the store) are not scored: their count is shown next to the scored texts.", "",
             _md_table(*summary_rows(results)), ""]
    parts += [f"- {r.method}: localisation not available (the data gives no gold error locations); loc columns n/a"
              for r in results if not r.metrics.localisation_available]
    parts += ["*calls/text*: every call the method's job made (failed ones included) and the cached calls behind its "
              "answers, per text of the job; *attempts/text*: the HTTP requests behind them (retries and repair "
              "rounds included); *failed/text*: calls that failed after retries and repairs.", ""]
    parts += ["## Official metrics (MEDIQA-CORR 2024)", "",
              "As the shared task's evaluation scripts compute them from a run file (`carealign factcheck "
              "export-run` writes it): over every text of the job, a text without an answer written as "
              "`0 -1 NA` (column *unanswered*). *flag acc*: Error Flags Accuracy; *sentence acc*: Error Sentence "
              "Detection Accuracy (a correct text matches when the prediction is -1). *comp*: the composite "
              "correction score, per text 1 when the gold and the predicted correction are both NA, 0 when only "
              "one is, else the metric (ROUGE F as the task's `rouge` package computes it), averaged over all "
              "texts; *pairs*: texts where both are sentences, and the metric's mean over them.", "",
              _md_table(*official_rows(official_of(results))), ""]
    parts += [f"- {note}" for note in official_notes(official_of(results))] + [""]
    by_name = {r.method: r for r in results}
    if matched:
        def vs(a: MethodResult, b: MethodResult, cell) -> str:
            return f"{cell(a)} vs {cell(b)}"

        parts += ["## Compute-matched pairs", "",
                  "Matched on the compute each method measurably spent per text (every call its runs made, "
                  "failed ones included, and the cached calls behind its answers), not on its nominal calls.", "",
                  _md_table(["interactive", "independent", "calls/text", "tokens/text", "FPR", "recall", "F1"],
                            [[a, b, vs(by_name[a], by_name[b], lambda r: f"{r.calls_per_text:.2f}"),
                              vs(by_name[a], by_name[b], lambda r: f"{r.tokens_per_text:.0f}"),
                              vs(by_name[a], by_name[b], lambda r: _rate(r.metrics.fpr, r.metrics.n_correct)),
                              vs(by_name[a], by_name[b], lambda r: _rate(r.metrics.veracity.recall,
                                                                         r.metrics.n_erroneous)),
                              vs(by_name[a], by_name[b], lambda r: f"{r.metrics.veracity.f1:.3f}")]
                             for a, b in matched]), ""]
    head, rows = round_rows(results)
    if rows:
        parts += ["## By round (multi-round methods)", "",
                  "*texts*: the texts a row covers, of the method's scored texts (the majority: those every agent "
                  "answered in every round; an agent: those it answered in every round). n/a: no text the rate "
                  "divides by (FPR without a correct text, recall without an erroneous one).", "",
                  _md_table(head, rows), ""]
    for r in results:
        for name, groups in r.breakdowns.items():
            parts += [f"## {r.method}: by {name.replace('_', ' ')}", "", _md_table(
                [name, "texts", "F1", "FPR", "loc F1"],
                [[str(g), str(m.n), _pct(m.veracity.f1), _rate(m.fpr, m.n_correct), _loc(m, m.localisation.f1)]
                 for g, m in groups.items()]), ""]
    parts += [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(parts) + "\n"
