"""ESC-Pro in the published shape, so CSO's own converters read carealign's trees as they are.

Checked against the authors' code, ``XingYuSSS/CSO`` (commit 62c6b7eb2e70): ``build_data.py``
(``build_compare`` writes the dialogues), ``change_data.py`` (preference pairs) and
``change_data_kto.py`` (KTO) read them: for every assistant message at an odd index ``i`` they take
``messages[:i]`` as the history and pair the turn with each entry of its ``negative`` list (the KTO
converter also keeps the turn itself as a positive). One JSON list, one entry per kept dialogue::

    {"description": situation, "scene": problem type, "iter": search iterations,
     "messages": [{"role": "user", "content": ...},
                  {"role": "assistant", "content": ..., "strategy": NAME,
                   "negative": [{"content": ..., "strategy": NAME}, ...]}, ...]}

starting with a seeker (``user``) message, alternating, ending with a supporter turn.

What carealign writes, and where it differs from ``build_compare`` on purpose:

- one entry per kept end-to-end path: a root-to-ended path whose generated turns all have
  Q >= ``q_min`` and N >= ``n_min`` (``mcts.pairs.preferred_nodes``, as the stored pairs);
- a turn's ``negative`` list is exactly the stored turn-level pairs in which it is the preferred side
  (``mcts.pairs.extract_pairs`` with the config's ``q_min`` / ``n_min`` and rejected rule): evaluated,
  generated siblings on no preferred path with Q <= ``rejected_q_max`` (0.5, the default ``protocol``
  rule) or Q <= preferred Q - ``margin`` (the ``margin`` rule). CSO lists every such
  sibling under every preferred turn; here a preferred turn that is not
  its parent's best preferred child lists none, because the parent's pairs are the best child's.
  So the published converters yield the stored pairs, no more and no fewer;
- a supporter turn before the seeker's first line (a seed that opens with the supporter) is left
  out, with its negatives, as ``build_compare`` leaves out the root's greeting: ``messages`` starts
  with the seeker's first line. The stored pairs have no pair there either (no prompt to give), but
  the prompts of the later pairs of such a tree start with that supporter turn;
- the seeker's reply to the last supporter turn is dropped (``build_compare``'s ``history[:-1]``);
- a gold turn of several strategies (ESConv seeds) is one message with strategy ``A+B`` and its
  texts joined by a space (the stored pairs tag each part: ``[A] t1 [B] t2``); gold turns carry the
  seed's strategy names, generated turns the strategy set's;
- ``description`` = the persona's situation, ``scene`` = its problem type (ExTES's ``scene``).

The conversion (``tree_to_esc_pro``) is a pure function of a tree and the thresholds; the
provenance of each dialogue (tree, item, run, node paths, Q and N of every turn and negative) goes
to a sidecar JSONL file, so the main file keeps exactly the published keys.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graphs.esc_search.configuration import EscSearchConfig
from graphs.esc_search.domain import tree_pairs
from mcts import Node, PreferencePair, Tree, preferred_nodes

FORMAT = "esc-pro"
FILE_NAME = "esc_pro_cso.json"  # in esc-search's --out-dir, beside esc_pro_dialogues.json


@dataclass
class EscProDialogues:
    """What one or more trees give: the entries (exact published keys), one provenance record per
    entry (same order), and the kept paths that could not be written, with the reason."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    provenance: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def extend(self, other: EscProDialogues) -> None:
        self.entries += other.entries
        self.provenance += other.provenance
        self.skipped += other.skipped

    @property
    def assistant_turns(self) -> int:
        return sum(1 for e in self.entries for m in e["messages"] if m["role"] == "assistant")

    @property
    def negatives(self) -> int:
        return sum(len(m["negative"]) for e in self.entries for m in e["messages"] if m["role"] == "assistant")


def negatives_by_turn(pairs: Iterable[PreferencePair]) -> dict[str, list[PreferencePair]]:
    """The pairs grouped by their preferred node's path (a turn's negatives), in pair order."""
    out: dict[str, list[PreferencePair]] = {}
    for p in pairs:
        out.setdefault(p.preferred.path, []).append(p)
    return out


def _assistant(node: Node, pairs: list[PreferencePair]) -> dict[str, Any]:
    return {"role": "assistant", "content": node.state["supporter"], "strategy": node.state["strategy"],
            "negative": [{"content": p.rejected.state["supporter"], "strategy": p.rejected.state["strategy"]}
                         for p in pairs]}


def _turn_provenance(node: Node, pairs: list[PreferencePair]) -> dict[str, Any]:
    return {"path": node.path, "q": node.value, "n": node.visits, "gold": node.fixed,
            "negative": [{"path": p.rejected.path, "q": p.rejected.value, "n": p.rejected.visits,
                          "margin": p.margin} for p in pairs]}


def path_dialogue(tree: Tree, leaf: Node, negatives: dict[str, list[PreferencePair]]
                  ) -> tuple[dict[str, Any], dict[str, Any]] | str:
    """(entry, provenance) of the root-to-``leaf`` path, or why it cannot be written."""
    root = tree.root
    messages: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    folded: list[str] = []
    if root.state.get("opening"):
        messages.append({"role": "user", "content": root.state["opening"]})
    for node in leaf.lineage()[1:]:
        pairs = negatives.get(node.path, [])
        if not messages:  # no seeker line yet: a supporter opening, left out as build_compare does
            folded.append(node.path)
        elif messages[-1]["role"] != "user":
            return f"no seeker reply after {messages[-1]['strategy']!r} turn {turns[-1]['path']!r}"
        else:
            messages.append(_assistant(node, pairs))
            turns.append(_turn_provenance(node, pairs))
        if node is not leaf and node.state.get("seeker"):
            messages.append({"role": "user", "content": node.state["seeker"]})
    if not turns:
        return "no supporter turn after the seeker's first line"
    persona = root.state.get("persona") or {}
    entry = {"description": persona.get("situation", ""), "scene": persona.get("problem", ""),
             "iter": tree.meta.iterations, "messages": messages}
    prov = {"tree_id": tree.tree_id, "item_id": tree.item_id, "run_id": tree.run_id, "path": leaf.path,
            "end_reason": leaf.state.get("end_reason"), "folded_opening": folded, "turns": turns}
    return entry, prov


def tree_to_esc_pro(tree: Tree, config: EscSearchConfig,
                    keep: Callable[[PreferencePair], bool] | None = None) -> EscProDialogues:
    """Every kept end-to-end path of ``tree`` as an ESC-Pro dialogue (the rules in the module
    docstring); ``keep`` narrows the negatives to some of the tree's pairs (``db export``'s
    selection). A pure function: the tree is read, never changed."""
    pairs = [p for p in tree_pairs(tree, config) if keep is None or keep(p)]
    negatives = negatives_by_turn(pairs)
    preferred = preferred_nodes(tree, config.q_min, config.n_min)
    out = EscProDialogues()
    for leaf in tree:
        if not (leaf.ended and leaf.path in preferred):
            continue
        made = path_dialogue(tree, leaf, negatives)
        if isinstance(made, str):
            out.skipped.append({"tree_id": tree.tree_id, "path": leaf.path, "reason": made})
            continue
        out.entries.append(made[0])
        out.provenance.append(made[1])
    return out


def provenance_path(out: Path) -> Path:
    """The sidecar beside ``out``: ``dialogues.json`` -> ``dialogues.provenance.jsonl``."""
    return out.with_name(f"{out.stem if out.suffix else out.name}.provenance.jsonl")


def write_esc_pro(out: Path, dialogues: EscProDialogues) -> Path:
    """The JSON list (UTF-8, non-ASCII kept) and its provenance sidecar, each written to a temporary
    name and renamed, so a failed write never leaves a half-written file; returns the sidecar."""
    sidecar = provenance_path(out)
    texts = {out: json.dumps(dialogues.entries, ensure_ascii=False, indent=2) + "\n",
             sidecar: "".join(json.dumps({"index": i, **p}, ensure_ascii=False) + "\n"
                              for i, p in enumerate(dialogues.provenance))}
    if not out.parent.is_dir():
        raise ValueError(f"cannot write {str(out)!r}: folder {str(out.parent)!r} does not exist")
    for path in texts:
        if path.is_dir():
            raise ValueError(f"{str(path)!r} is a folder; --out must name a file for format {FORMAT}")
    for path, text in texts.items():
        tmp = path.with_name(path.name + ".partial")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return sidecar
