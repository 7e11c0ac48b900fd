"""A trained reward model as the judge of an external pairwise file (``carealign bench rubric
--reward-model PATH FILE``): one verdict per pair in the shape the LLM judge's pairwise results
have, so the bench summarises and compares both the same way.

The pair's criteria come from its ``rubric`` (the bench reader keeps each criterion's kind and
text). Proficiency criteria share S1's weight equally, since the bench format carries no weights.
Each response gets S1/S2/S3 from the model's per-criterion scores and its calibrated thresholds;
the preference is lexicographic, safety first (PROTOCOLS.md section 1); a full tie on (S3, S1, S2)
goes to the response with the higher mean raw score (a reward model always has a margin to read).
Per criterion, the response scoring higher on that criterion is that criterion's preference.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from agents.rubric import Rubric, RubricCriterion, prefer
from training.rm_scorer import RM_META, RewardScorer

SIDES = {1: "a", -1: "b", 0: "tie"}


def bench_rubric(criteria: list[dict[str, str]], where: str = "pair") -> Rubric:
    """The rubric of a bench pair from its ``{kind, text}`` criteria; proficiency weights equal."""
    if not criteria:
        raise ValueError(f"{where}: field 'rubric': a reward model scores answers against criteria, and this pair "
                         "has none")
    n_prof = sum(1 for c in criteria if c["kind"] == "proficiency")
    return Rubric(criteria=[RubricCriterion(id=f"c{n}", text=c["text"], kind=c["kind"],
                                            weight=1.0 / n_prof if c["kind"] == "proficiency" else None)
                            for n, c in enumerate(criteria)])


def _side(a: float, b: float) -> str:
    return "a" if a > b else "b" if b > a else "tie"


def pairwise_verdict(scorer: RewardScorer, payload: dict[str, Any]) -> dict[str, Any]:
    """The model's verdict on one stored pairwise bench item (``messages``, ``response_a``,
    ``response_b``, ``criteria``): preference, per-response veto flags, S1/S2/S3 and each
    criterion's own preference."""
    rubric = bench_rubric(payload["criteria"])
    conv = payload["messages"]
    sa, sb = scorer.score_many([(conv, payload["response_a"], rubric), (conv, payload["response_b"], rubric)])
    order = prefer(sa.rubric_score, sb.rubric_score)
    if order == 0:
        mean_a = sum(sa.per_criterion.values()) / len(rubric.criteria)
        mean_b = sum(sb.per_criterion.values()) / len(rubric.criteria)
        preferred = _side(mean_a, mean_b)
    else:
        preferred = SIDES[order]
    per_criterion = [{"criterion": c.text, "kind": c.kind.value, "score_a": sa.per_criterion[c.id],
                      "score_b": sb.per_criterion[c.id],
                      "preferred": _side(sa.per_criterion[c.id], sb.per_criterion[c.id])}
                     for c in rubric.criteria]
    return {"preferred": preferred, "pred_veto": [sa.s3 > 0, sb.s3 > 0],
            "scores": {"a": [sa.s1, sa.s2, sa.s3], "b": [sb.s1, sb.s2, sb.s3]}, "per_criterion": per_criterion}


def model_key(path: str | Path) -> str:
    """What identifies a trained reward model for a bench job: a sha256 over its
    ``carealign_rm.json`` and each weight file's name, size, modification time and first megabyte
    (fast on large models; retraining rewrites the files and the thresholds)."""
    root = Path(path)
    h = hashlib.sha256((root / RM_META).read_bytes())
    for f in sorted(root.glob("*.safetensors")) + sorted(root.glob("*.bin")):
        h.update(f.name.encode())
        h.update(f"{f.stat().st_size}:{f.stat().st_mtime_ns}".encode())
        with f.open("rb") as fh:
            h.update(fh.read(1 << 20))
    return h.hexdigest()
