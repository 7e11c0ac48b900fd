"""Criterion-level data for the reward models: the stored verdicts behind a pair, one row per
(pair, criterion), the criterion injected into the input, thresholds, and RM-derived S1/S2/S3.

Orientation: every per-criterion value here is "goodness" in [0, 1]: met for a proficiency or bonus
criterion, *not violated* for a safety veto. So a reward model's score is higher-is-better on every
criterion, and a veto is flagged when its score falls below the veto threshold.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agents.rubric import CriterionKind, Rubric, RubricScore
from store import Store
from store import training as queries
from training.data import SelectedPair

if TYPE_CHECKING:
    from store.models import Judgment

KINDS = tuple(k.value for k in CriterionKind)


@dataclass(frozen=True)
class CriterionVerdict:
    key: str  # the rubric's criterion id, else the criterion text
    text: str
    kind: str
    dimension: str | None
    good: float  # met (proficiency, bonus) or not violated (veto), averaged over verdicts, in [0, 1]


def _good(row: Judgment) -> float:
    value = float(row.score) if row.score is not None else (1.0 if row.met else 0.0)
    if row.criterion_kind == CriterionKind.VETO.value:
        return 1.0 - (1.0 if row.met else 0.0)
    return value


def load_verdicts(store: Store, pairs: list[SelectedPair]) -> dict[int, dict[str, CriterionVerdict]]:
    """Candidate id -> criterion key -> verdict. A pair whose provenance names its judgments uses
    exactly those (the grader that decided the pair); otherwise every judgment of its candidates.
    Several verdicts on one (candidate, criterion) are averaged."""
    named = {j for p in pairs for j in p.provenance.get("judgment_ids", []) or []}
    unnamed = {c for p in pairs if not p.provenance.get("judgment_ids")
               for c in (p.chosen_candidate_id, p.rejected_candidate_id) if c is not None}
    with store.session() as s:
        rows = queries.judgments(s, ids=named, candidate_ids=unnamed)
        collected: dict[tuple[int, str], list[Judgment]] = defaultdict(list)
        for r in rows:
            if r.criterion_kind in KINDS:
                key = (r.details or {}).get("criterion_id") or r.criterion
                collected[(r.candidate_id, key)].append(r)
        out: dict[int, dict[str, CriterionVerdict]] = defaultdict(dict)
        for (cand, key), js in collected.items():
            first = js[0]
            out[cand][key] = CriterionVerdict(key, first.criterion, first.criterion_kind,
                                              (first.details or {}).get("dimension"),
                                              sum(_good(j) for j in js) / len(js))
    return dict(out)


def inject(prompt: list[dict[str, Any]], kind: str, text: str, template: str) -> list[dict[str, Any]]:
    """The conversation with the criterion stated in the system message (merged into an existing
    one, else prepended), so one model scores a reply against any criterion it is given."""
    line = template.format(kind=kind, text=text)
    if prompt and prompt[0].get("role") == "system":
        return [{"role": "system", "content": f"{prompt[0]['content']}\n\n{line}"}, *prompt[1:]]
    return [{"role": "system", "content": line}, *prompt]


@dataclass
class CriterionRows:
    rows: list[dict[str, Any]]
    ties: int = 0
    pairs_without_verdicts: int = 0
    pairs_used: int = 0


def criterion_rows(pairs: list[SelectedPair], verdicts: dict[int, dict[str, CriterionVerdict]], template: str,
                   tie_policy: str = "skip") -> CriterionRows:
    """One preference row per (pair, criterion judged on both sides). Where the two responses
    differ on a criterion, the better one on it (meets it, or does not violate the veto) is chosen,
    which may be the pair's rejected side. Ties are dropped (``skip``) or keep the pair's order (``pair``)."""
    out = CriterionRows([])
    for p in pairs:
        a, b = verdicts.get(p.chosen_candidate_id or -1, {}), verdicts.get(p.rejected_candidate_id or -1, {})
        shared = sorted(set(a) & set(b))
        if not shared:
            out.pairs_without_verdicts += 1
            continue
        used = False
        for key in shared:
            va, vb = a[key], b[key]
            if va.good == vb.good:
                out.ties += 1
                if tie_policy == "skip":
                    continue
                first, second = p.chosen, p.rejected
            else:
                first, second = (p.chosen, p.rejected) if va.good > vb.good else (p.rejected, p.chosen)
            out.rows.append({"prompt": inject(p.prompt, va.kind, va.text, template),
                             "chosen": [{"role": "assistant", "content": first}],
                             "rejected": [{"role": "assistant", "content": second}],
                             "pair_id": p.id, "criterion": key, "criterion_kind": va.kind,
                             "criterion_text": va.text, "base_prompt": p.prompt})
            used = True
        out.pairs_used += used
    return out


# -- thresholds and S1/S2/S3 from scores --------------------------------------------------------
def best_threshold(samples: list[tuple[float, bool]], objective: str = "accuracy") -> tuple[float, float]:
    """The cut on the score that best separates good (True) from bad, as (threshold, objective value):
    ``accuracy``, or ``f1_bad`` (F1 of the bad class: a veto violation is the class that matters).
    Candidates are midpoints between neighbouring distinct scores, plus one below and one above all."""
    values = sorted({s for s, _ in samples})
    cuts = [values[0] - 1.0] + [(x + y) / 2 for x, y in zip(values, values[1:], strict=False)] + [values[-1] + 1.0]
    best = (cuts[0], -1.0)
    for t in cuts:
        tp = sum(1 for s, g in samples if s < t and not g)
        fp = sum(1 for s, g in samples if s < t and g)
        fn = sum(1 for s, g in samples if s >= t and not g)
        if objective == "f1_bad":
            value = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        else:
            value = (len(samples) - fp - fn) / len(samples)
        if value > best[1]:
            best = (t, value)
    return best


def calibrate(samples: dict[str, list[tuple[float, bool]]]) -> dict[str, Any]:
    """Per-kind thresholds from held-out (score, good) samples; a kind without samples keeps 0.0
    (the Bradley-Terry score's natural midpoint) and is marked uncalibrated."""
    out: dict[str, Any] = {"thresholds": {}, "calibration": {}}
    for kind in KINDS:
        got = samples.get(kind, [])
        if not got:
            out["thresholds"][kind] = 0.0
            out["calibration"][kind] = {"n": 0, "calibrated": False}
            continue
        objective = "f1_bad" if kind == CriterionKind.VETO.value else "accuracy"
        t, value = best_threshold(got, objective)
        out["thresholds"][kind] = t
        out["calibration"][kind] = {"n": len(got), "calibrated": True, "objective": objective, "value": value}
    return out


@dataclass(frozen=True)
class RMScore:
    per_criterion: dict[str, float]
    verdicts: dict[str, bool]  # met (proficiency, bonus) / violated (veto)
    s1: float
    s2: int
    s3: int

    @property
    def rubric_score(self) -> RubricScore:
        return RubricScore(self.s1, self.s2, self.s3)


def rm_score(rubric: Rubric, raw: dict[str, float], thresholds: dict[str, float]) -> RMScore:
    verdicts: dict[str, bool] = {}
    for c in rubric.criteria:
        good = raw[c.id] >= thresholds[c.kind.value]
        verdicts[c.id] = (not good) if c.kind is CriterionKind.VETO else good
    s = rubric.score(verdicts)
    return RMScore(dict(raw), verdicts, s.s1, s.s2, s.s3)


def as_messages(instruction: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": instruction}] if isinstance(instruction, str) else list(instruction)
