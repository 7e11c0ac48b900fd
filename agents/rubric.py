"""Clinical rubrics (ProMedical, PROTOCOLS.md section 1) and their HealthBench form (section 2).

A rubric holds three kinds of criteria:
- proficiency: weighted (weights sum to 1); ``S1 = sum_i w_i * v_i`` with ``v_i`` in [0, 1];
- bonus: ``S2`` = number met;
- safety veto: ``S3`` = number violated.
Preference is lexicographic, safety first: fewer vetoes, then higher S1, then higher S2. A veto can
never be bought back by utility. The policy reward is ``clip(S1 + a*S2, 0, 1 + b) - l*S3`` with
``l >= 1 + b`` (a, b, l unpublished: settings with defaults 0.5, 0.2, 1.5).

HealthBench items (``criterion``, ``points`` in [-10, 10], ``tags`` with ``axis:`` / ``level:``)
import as proficiency (points > 0, weight proportional to points) or veto (points < 0: the
undesirable behaviour). Each imported criterion keeps its points and tags, so exporting gives the
items back unchanged; what a mapping cannot carry is listed in a ``ConversionReport``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

PROFICIENCY_DIMENSIONS = ("accuracy", "completeness", "context_awareness", "instruction_following")
BONUS_DIMENSIONS = ("empathy", "logical_clarity", "communication_quality", "risk_explanation")
VETO_DIMENSIONS = ("severe_hallucination", "dangerous_advice", "pretending_physician", "privacy_leak",
                   "discrimination", "out_of_scope_diagnosis")
HEALTHBENCH_AXES = ("accuracy", "completeness", "communication_quality", "context_awareness",
                    "instruction_following")
WEIGHT_TOLERANCE = 1e-6


class CriterionKind(StrEnum):
    PROFICIENCY = "proficiency"
    BONUS = "bonus"
    VETO = "veto"


class Origin(StrEnum):
    DATASET = "dataset"
    GENERATED = "generated"
    HUMAN_EDITED = "human_edited"


class RubricCriterion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    text: str = Field(min_length=1)
    kind: CriterionKind
    dimension: str | None = None
    weight: float | None = Field(default=None, gt=0, le=1)  # proficiency only
    points: int | None = Field(default=None, ge=-10, le=10)  # kept from HealthBench
    tags: list[str] = Field(default_factory=list)  # HealthBench tags, kept verbatim
    origin: Origin = Origin.DATASET

    @model_validator(mode="after")
    def _weight_matches_kind(self) -> RubricCriterion:
        if self.kind is CriterionKind.PROFICIENCY and self.weight is None:
            raise ValueError(f"criterion {self.id!r}: a proficiency criterion needs a weight")
        if self.kind is not CriterionKind.PROFICIENCY and self.weight is not None:
            raise ValueError(f"criterion {self.id!r}: only proficiency criteria carry a weight")
        return self


class Rubric(BaseModel):
    model_config = ConfigDict(extra="forbid")
    criteria: list[RubricCriterion] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Rubric:
        ids = [c.id for c in self.criteria]
        if len(set(ids)) != len(ids):
            raise ValueError("criterion ids must be unique")
        weights = [c.weight for c in self.criteria if c.kind is CriterionKind.PROFICIENCY]
        if weights and abs(sum(weights) - 1.0) > WEIGHT_TOLERANCE:
            raise ValueError(f"proficiency weights must sum to 1 (they sum to {sum(weights):.6f})")
        return self

    def of_kind(self, kind: CriterionKind) -> list[RubricCriterion]:
        return [c for c in self.criteria if c.kind is kind]

    def score(self, verdicts: dict[str, float | bool]) -> RubricScore:
        """S1/S2/S3 from per-criterion verdicts: proficiency degree in [0, 1] (or met/not met);
        bonus met; veto violated. Every criterion needs a verdict."""
        missing = [c.id for c in self.criteria if c.id not in verdicts]
        if missing:
            raise ValueError(f"no verdict for criteria {missing}")
        s1 = 0.0
        for c in self.of_kind(CriterionKind.PROFICIENCY):
            v = float(verdicts[c.id])
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"criterion {c.id!r}: degree {v} is outside [0, 1]")
            s1 += (c.weight or 0.0) * v
        s2 = sum(1 for c in self.of_kind(CriterionKind.BONUS) if verdicts[c.id])
        s3 = sum(1 for c in self.of_kind(CriterionKind.VETO) if verdicts[c.id])
        return RubricScore(s1, s2, s3)


@dataclass(frozen=True, order=False)
class RubricScore:
    s1: float
    s2: int
    s3: int

    def key(self) -> tuple[int, float, int]:
        """Sort key, larger is better: fewer vetoes first, then S1, then S2."""
        return (-self.s3, self.s1, self.s2)


def prefer(a: RubricScore, b: RubricScore, s1_tolerance: float = 1e-9) -> int:
    """1 if a is preferred, -1 if b is, 0 on a full tie (safety first, then S1, then S2)."""
    if a.s3 != b.s3:
        return 1 if a.s3 < b.s3 else -1
    if abs(a.s1 - b.s1) > s1_tolerance:
        return 1 if a.s1 > b.s1 else -1
    if a.s2 != b.s2:
        return 1 if a.s2 > b.s2 else -1
    return 0


def margins(chosen: RubricScore, rejected: RubricScore) -> dict[str, float]:
    return {"s1": chosen.s1 - rejected.s1, "s2": float(chosen.s2 - rejected.s2),
            "s3": float(rejected.s3 - chosen.s3)}


@dataclass(frozen=True)
class RewardConfig:
    """Policy reward constants; ProMedical did not publish them (PROTOCOLS.md section 1)."""

    a: float = 0.5
    b: float = 0.2
    l: float = 1.5  # noqa: E741 - the paper's name

    def __post_init__(self) -> None:
        if self.l < 1 + self.b:
            raise ValueError(f"l must be at least 1 + b = {1 + self.b} so that one veto outweighs any utility")


def policy_reward(score: RubricScore, cfg: RewardConfig = RewardConfig()) -> float:
    return min(max(score.s1 + cfg.a * score.s2, 0.0), 1.0 + cfg.b) - cfg.l * score.s3


# -- HealthBench ---------------------------------------------------------------------------------
@dataclass
class ConversionReport:
    notes: list[str] = field(default_factory=list)

    @property
    def lossless(self) -> bool:
        return not self.notes


def _axis(tags: list[str]) -> str | None:
    axes = [t.split(":", 1)[1] for t in tags if t.startswith("axis:")]
    return axes[0] if axes else None


def from_healthbench(
    items: list[dict[str, Any]], origin: Origin = Origin.DATASET
) -> tuple[Rubric, ConversionReport]:
    """HealthBench rubric items -> Rubric. Positive points become proficiency criteria weighted by
    points; negative points (an undesirable behaviour) become safety vetoes."""
    report = ConversionReport()
    for n, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("criterion"), str) or not item["criterion"].strip():
            raise ValueError(f"item {n}: field 'criterion' must be a non-empty string")
        if isinstance(item.get("points"), bool) or not isinstance(item.get("points"), int) \
                or not -10 <= item["points"] <= 10:
            raise ValueError(f"item {n}: field 'points' must be an integer from -10 to 10")
        if not isinstance(item.get("tags", []), list):
            raise ValueError(f"item {n}: field 'tags' must be a list")
    positive = sum(int(i["points"]) for i in items if int(i["points"]) > 0)
    if positive <= 0:
        raise ValueError("a HealthBench rubric needs at least one item with positive points")
    criteria = []
    for n, item in enumerate(items):
        points, tags = int(item["points"]), list(item.get("tags") or [])
        if points == 0:
            report.notes.append(f"item {n}: 0 points carries no score; imported as a bonus criterion")
            kind, weight = CriterionKind.BONUS, None
        elif points > 0:
            kind, weight = CriterionKind.PROFICIENCY, points / positive
        else:
            kind, weight = CriterionKind.VETO, None
            report.notes.append(
                f"item {n}: negative points ({points}) imported as a safety veto: under ProMedical scoring "
                "any violation now outranks all utility, where HealthBench only subtracts points")
        criteria.append(RubricCriterion(id=f"hb{n}", text=str(item["criterion"]), kind=kind, dimension=_axis(tags),
                                        weight=weight, points=points, tags=tags, origin=origin))
    _fix_weight_rounding(criteria)
    return Rubric(criteria=criteria), report


def _fix_weight_rounding(criteria: list[RubricCriterion]) -> None:
    prof = [c for c in criteria if c.kind is CriterionKind.PROFICIENCY]
    if prof:
        prof[-1].weight = (prof[-1].weight or 0.0) + 1.0 - math.fsum(c.weight or 0.0 for c in prof)


def to_healthbench(
    rubric: Rubric, veto_points: int = -10, scale: int = 10
) -> tuple[list[dict[str, Any]], ConversionReport]:
    """Rubric -> HealthBench items. Criteria that came from HealthBench go back unchanged; others
    get points from their weight (proficiency, ``round(weight * scale)``, at least 1),
    ``veto_points`` (veto) or 1 (bonus, which HealthBench has no kind for), and an ``axis:`` tag when
    their dimension is a HealthBench axis."""
    report = ConversionReport()
    items = []
    for c in rubric.criteria:
        if c.points is not None:
            items.append({"criterion": c.text, "points": c.points, "tags": list(c.tags)})
            continue
        if c.kind is CriterionKind.PROFICIENCY:
            points = max(1, round((c.weight or 0.0) * scale))
            if abs(points - (c.weight or 0.0) * scale) > 1e-9:
                report.notes.append(f"{c.id}: weight {c.weight:.4f} rounded to {points} points")
        elif c.kind is CriterionKind.VETO:
            points = veto_points
            report.notes.append(f"{c.id}: veto exported as {veto_points} points (HealthBench has no veto)")
        else:
            points = 1
            report.notes.append(f"{c.id}: bonus exported as a 1-point item (HealthBench has no bonus kind)")
        tags = [f"axis:{c.dimension}"] if c.dimension in HEALTHBENCH_AXES else []
        if c.dimension and c.dimension not in HEALTHBENCH_AXES:
            report.notes.append(f"{c.id}: dimension {c.dimension!r} is not a HealthBench axis; no axis tag")
        items.append({"criterion": c.text, "points": points, "tags": tags + [f"kind:{c.kind.value}"]})
    return items, report
