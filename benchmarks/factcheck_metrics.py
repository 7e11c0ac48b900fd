"""Medical fact-checking metrics (MedFact, PROTOCOLS.md section 4).

Each text is either correct or holds exactly one error. A prediction is a verdict ("error",
"correct" or "unsure") and, when the text is flagged, the id of the sentence it blames.
- Veracity: P/R/F1 with "contains an error" as the positive class, plus accuracy.
- Over-criticism: the false-positive rate on correct texts, reported directly (the paper derives it
  from P and R; ``fpr_from_precision_recall`` reproduces that arithmetic).
- Localisation: TP = an erroneous text that is flagged and whose predicted location matches the
  gold error; precision = TP / flagged (all flagged texts), recall = TP / erroneous texts. A match
  is a sentence-id match unless a per-text ``location_match`` is supplied (an LLM judge's verdict).
- "unsure" has no single right reading, so its treatment is an explicit argument (default: not
  flagged) and the unsure rate is always reported.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from benchmarks.metrics import (
    PRF,
    BootstrapResult,
    bootstrap_draws,
    bootstrap_result,
    f1_from_count_arrays,
    prf_from_counts,
    resample_counts,
    safe_div,
    safe_div_array,
)

VERDICTS = ("error", "correct", "unsure")


class Unsure(StrEnum):
    """How an "unsure" verdict is scored."""

    NOT_FLAGGED = "not_flagged"  # the model did not claim an error
    FLAGGED = "flagged"  # cautious reading: doubt counts as a flag (no location)
    EXCLUDE = "exclude"  # dropped from every metric except the unsure rate


@dataclass(frozen=True)
class ScoredText:
    """Gold and prediction for one text. ``location_match``, when given, overrides the
    sentence-id comparison for that text (plug an LLM judge in here)."""

    has_error: bool
    gold_sentence: int | None
    verdict: str
    pred_sentence: int | None = None
    location_match: bool | None = None


@dataclass(frozen=True)
class FactCheckMetrics:
    n: int  # texts scored (after any exclusion)
    n_erroneous: int
    n_correct: int
    veracity: PRF
    accuracy: float
    fpr: float  # flagged correct texts / correct texts
    false_positives: int
    localisation: PRF  # tp; fp = flagged - tp; fn = erroneous - tp
    n_unsure: int  # counted before exclusion
    unsure_rate: float  # unsure verdicts / all texts given
    n_excluded: int
    # False when no erroneous text has a gold location (a veracity-only dataset) or there is none:
    # localisation is then not available, and reported so rather than as 0
    localisation_available: bool = True


def _verdict(item: ScoredText, n: int) -> str:
    verdict = item.verdict.strip().lower() if isinstance(item.verdict, str) else item.verdict
    if verdict not in VERDICTS:
        raise ValueError(f"text {n}: verdict must be one of {VERDICTS} (got {item.verdict!r})")
    return verdict


def _check(item: ScoredText, n: int) -> None:
    if not item.has_error and item.gold_sentence is not None:
        raise ValueError(f"text {n}: a correct text cannot have a gold error sentence ({item.gold_sentence})")


def _flagged(verdict: str, unsure: Unsure) -> bool:
    return verdict == "error" or (verdict == "unsure" and unsure is Unsure.FLAGGED)


def location_matches(item: ScoredText, n: int = 0) -> bool:
    """Whether a flagged erroneous text points at its error: the external verdict when given, else
    sentence-id equality. An erroneous text without a gold sentence id needs the external verdict."""
    if item.location_match is not None:
        return bool(item.location_match)
    if item.gold_sentence is None:
        raise ValueError(f"text {n}: erroneous text without a gold sentence id; supply location_match")
    return item.pred_sentence is not None and item.pred_sentence == item.gold_sentence


# the columns of ``_count_rows``: what one text adds to each count
_TP, _FP, _FN, _TN, _LOC_TP, _EXCLUDED = range(6)


def _count_rows(items: Sequence[ScoredText], unsure: Unsure) -> tuple[np.ndarray, int, bool]:
    """One row per text of what it adds to tp, fp, fn, tn, located tp and excluded (each 0 or 1),
    with the number of unsure verdicts and whether any erroneous text can be localised. Every
    metric, and every bootstrap resample, is a sum of these rows."""
    verdicts = [_verdict(item, n) for n, item in enumerate(items)]
    located = any(i.has_error and (i.gold_sentence is not None or i.location_match is not None) for i in items)
    rows = np.zeros((len(items), 6), dtype=np.int64)
    for n, (item, verdict) in enumerate(zip(items, verdicts, strict=True)):
        _check(item, n)
        if verdict == "unsure" and unsure is Unsure.EXCLUDE:
            rows[n, _EXCLUDED] = 1
            continue
        flagged = _flagged(verdict, unsure)
        if item.has_error:
            rows[n, _TP if flagged else _FN] = 1
            # An "unsure" counted as a flag names no location, so it can never localise.
            rows[n, _LOC_TP] = located and flagged and verdict == "error" and location_matches(item, n)
        else:
            rows[n, _FP if flagged else _TN] = 1
    return rows, verdicts.count("unsure"), located


def factcheck_metrics(items: Sequence[ScoredText], unsure: Unsure | str = Unsure.NOT_FLAGGED) -> FactCheckMetrics:
    """All single-run metrics for a set of texts."""
    rows, n_unsure, located = _count_rows(items, Unsure(unsure))
    tp, fp, fn, tn, loc_tp, excluded = (int(c) for c in rows.sum(axis=0))
    total = tp + fp + fn + tn
    return FactCheckMetrics(
        n=total,
        n_erroneous=tp + fn,
        n_correct=fp + tn,
        veracity=prf_from_counts(tp, fp, fn),
        accuracy=safe_div(tp + tn, total),
        fpr=safe_div(fp, fp + tn),
        false_positives=fp,
        localisation=prf_from_counts(loc_tp, tp + fp - loc_tp, tp + fn - loc_tp),
        n_unsure=n_unsure,
        unsure_rate=safe_div(n_unsure, len(items)),
        n_excluded=excluded,
        localisation_available=located,
    )


def breakdown(
    items: Sequence[ScoredText],
    fields: Sequence[Mapping[str, Any]],
    by: str,
    unsure: Unsure | str = Unsure.NOT_FLAGGED,
) -> dict[Hashable, FactCheckMetrics]:
    """The same metrics per value of field ``by`` (error type, difficulty, specialty, style...).
    ``fields[k]`` holds text k's field values; a text without the field (or with None) falls in the
    group None, e.g. correct texts under "error type"."""
    if len(items) != len(fields):
        raise ValueError(f"{len(items)} texts but {len(fields)} field records")
    groups: dict[Hashable, list[ScoredText]] = defaultdict(list)
    for item, values in zip(items, fields, strict=True):
        groups[values.get(by)].append(item)
    order = sorted(groups, key=lambda g: (g is None, str(g)))
    return {group: factcheck_metrics(groups[group], unsure) for group in order}


# -- Multi-round (debate) runs ---------------------------------------------------------------------


@dataclass(frozen=True)
class RoundStats:
    fpr: float  # 0.0 when n_correct is 0: print "n/a" then (the report does)
    recall: float  # 0.0 when n_erroneous is 0
    precision: float
    f1: float
    unsure_rate: float
    n_texts: int = 0
    n_correct: int = 0
    n_erroneous: int = 0


@dataclass(frozen=True)
class Flips:
    """Verdict changes from one round to the next. ``toward_gold`` / ``away_from_gold`` split the
    correct<->error flips by whether the new verdict is right; ``other`` counts changes to or from
    "unsure"."""

    correct_to_error: int
    error_to_correct: int
    toward_gold: int
    away_from_gold: int
    other: int


@dataclass(frozen=True)
class RoundsReport:
    per_round: list[RoundStats]
    flips: list[Flips]  # flips[r] is from round r to round r + 1


def _flips(gold: Sequence[bool], before: Sequence[str], after: Sequence[str]) -> Flips:
    c2e = e2c = toward = away = other = 0
    for has_error, old, new in zip(gold, before, after, strict=True):
        if old == new:
            continue
        if {old, new} != {"correct", "error"}:
            other += 1
            continue
        c2e, e2c = c2e + (new == "error"), e2c + (new == "correct")
        right = (new == "error") == bool(has_error)
        toward, away = toward + right, away + (not right)
    return Flips(c2e, e2c, toward, away, other)


def rounds_report(
    gold: Sequence[bool], rounds: Sequence[Sequence[str]], unsure: Unsure | str = Unsure.NOT_FLAGGED
) -> RoundsReport:
    """Per-round FPR/recall and the flips between consecutive rounds, for the same texts in every
    round (``rounds[r][k]`` = verdict on text k in round r; call once per agent for per-agent
    figures, or pass the majority vote per round)."""
    per_round, cleaned = [], []
    for r, verdicts in enumerate(rounds):
        if len(verdicts) != len(gold):
            raise ValueError(f"round {r} has {len(verdicts)} verdicts for {len(gold)} texts")
        # Localisation is not part of a round summary: location_match=True keeps it from asking for ids.
        items = [ScoredText(bool(g), None, v, location_match=True) for g, v in zip(gold, verdicts, strict=True)]
        cleaned.append([_verdict(item, k) for k, item in enumerate(items)])
        m = factcheck_metrics(items, unsure)
        per_round.append(RoundStats(m.fpr, m.veracity.recall, m.veracity.precision, m.veracity.f1, m.unsure_rate,
                                    m.n, m.n_correct, m.n_erroneous))
    flips = [_flips(gold, cleaned[r], cleaned[r + 1]) for r in range(len(cleaned) - 1)]
    return RoundsReport(per_round, flips)


# -- Uncertainty and the paper's arithmetic --------------------------------------------------------


def factcheck_bootstrap(
    items: Sequence[ScoredText],
    unsure: Unsure | str = Unsure.NOT_FLAGGED,
    n_resamples: int = 1000,
    seed: int | None = 0,
    confidence: float = 0.95,
) -> dict[str, BootstrapResult]:
    """Percentile bootstrap over texts for veracity F1, FPR and localisation F1 (one shared set of
    resamples, ``bootstrap``'s for the same seed). Every statistic is a function of counts, so each
    resample's counts come from one matrix product over the texts' count rows, not a pass over
    the texts per resample (3,000 texts: seconds became milliseconds, same figures)."""
    if not items:
        raise ValueError("no texts to resample")
    rows, _, _ = _count_rows(items, Unsure(unsure))  # validates every text before any resample
    draws = bootstrap_draws(len(items), n_resamples, seed, confidence)
    point = factcheck_metrics(items, unsure)
    tp, fp, fn, tn, loc_tp, _ = resample_counts(draws, rows).T
    values = {"veracity_f1": f1_from_count_arrays(tp, fp, fn), "fpr": safe_div_array(fp, fp + tn),
              "localisation_f1": f1_from_count_arrays(loc_tp, tp + fp - loc_tp, tp + fn - loc_tp)}
    points = {"veracity_f1": point.veracity.f1, "fpr": point.fpr, "localisation_f1": point.localisation.f1}
    return {name: bootstrap_result(points[name], values[name], confidence) for name in values}


def fpr_from_precision_recall(precision: float, recall: float, n_pos: int, n_neg: int) -> float:
    """False-positive rate implied by P and R on ``n_pos`` erroneous and ``n_neg`` correct texts, as
    the MedFact paper derives it: TP = R * n_pos, FP = TP * (1 - P) / P, FPR = FP / n_neg."""
    if not 0.0 < precision <= 1.0:
        raise ValueError(f"precision must lie in (0, 1] (got {precision})")
    if not 0.0 <= recall <= 1.0:
        raise ValueError(f"recall must lie in [0, 1] (got {recall})")
    if n_pos <= 0 or n_neg <= 0:
        raise ValueError("n_pos and n_neg must be positive")
    tp = recall * n_pos
    fp = tp * (1.0 - precision) / precision
    return float(fp / n_neg)

