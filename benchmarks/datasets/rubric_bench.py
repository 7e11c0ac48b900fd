"""Rubric bench inputs and summaries (PROTOCOLS.md sections 1 and 2); the LLM work is in
``graphs.bench.rubric_nodes``, the scoring in ``benchmarks.healthbench``.

Three input formats, all JSONL, one object per line:

- **score** (HealthBench's own format): ``{"prompt_id"?, "prompt": [{"role", "content"}, ...],
  "rubrics": [{"criterion", "points", "tags"}], "example_tags"?: [...]}``; other HealthBench fields
  (``ideal_completions_data``, ``canary``) are accepted and ignored.
- **pairwise** (ProMedical's bench): ``{"id"?, "prompt": str | [messages], "response_a", "response_b",
  "gold": "a"|"b", "kind"?: the criterion kind that decided the gold preference,
  "veto_a"?/"veto_b"?: gold veto flags, "rubric"?: HealthBench items or a native rubric shown to the
  judge}``. Veto flags must be given for both responses or neither.
- **meta** (HealthBench's meta-evaluation): ``{"id"?, "prompt": [messages], "completion": str,
  "rubric": <one criterion text>, "binary_labels": [bool, ...], "category"?}``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from benchmarks.datasets.instructions import Message, Text, read_jsonl
from benchmarks.datasets.rows import InputReport
from benchmarks.healthbench import (
    ClippedMean,
    PairRecord,
    grader_agreement,
    pairwise_report,
    score_healthbench,
)
from benchmarks.metrics import macro_f1

RUBRIC_MODES = ("score", "pairwise", "meta")


def _conversation(prompt: str | list[Message]) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [m.model_dump() for m in prompt]


def _last_is_user(prompt: str | list[Message]) -> None:
    if isinstance(prompt, list) and (not prompt or prompt[-1].role != "user"):
        raise ValueError("the conversation must be non-empty and end with a 'user' message")


class RubricItem(BaseModel):
    model_config = ConfigDict(extra="allow")
    criterion: Text
    points: int = Field(ge=-10, le=10)
    tags: list[str] = Field(default_factory=list)


class HealthBenchExample(BaseModel):
    model_config = ConfigDict(extra="allow")
    prompt_id: str | int | None = None
    prompt: list[Message] = Field(min_length=1)
    rubrics: list[RubricItem] = Field(min_length=1)
    example_tags: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _scorable(self) -> HealthBenchExample:
        _last_is_user(self.prompt)
        if not any(r.points > 0 for r in self.rubrics):
            raise ValueError("no rubric item has positive points, so the example's score is undefined")
        return self


class PairwiseExample(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | int | None = None
    prompt: Text | list[Message]
    response_a: Text
    response_b: Text
    gold: Literal["a", "b"]
    kind: str | None = None
    veto_a: bool | None = None
    veto_b: bool | None = None
    rubric: list[dict[str, Any]] | dict[str, Any] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> PairwiseExample:
        _last_is_user(self.prompt)
        if (self.veto_a is None) != (self.veto_b is None):
            raise ValueError("give gold veto flags for both responses (veto_a and veto_b) or for neither")
        return self

    def criteria(self) -> list[dict[str, str]]:
        from agents.rubric import Rubric, from_healthbench

        if self.rubric is None:
            return []
        rubric = from_healthbench(self.rubric)[0] if isinstance(self.rubric, list) \
            else Rubric.model_validate(self.rubric)
        return [{"kind": c.kind.value, "text": c.text} for c in rubric.criteria]


class MetaEvalExample(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str | int | None = None
    prompt: list[Message] = Field(min_length=1)
    completion: Text
    rubric: Text
    binary_labels: list[bool] = Field(min_length=1)
    category: str | None = None


def read_rubric_bench(path: str | Path, mode: str, limit: int | None = None, report: Any = None
                      ) -> list[dict[str, Any]]:
    """Validated records (``payload``, ``external_id``, ``source``) for ``store.records.upsert_items``.
    A bad line raises ``benchmarks.datasets.instructions.InputError`` naming the file, line and field,
    or with ``report`` (``benchmarks.datasets.rows.InputReport``, which then sets the limit) set to
    skip, is listed there and left out; only the lines up to the limit are read."""
    if mode not in RUBRIC_MODES:
        raise ValueError(f"unknown rubric bench mode {mode!r}; choose one of {', '.join(RUBRIC_MODES)}")
    model = {"score": HealthBenchExample, "pairwise": PairwiseExample, "meta": MetaEvalExample}[mode]
    out = []
    for lineno, ex in read_jsonl(path, model, report if report is not None else InputReport(str(path), limit=limit)):
        if mode == "score":
            payload = {"mode": mode, "messages": _conversation(ex.prompt),
                       "rubrics": [r.model_dump(include={"criterion", "points", "tags"}) for r in ex.rubrics],
                       "example_tags": list(ex.example_tags)}
            ext = ex.prompt_id
        elif mode == "pairwise":
            payload = {"mode": mode, "messages": _conversation(ex.prompt), "response_a": ex.response_a,
                       "response_b": ex.response_b, "gold": ex.gold, "kind": ex.kind, "criteria": ex.criteria(),
                       "gold_veto": [] if ex.veto_a is None else [ex.veto_a, ex.veto_b]}
            ext = ex.id
        else:
            payload = {"mode": mode, "messages": _conversation(ex.prompt), "completion": ex.completion,
                       "criterion": ex.rubric, "binary_labels": list(ex.binary_labels), "category": ex.category}
            ext = ex.id
        out.append({"payload": payload, "external_id": None if ext is None else str(ext),
                    "source": f"{Path(path).name}:{lineno}"})
    return out


# -- summaries from stored per-item results --------------------------------------------------------


def _clipped(c: ClippedMean) -> dict[str, float]:
    return {"score": c.score, "mean": c.mean, "bootstrap_std": c.bootstrap_std, "n": c.n}


def summarise_scores(results: Sequence[dict[str, Any]], n_resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """HealthBench summary of graded examples: each result holds ``rubrics`` (the items), ``met``
    (the verdicts) and ``example_tags``. Per-axis (``axis:*``) and per-theme (``theme:*``) scores are
    pulled out of the tag scores for the report."""
    res = score_healthbench([r["rubrics"] for r in results], [[bool(m) for m in r["met"]] for r in results],
                            [r.get("example_tags") or [] for r in results], n_resamples, seed)
    tags = {t: _clipped(c) for t, c in res.tags.items()}
    return {"mode": "score", "n": len(results), "score": res.score, "overall": _clipped(res.overall),
            "axes": {t.split(":", 1)[1]: v for t, v in tags.items() if t.startswith("axis:")},
            "themes": {t.split(":", 1)[1]: v for t, v in tags.items() if t.startswith("theme:")},
            "tags": tags, "per_example_mean": sum(res.per_example) / len(res.per_example)}


def summarise_pairwise(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pairwise accuracy overall and by deciding-criterion kind, and safety P/R/F1 over the veto
    flags of the pairs that have gold flags."""
    records = [PairRecord(r["gold"], r["preferred"], r.get("kind"), r.get("gold_veto") or [],
                          r["pred_veto"] if r.get("gold_veto") else []) for r in results]
    rep = pairwise_report(records)
    swapped = [r["position_consistent"] for r in results if r.get("position_consistent") is not None]
    return {"mode": "pairwise", "n": rep.n, "accuracy": rep.accuracy, "correct": rep.correct,
            "position_consistency": sum(swapped) / len(swapped) if swapped else None,
            "per_kind": {k: asdict(v) for k, v in rep.per_kind.items()},
            "safety": {"precision": rep.safety.precision, "recall": rep.safety.recall, "f1": rep.safety.f1,
                       "tp": rep.safety.tp, "fp": rep.safety.fp, "fn": rep.safety.fn}}


def summarise_meta(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Grader vs physicians: HealthBench's macro F1 over all (verdict, label) comparisons, overall
    and per category, plus the macro F1 against each item's majority label."""
    def agreement(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        m = grader_agreement([r["met"] for r in rows], [r["binary_labels"] for r in rows])
        return {"macro_f1": m.macro_f1, "f1_met": m.f1_met, "f1_not_met": m.f1_not_met,
                "n_comparisons": m.n_comparisons, "n": len(rows)}

    by_category: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        if r.get("category"):
            by_category[r["category"]].append(r)
    majority = [(sum(r["binary_labels"]) * 2 > len(r["binary_labels"]), bool(r["met"])) for r in results
                if sum(r["binary_labels"]) * 2 != len(r["binary_labels"])]
    return {"mode": "meta", **agreement(results),
            "majority_macro_f1": macro_f1([g for g, _ in majority], [p for _, p in majority]) if majority else None,
            "per_category": {c: agreement(rows) for c, rows in sorted(by_category.items())}}
