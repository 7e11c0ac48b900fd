"""Choosing a preference pair among graded candidates, safety first (ProMedical).

Candidates are ordered lexicographically (fewer vetoes, then S1, then S2; ``agents.rubric``). The
pair is the best against the worst distinct candidate, kept only if it clears the configured
margins; ties are dropped. A pair teaches its chosen answer, so by default the chosen answer must
violate no veto: when every candidate carries one there is no pair (``allow_unsafe_chosen`` keeps
it, and the selection says so, for the pair to be marked). Each margin is kept in its own unit:
veto difference (``s3``), S1 difference, S2 difference. Before ordering, exact duplicates
(normalised text) and near duplicates (``agents.text_similarity`` over word 3-shingles, above a
threshold) are removed, so a pair never
contrasts two versions of the same answer. Long answers tend to win with LLM graders, so the
chosen/rejected length ratio is reported for every pair and can be capped. Every rejection says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agents.rubric import RubricScore, margins, prefer
from agents.text_similarity import similarity

SHINGLE = 3  # near duplicates share most runs of three words, in order

S1_TIE = 1e-9


@dataclass(frozen=True)
class Graded:
    candidate_id: int
    text: str
    score: RubricScore


@dataclass(frozen=True)
class SelectionConfig:
    min_s1_margin: float = 0.0  # same vetoes: S1 must differ by more than this (a veto difference always counts)
    min_s2_margin: int = 1  # same vetoes and S1: bonus criteria met must differ by at least this
    near_duplicate_threshold: float = 0.9  # Jaccard similarity of word 3-shingles; 1.0 turns it off
    max_length_ratio: float | None = None  # chosen/rejected character ratio cap; None reports only
    allow_unsafe_chosen: bool = False  # keep a pair whose chosen answer violates a veto (marked as such)


@dataclass
class Selection:
    chosen: Graded | None = None
    rejected: Graded | None = None
    margins: dict[str, float] = field(default_factory=dict)
    length_ratio: float | None = None
    dropped: dict[int, str] = field(default_factory=dict)  # candidate id -> why it left the pool
    reason: str = ""
    decided_by: str = ""  # veto | s1 | s2
    unsafe_chosen: bool = False  # the chosen answer violates a veto (only with allow_unsafe_chosen)

    @property
    def kept(self) -> bool:
        return self.chosen is not None


def normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def deduplicate(cands: list[Graded], threshold: float) -> tuple[list[Graded], dict[int, str]]:
    """Keep the first of each group of exact or near duplicates (in the order given)."""
    kept: list[Graded] = []
    dropped: dict[int, str] = {}
    seen: dict[str, int] = {}
    for c in cands:
        key = normalise(c.text)
        if key in seen:
            dropped[c.candidate_id] = f"exact duplicate of candidate {seen[key]}"
            continue
        twin = (next((k for k in kept if similarity(k.text, c.text, SHINGLE) >= threshold), None)
                if threshold < 1.0 else None)
        if twin is not None:
            dropped[c.candidate_id] = f"near duplicate of candidate {twin.candidate_id}"
            continue
        seen[key] = c.candidate_id
        kept.append(c)
    return kept, dropped


def select_pair(cands: list[Graded], cfg: SelectionConfig = SelectionConfig()) -> Selection:
    pool, dropped = deduplicate(cands, cfg.near_duplicate_threshold)
    out = Selection(dropped=dropped)
    if len(pool) < 2:
        out.reason = f"fewer than 2 distinct candidates: {len(pool)}"
        return out
    ranked = sorted(pool, key=lambda g: (g.score.key(), -g.candidate_id), reverse=True)
    best, worst = ranked[0], ranked[-1]
    if prefer(best.score, worst.score) == 0:
        out.reason = "tie: best and worst have equal S3, S1 and S2"
        return out
    if best.score.s3 > 0 and not cfg.allow_unsafe_chosen:
        out.reason = (f"unsafe: every candidate violates a veto (the best, candidate {best.candidate_id}, "
                      f"{best.score.s3}); a pair would teach it")
        return out
    m = margins(best.score, worst.score)
    decided_by = "veto" if m["s3"] > 0 else ("s1" if abs(m["s1"]) > S1_TIE else "s2")
    if decided_by == "s1" and m["s1"] <= cfg.min_s1_margin:
        out.reason = f"S1 margin {m['s1']:.3f} is not above {cfg.min_s1_margin}"
        return out
    if decided_by == "s2" and m["s2"] < cfg.min_s2_margin:
        out.reason = f"S2 margin {m['s2']:.0f} is below {cfg.min_s2_margin}"
        return out
    ratio = len(best.text) / max(1, len(worst.text))
    if cfg.max_length_ratio is not None and ratio > cfg.max_length_ratio:
        out.reason = f"length ratio {ratio:.2f} above the cap {cfg.max_length_ratio}"
        out.length_ratio = ratio
        return out
    out.chosen, out.rejected, out.margins, out.length_ratio = best, worst, m, ratio
    out.decided_by, out.unsafe_chosen = decided_by, best.score.s3 > 0
    out.reason = f"decided by {decided_by}" + (f"; the chosen answer violates {best.score.s3} veto(s)"
                                               if out.unsafe_chosen else "")
    return out
