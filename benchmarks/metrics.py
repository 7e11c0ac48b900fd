"""Metric primitives shared by the benchmark harnesses (pure Python + numpy).

Conventions, kept identical everywhere so that numbers from different harnesses compare:
- a ratio whose denominator is 0 (precision with no positive prediction, recall with no positive
  gold, F1 with precision = recall = 0) is 0.0, as sklearn does with ``zero_division=0``;
- multi-class F1 follows sklearn's ``f1_score``: ``average='macro'`` is the unweighted mean of the
  per-label F1 over the labels present in gold or prediction (``labels=None``), ``'weighted'``
  weights each label's F1 by its gold support;
- the bootstrap resamples example *indices*, so one statistic can read several aligned arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np


def safe_div(num: float, den: float) -> float:
    """``num / den``, 0.0 when ``den`` is 0 (the zero_division=0 convention)."""
    return float(num) / float(den) if den else 0.0


@dataclass(frozen=True)
class PRF:
    """Precision, recall and F1 of one positive class, with the counts they come from."""

    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int

    @property
    def support(self) -> int:
        """Number of gold positives."""
        return self.tp + self.fn

    @property
    def predicted(self) -> int:
        """Number of positive predictions."""
        return self.tp + self.fp


def prf_from_counts(tp: int, fp: int, fn: int) -> PRF:
    """P/R/F1 from counts. 0/0 is 0.0: no positive prediction gives precision 0.0, no positive gold
    gives recall 0.0, and precision = recall = 0 gives F1 0.0."""
    if min(tp, fp, fn) < 0:
        raise ValueError(f"counts must be non-negative (tp={tp}, fp={fp}, fn={fn})")
    precision = safe_div(tp, tp + fp)
    recall = safe_div(tp, tp + fn)
    f1 = safe_div(2 * precision * recall, precision + recall)
    return PRF(precision, recall, f1, int(tp), int(fp), int(fn))


def _check_aligned(gold: Sequence, pred: Sequence) -> None:
    if len(gold) != len(pred):
        raise ValueError(f"gold and pred differ in length ({len(gold)} vs {len(pred)})")


def prf_from_labels(gold: Sequence[Hashable], pred: Sequence[Hashable], positive: Hashable = True) -> PRF:
    """P/R/F1 of the class ``positive`` (default ``True`` for boolean labels); 0/0 is 0.0 as in
    ``prf_from_counts``."""
    _check_aligned(gold, pred)
    tp = sum(1 for g, p in zip(gold, pred, strict=True) if g == positive and p == positive)
    fp = sum(1 for g, p in zip(gold, pred, strict=True) if g != positive and p == positive)
    fn = sum(1 for g, p in zip(gold, pred, strict=True) if g == positive and p != positive)
    return prf_from_counts(tp, fp, fn)


def accuracy(gold: Sequence[Hashable], pred: Sequence[Hashable]) -> float:
    """Share of positions where pred equals gold. An empty input has no accuracy: ValueError."""
    _check_aligned(gold, pred)
    if not gold:
        raise ValueError("accuracy of an empty set is undefined")
    return sum(1 for g, p in zip(gold, pred, strict=True) if g == p) / len(gold)


def present_labels(gold: Sequence[Hashable], pred: Sequence[Hashable]) -> list[Hashable]:
    """Labels seen in gold or pred, sorted when they are comparable (as ``np.unique`` in sklearn),
    else in order of first appearance."""
    seen = list(dict.fromkeys([*gold, *pred]))
    try:
        return sorted(seen)
    except TypeError:
        return seen


def confusion_matrix(gold: Sequence[Hashable], pred: Sequence[Hashable], labels: Sequence[Hashable]) -> np.ndarray:
    """Counts with rows = gold label, columns = predicted label, in the order of ``labels``. A label
    outside ``labels`` is an error rather than silently dropped, so totals always add up."""
    _check_aligned(gold, pred)
    index = {label: i for i, label in enumerate(labels)}
    if len(index) != len(labels):
        raise ValueError("labels must be unique")
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for g, p in zip(gold, pred, strict=True):
        for label in (g, p):
            if label not in index:
                raise ValueError(f"label {label!r} is not in the label order {list(labels)}")
        matrix[index[g], index[p]] += 1
    return matrix


def per_class_prf(
    gold: Sequence[Hashable], pred: Sequence[Hashable], labels: Sequence[Hashable] | None = None
) -> dict[Hashable, PRF]:
    """One-vs-rest P/R/F1 for each label (default: the labels present in gold or pred)."""
    _check_aligned(gold, pred)
    labels = present_labels(gold, pred) if labels is None else list(labels)
    return {label: prf_from_labels(gold, pred, positive=label) for label in labels}


def macro_f1(gold: Sequence[Hashable], pred: Sequence[Hashable], labels: Sequence[Hashable] | None = None) -> float:
    """Unweighted mean of per-label F1 (sklearn ``average='macro'``, ``zero_division=0``)."""
    per = per_class_prf(gold, pred, labels)
    return float(np.mean([r.f1 for r in per.values()])) if per else 0.0


def weighted_f1(gold: Sequence[Hashable], pred: Sequence[Hashable], labels: Sequence[Hashable] | None = None) -> float:
    """Per-label F1 weighted by gold support (sklearn ``average='weighted'``, ``zero_division=0``);
    0.0 when no label has gold support."""
    per = per_class_prf(gold, pred, labels)
    total = sum(r.support for r in per.values())
    return safe_div(sum(r.f1 * r.support for r in per.values()), total)


@dataclass(frozen=True)
class BootstrapResult:
    """``point`` is the statistic on the original sample; mean/std (ddof 0) and the percentile
    interval [lo, hi] are over the resamples."""

    point: float
    mean: float
    std: float
    lo: float
    hi: float
    confidence: float
    n_resamples: int


def bootstrap(
    n: int,
    statistic: Callable[[np.ndarray], float],
    n_resamples: int = 1000,
    seed: int | None = 0,
    confidence: float = 0.95,
) -> BootstrapResult:
    """Nonparametric bootstrap over ``n`` examples: ``statistic`` receives an index array (with
    repeats) and returns a number. The same seed gives the same resamples, so reports are
    reproducible; ``seed=None`` draws fresh entropy."""
    draws = bootstrap_draws(n, n_resamples, seed, confidence)
    values = np.array([float(statistic(idx)) for idx in draws], dtype=float)
    return bootstrap_result(float(statistic(np.arange(n))), values, confidence)


def bootstrap_draws(n: int, n_resamples: int = 1000, seed: int | None = 0, confidence: float = 0.95) -> np.ndarray:
    """The resamples of ``bootstrap``: an ``(n_resamples, n)`` array of example indexes, the same
    for the same seed (so a statistic computed from them in one pass gives ``bootstrap``'s figures)."""
    if n <= 0:
        raise ValueError("bootstrap needs at least one example")
    if n_resamples <= 0:
        raise ValueError("n_resamples must be positive")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1 (got {confidence})")
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def resample_counts(draws: np.ndarray, per_example: np.ndarray, max_cells: int = 4_000_000) -> np.ndarray:
    """Column sums of ``per_example`` (one row per example) over each resample of ``draws``, as an
    ``(n_resamples, columns)`` array: count statistics of every resample in one matrix product
    instead of one Python pass per resample. Resamples go ``max_cells // n`` at a time, so the
    multiplicity matrix stays small (about 32 MB) however many texts there are."""
    n_resamples, n = draws.shape
    chunk = max(1, max_cells // n)
    out = []
    for start in range(0, n_resamples, chunk):
        part = draws[start:start + chunk]
        offsets = np.arange(len(part))[:, None] * n
        multiplicity = np.bincount((part + offsets).ravel(), minlength=len(part) * n).reshape(len(part), n)
        out.append(multiplicity @ per_example)
    return np.concatenate(out)


def bootstrap_result(point: float, values: np.ndarray, confidence: float) -> BootstrapResult:
    """The percentile interval, mean and std (ddof 0) of a statistic's values over the resamples."""
    tail = (1.0 - confidence) / 2.0 * 100.0
    lo, hi = np.percentile(values, [tail, 100.0 - tail])
    return BootstrapResult(point=point, mean=float(values.mean()), std=float(values.std()),
                           lo=float(lo), hi=float(hi), confidence=confidence, n_resamples=int(values.size))


def safe_div_array(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``safe_div`` element by element: ``num / den``, 0.0 where ``den`` is 0."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)


def f1_from_count_arrays(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """``prf_from_counts(...).f1`` element by element (the same arithmetic, so the same floats)."""
    precision, recall = safe_div_array(tp, tp + fp), safe_div_array(tp, tp + fn)
    return safe_div_array(2 * precision * recall, precision + recall)


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool], n_bins: int = 10) -> float:
    """ECE with ``n_bins`` equal-width bins on [0, 1]: ``sum_b |B_b|/N * |acc(B_b) - conf(B_b)|``.
    Bin b holds confidences in ``(b/n_bins, (b+1)/n_bins]``; a confidence of exactly 0 goes to the
    first bin. Empty bins contribute nothing."""
    _check_aligned(confidences, correct)
    if not confidences:
        raise ValueError("ECE of an empty set is undefined")
    if n_bins <= 0:
        raise ValueError("n_bins must be positive")
    conf = np.asarray(confidences, dtype=float)
    if np.any(conf < 0.0) or np.any(conf > 1.0) or np.any(np.isnan(conf)):
        raise ValueError("confidences must lie in [0, 1]")
    hit = np.asarray(correct, dtype=float)
    # Edges as b / n_bins (not conf * n_bins) so that 0.7 falls in (0.6, 0.7] despite float rounding.
    edges = np.arange(n_bins + 1) / n_bins
    bins = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            ece += mask.sum() / conf.size * abs(hit[mask].mean() - conf[mask].mean())
    return float(ece)


def binary_agreement(pairs: Sequence[tuple[bool, bool]]) -> tuple[float, float]:
    """Observed agreement of two raters' yes/no verdicts and Cohen's kappa (1.0 when chance
    agreement is already perfect)."""
    n = len(pairs)
    if n == 0:
        raise ValueError("no verdicts to compare")
    observed = sum(a == b for a, b in pairs) / n
    p_a, p_b = sum(a for a, _ in pairs) / n, sum(b for _, b in pairs) / n
    expected = p_a * p_b + (1 - p_a) * (1 - p_b)
    return observed, (observed - expected) / (1 - expected) if expected < 1 else 1.0
