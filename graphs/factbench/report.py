"""What ``carealign factbench`` prints, as table rows: a build round's injections and panel
verdicts, the rounds' acceptance and AI-expert agreement, and the mining difficulties."""

from __future__ import annotations

from collections import Counter
from typing import Any, NamedTuple

from graphs.factbench.review import round_report
from store import Store
from store.factbench import DECISION_KIND, FILTER_KIND, run_attempts, run_panel_judgments


class TableRows(NamedTuple):
    title: str
    head: list[str]
    rows: list[list[str]]


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def build_summary(store: Store, run_id: str, round_: int) -> list[TableRows]:
    """Injection and span check per error type, the panel's pass rate per criterion, and the first
    rejections at the span check with their reasons."""
    attempts = run_attempts(store, run_id)
    judged = run_panel_judgments(store, run_id)
    by_type: dict[str, Counter] = {}
    for a in attempts:
        by_type.setdefault(a.metrics["error_type"], Counter())[a.metrics["status"]] += 1
    panel: Counter = Counter()
    for j in {j.candidate_id: j for j in judged if j.criterion_kind == DECISION_KIND}.values():
        if j.details.get("round") == round_:
            panel["accepted" if j.met else "rejected"] += 1
    crit: dict[str, list[bool]] = {}
    for j in judged:
        if j.criterion_kind == FILTER_KIND:
            crit.setdefault(j.criterion, []).append(bool(j.met))
    total = panel["accepted"] + panel["rejected"]
    rows = [[c, str(len(v)), pct(sum(v) / len(v))] for c, v in sorted(crit.items())]
    rows.append(["ACCEPTED (all criteria)", str(total), pct(panel["accepted"] / total if total else None)])
    tables = [TableRows(f"factbench build (round {round_}): injection and span check",
                        ["error type", "verified", "rejected at span check"],
                        [[t, str(c["verified"]), str(c["rejected"])] for t, c in sorted(by_type.items())]),
              TableRows("filter panel: verdicts and pass rate", ["criterion", "verdicts", "pass"], rows)]
    rejected = [a for a in attempts if a.metrics["status"] == "rejected"]
    if rejected:
        tables.append(TableRows(f"rejected at span check (first {min(len(rejected), 10)} of {len(rejected)})",
                                ["source item", "error type", "reason"],
                                [[str(a.item_id), a.metrics["error_type"], a.metrics["reason"]]
                                 for a in rejected[:10]]))
    return tables


def rounds_summary(store: Store) -> TableRows:
    """Per filtering round: variants decided and accepted, reviews, and agreement per criterion."""
    rows = round_report(store)
    criteria = sorted({c for r in rows for c in r["agreement"]})
    return TableRows("factbench rounds: panel acceptance and AI-expert agreement",
                     ["round", "decided", "accepted", "acceptance", "reviewed", "disagreements",
                      *[f"agree {c}" for c in criteria]],
                     [[str(r["round"]), str(r["decided"]), str(r["accepted"]), pct(r["acceptance_rate"]),
                       str(r["reviewed"]), str(r["disagreements"]), *[pct(r["agreement"].get(c)) for c in criteria]]
                      for r in rows])


def mining_histogram(results: dict[str, dict[str, Any]]) -> TableRows:
    """Mined items per label and difficulty (1-5), and how many were dropped."""
    hist = Counter((("error" if k.startswith("cand-") else "correct"), m["difficulty"]) for k, m in results.items())
    return TableRows("factbench mine: items per difficulty (1 = every checker right)",
                     ["label", *[str(d) for d in range(1, 6)], "dropped"],
                     [[lab, *[str(hist[(lab, d)]) for d in range(1, 6)],
                       str(sum(m["dropped"] for k, m in results.items()
                               if k.startswith("cand-") == (lab == "error")))] for lab in ("error", "correct")])
