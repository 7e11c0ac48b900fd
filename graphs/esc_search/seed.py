"""The seeded search tree of one ESConv dialogue.

Gold turns (CSO: the real dialogue's turns start with Q = 1, N = 100): the seed's turns up to and
including the seeker turn that follows the G-th supporter turn (G = ``gold_turns``). Supporter turns
that open a dialogue before the seeker has said anything are always gold, and G is capped so that
the gold prefix ends on a seeker turn: the search always writes the supporter's answer to a seeker.
The root holds the persona (situation, emotion, problem) and the seeker's opening turn; each gold
supporter turn is a fixed node whose action is its strategy (``A+B`` for a turn of several).
"""

from __future__ import annotations

from typing import Any

from mcts import Node, Tree


def supporter_text(turn: dict[str, Any]) -> str:
    return " ".join(p["text"] for p in turn["parts"])


def tagged_text(parts: list[dict[str, Any]]) -> str:
    """A supporter turn as training text: each utterance prefixed by its strategy, ``[Affirmation] ...``."""
    return " ".join(f"[{p['strategy']}] {p['text']}" for p in parts)


def turn_action(turn: dict[str, Any]) -> str:
    names: list[str] = []
    for p in turn["parts"]:
        if not names or names[-1] != p["strategy"]:
            names.append(p["strategy"])
    return "+".join(names)


def gold_prefix(turns: list[dict[str, Any]], gold_turns: int) -> tuple[str, list[tuple[dict, dict]]]:
    """(opening seeker text, [(gold supporter turn, the seeker turn after it)]) per the rule above."""
    opening, i = [], 0
    forced = 0
    while i < len(turns) and turns[i]["speaker"] == "supporter":
        forced, i = forced + 1, i + 1
    if i == 0:
        opening.append(turns[0]["text"])
        i = 1
    pairs: list[tuple[dict, dict]] = []
    if forced:  # supporter turns before any seeker turn: gold, answered by the first seeker turn
        pairs.append(({"speaker": "supporter", "parts": [p for t in turns[:forced] for p in t["parts"]]}, turns[i]))
        i += 1
    while len(pairs) < max(gold_turns, 1 if forced else 0) and i + 1 < len(turns):
        pairs.append((turns[i], turns[i + 1]))
        i += 2
    return " ".join(opening), pairs


def seed_tree(tree_id: str, payload: dict[str, Any], gold_turns: int, *, run_id: str | None = None,
              item_id: int | None = None) -> Tree:
    """A new tree for a seed dialogue: persona and opening at the root, gold turns as fixed nodes."""
    opening, gold = gold_prefix(payload["turns"], gold_turns)
    root_state = {"persona": {k: payload.get(k, "") for k in ("situation", "emotion", "problem")},
                  "opening": opening, "gold_turns": len(gold)}
    tree = Tree(tree_id, root_state, run_id=run_id, item_id=item_id)
    node: Node = tree.root
    for sup, seek in gold:
        node = tree.add_fixed(node, turn_action(sup), state={
            "strategy": turn_action(sup), "supporter": supporter_text(sup), "tagged": tagged_text(sup["parts"]),
            "seeker": seek["text"], "ended": False, "gold": True})
    return tree
