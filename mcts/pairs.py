"""Preference pairs from a searched tree, with a real margin between preferred and rejected.

CSO's rule (PROTOCOLS section 3): preferred = nodes on a path to an ended conversation with
Q >= 0.5 and N >= 2; rejected = generated siblings with Q <= 0.5 on no preferred path. Its thresholds
touch at 0.5, so a "rejected" turn can score as well as the preferred one, and its stop check left
unevaluated nodes that were then counted as negatives. Here:

- a root-to-ended path is preferred when every non-fixed node on it (the root excluded: it is no
  choice) has Q >= ``q_min`` and N >= ``n_min``; fixed (gold) nodes are exempt and may be preferred;
- a rejected node is a sibling of a preferred node that was actually evaluated (``evaluated`` and
  N >= 1), is not fixed and lies on no preferred path, and whose Q passes the rejected rule:
  ``protocol`` (PROTOCOLS.md's, the ESC search's default): Q <= ``q_max`` (0.5); ``margin``: Q <=
  preferred.Q - ``margin`` (carealign's stricter rule: never a rejected turn as good as the preferred one);
- one pair per (parent, rejected sibling): the preferred side is the parent's best preferred child
  (highest Q, then N, then creation order), which gives the largest margin.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from mcts.tree import Node, Tree


class PreferencePair(NamedTuple):
    parent_path: str
    preferred: Node
    rejected: Node
    margin: float  # preferred.value - rejected.value (>= the margin asked for under the margin rule)


RejectedRule = Literal["protocol", "margin"]
REJECTED_RULES: tuple[RejectedRule, ...] = ("protocol", "margin")


def preferred_nodes(tree: Tree, q_min: float, n_min: int) -> set[str]:
    """Paths of the nodes on some qualifying root-to-ended path (the root itself not included)."""
    out: set[str] = set()
    for node in tree:
        if not node.ended or node.is_root:
            continue
        chain = node.lineage()[1:]
        if all(n.fixed or (n.value >= q_min and n.visits >= n_min) for n in chain):
            out.update(n.path for n in chain)
    return out


def extract_pairs(tree: Tree, *, q_min: float = 0.5, n_min: int = 2, margin: float = 0.25,
                  rule: RejectedRule = "margin", q_max: float = 0.5) -> list[PreferencePair]:
    """All (parent path, preferred, rejected, margin) pairs of the tree, in creation order.

    ``q_min`` and ``n_min`` default to CSO's 0.5 and 2. Under ``rule`` "margin" (this function's
    default) a rejected sibling has Q <= preferred Q - ``margin`` (unpublished: 0.25 on CSO's -3..1
    reward scale); under "protocol" (the ESC search's default setting) Q <= ``q_max`` (CSO's 0.5; it
    may then tie the preferred one, as in the reference). A negative margin is refused.
    """
    if margin < 0:
        raise ValueError("margin must be >= 0")
    if n_min < 0:
        raise ValueError("n_min must be >= 0")
    if rule not in REJECTED_RULES:
        raise ValueError(f"rejected rule {rule!r}: choose {' or '.join(REJECTED_RULES)}")
    preferred = preferred_nodes(tree, q_min, n_min)
    pairs: list[PreferencePair] = []
    for parent in tree:
        winners = [c for c in parent.children if c.path in preferred]
        if not winners:
            continue
        best = max(winners, key=lambda c: (c.value, c.visits, -c.seq))
        for sibling in parent.children:
            if sibling.path in preferred or sibling.fixed or not sibling.evaluated or sibling.visits < 1:
                continue
            # under either rule a rejected turn never scores above the preferred one it is paired with
            limit = min(q_max, best.value) if rule == "protocol" else best.value - margin
            if sibling.value <= limit:
                pairs.append(PreferencePair(parent.path, best, sibling, best.value - sibling.value))
    return pairs
