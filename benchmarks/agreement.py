"""Inter-rater agreement: percent agreement, Cohen's kappa (two raters) and Fleiss' kappa (more).

Used by the review app (``carealign review report`` and its admin page) over the labels that N
independent reviewers gave the same items. Pure functions over lists of category labels.

    Cohen (1960):  kappa = (p_o - p_e) / (1 - p_e), p_e = sum_k p1_k * p2_k
    Fleiss (1971): kappa = (P_bar - P_e) / (1 - P_e), P_i = (sum_j n_ij^2 - n) / (n (n - 1)),
                   P_e = sum_j p_j^2 with p_j the share of all ratings in category j

Kappa is undefined (``None``) when chance agreement is 1 (every rating in one category).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any


def percent_agreement(ratings: Sequence[Sequence[str]]) -> float | None:
    """Mean over items of the share of rater pairs that agree (items with at least two ratings)."""
    shares = []
    for row in ratings:
        n = len(row)
        if n < 2:
            continue
        counts = Counter(row)
        shares.append(sum(c * (c - 1) for c in counts.values()) / (n * (n - 1)))
    return sum(shares) / len(shares) if shares else None


def cohen_kappa(first: Sequence[str], second: Sequence[str]) -> float | None:
    """Cohen's kappa of two raters who labelled the same items (in the same order)."""
    if len(first) != len(second):
        raise ValueError(f"two raters need the same items: {len(first)} and {len(second)} labels")
    n = len(first)
    if n == 0:
        return None
    p_o = sum(a == b for a, b in zip(first, second, strict=True)) / n
    c1, c2 = Counter(first), Counter(second)
    p_e = sum(c1[k] * c2[k] for k in set(c1) | set(c2)) / (n * n)
    return None if p_e == 1 else (p_o - p_e) / (1 - p_e)


def fleiss_kappa(ratings: Sequence[Sequence[str]]) -> float | None:
    """Fleiss' kappa of items rated by the same number (>= 2) of raters each."""
    if not ratings:
        return None
    n = len(ratings[0])
    if n < 2 or any(len(r) != n for r in ratings):
        raise ValueError("Fleiss' kappa needs the same number (at least 2) of ratings per item")
    totals: Counter[str] = Counter()
    p_items = []
    for row in ratings:
        counts = Counter(row)
        totals.update(counts)
        p_items.append((sum(c * c for c in counts.values()) - n) / (n * (n - 1)))
    p_bar = sum(p_items) / len(ratings)
    p_e = sum((t / (len(ratings) * n)) ** 2 for t in totals.values())
    return None if p_e == 1 else (p_bar - p_e) / (1 - p_e)


def agreement(ratings: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Agreement over items with at least two ratings: Cohen's kappa when every such item has two
    (the first and second rating as the two raters), else Fleiss' kappa over the items with the most
    common number of ratings; percent agreement over all of them."""
    rated = [list(r) for r in ratings if len(r) >= 2]
    if not rated:
        return {"items": 0, "raters": 0, "method": None, "kappa": None, "percent_agreement": None}
    sizes = Counter(len(r) for r in rated)
    if set(sizes) == {2}:
        kappa, method, raters = cohen_kappa([r[0] for r in rated], [r[1] for r in rated]), "cohen", 2
    else:
        raters = sizes.most_common(1)[0][0]
        kappa, method = fleiss_kappa([r for r in rated if len(r) == raters]), "fleiss"
    return {"items": len(rated), "raters": raters, "method": method, "kappa": kappa,
            "percent_agreement": percent_agreement(rated)}
