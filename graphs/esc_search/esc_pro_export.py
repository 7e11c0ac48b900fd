"""``carealign db export --kind esc --format esc-pro``: ESC-Pro dialogues (``esc_pro.py``) from the
stored trees of the selected pairs.

The selection is ``db export``'s own (kind, run, minimum margin, language). Each tree that a
selected pair came from is loaded from ``tree_nodes`` and converted with the thresholds recorded in
its pairs' provenance (``q_min``, ``n_min``, ``margin``: part of the tree's key, so one set per
tree); a turn's negatives are narrowed to the selected pairs, so CSO's converters read back the
pairs ``db export`` would write. A stored pair that the tree no longer supports (a later, longer
search of the same tree changed its Q or N) is not written, and counted. Trees are reached through
their pairs: a tree without a selected pair is not exported, and a pair stored once for several trees
(the same texts; ``pair_hash``) is a negative in the dialogues of the tree its provenance names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphs.esc_search.configuration import EscSearchConfig
from graphs.esc_search.esc_pro import EscProDialogues, tree_to_esc_pro, write_esc_pro
from mcts import SQLNodeStore
from store import Store, StoreError
from store.esc_export import selected_pair_origins
from store.export import PairFilter


@dataclass
class StoredEscPro:
    """What an export wrote, and what of the selection it could not."""

    dialogues: EscProDialogues
    trees: int
    selected_pairs: int
    written_pairs: int  # distinct selected pairs that are a (turn, negative) of some dialogue
    sidecar: Path

    @property
    def unwritten_pairs(self) -> int:
        return self.selected_pairs - self.written_pairs

    def summary(self, out: Path) -> str:
        d = self.dialogues
        lines = [f"wrote {len(d.entries):,} dialogues ({d.assistant_turns:,} supporter turns, {d.negatives:,} "
                 f"negatives) from {self.trees:,} trees to {out} (esc-pro); provenance in {self.sidecar}",
                 f"{self.written_pairs:,} of the {self.selected_pairs:,} selected pairs are a turn and one of its "
                 "negatives"]
        if self.unwritten_pairs:
            lines.append(f"{self.unwritten_pairs:,} selected pairs are in no dialogue: their trees as stored now no "
                         "longer make them pairs (a later search of the same tree changed Q or N)"
                         + (", or they lie on a kept path left out below" if d.skipped else ""))
        if d.skipped:
            first = d.skipped[0]
            lines.append(f"{len(d.skipped):,} kept paths left out (first: {first['path']} of {first['tree_id']}: "
                         f"{first['reason']})")
        return "\n".join(lines)


def check_esc_pro_options(kind: str | None, shape: str, with_metadata: bool) -> None:
    """``--format esc-pro`` writes whole dialogues of ESC trees: only ``--kind esc``, and no pair shape."""
    if kind != "esc":
        raise StoreError("--format esc-pro writes emotional-support dialogues: it needs --kind esc "
                         f"(got {'no --kind' if kind is None else '--kind ' + kind})")
    if shape != "preference" or with_metadata:
        raise StoreError("--format esc-pro writes whole dialogues: --shape and --with-metadata do not apply "
                         "(ids, Q and N are in the .provenance.jsonl file beside --out)")


def _thresholds(tree_id: str, rows: list[dict[str, Any]]) -> EscSearchConfig:
    found = {json.dumps(r["thresholds"], sort_keys=True) for r in rows}
    t = rows[0]["thresholds"]
    if len(found) != 1 or not isinstance(t, dict) or not {"q_min", "n_min", "margin"} <= set(t):
        raise StoreError(f"tree {tree_id!r}: its pairs (ids {rows[0]['pair_id']}...) do not record one set of "
                         f"thresholds (q_min, n_min, margin) in their provenance: {sorted(found)}")
    # trees from before the rejected rule was a setting were paired by the margin rule
    return EscSearchConfig(q_min=t["q_min"], n_min=t["n_min"], margin=t["margin"],
                           rejected_rule=t.get("rejected_rule", "margin"), rejected_q_max=t.get("rejected_q_max", 0.5))


def export_stored_esc_pro(store: Store, flt: PairFilter, out: Path) -> StoredEscPro:
    """Write the ESC-Pro dialogues of the selected pairs' trees to ``out`` (and its provenance sidecar)."""
    check_esc_pro_options(flt.kind, "preference", False)
    origins = selected_pair_origins(store, flt)
    if not origins:
        selection = ", ".join(f"{k}={v}" for k, v in flt.__dict__.items() if v is not None)
        raise StoreError(f"no pairs match the selection ({selection}); nothing written to {str(out)!r}")
    by_tree: dict[str, list[dict[str, Any]]] = {}
    for row in origins:
        if not row["tree_id"]:
            raise StoreError(f"esc pair {row['pair_id']} has no tree_id in its provenance")
        by_tree.setdefault(row["tree_id"], []).append(row)
    nodes = SQLNodeStore(store)
    result = EscProDialogues()
    written: set[tuple[str, str, str]] = set()
    for tree_id, rows in by_tree.items():
        if not nodes.exists(tree_id):
            raise StoreError(f"tree {tree_id!r} of pair {rows[0]['pair_id']} is not in tree_nodes")
        wanted = {(r["chosen_path"], r["rejected_path"]) for r in rows}
        got = tree_to_esc_pro(nodes.load_tree(tree_id), _thresholds(tree_id, rows),
                              keep=lambda p, wanted=wanted: (p.preferred.path, p.rejected.path) in wanted)
        written |= {(tree_id, t["path"], n["path"]) for p in got.provenance for t in p["turns"] for n in t["negative"]}
        result.extend(got)
    if not result.entries:
        raise StoreError(f"the {len(by_tree)} trees of the selected pairs have no kept end-to-end path; "
                         f"nothing written to {str(out)!r}")
    sidecar = write_esc_pro(out, result)
    return StoredEscPro(result, len(by_tree), len(origins), len(written), sidecar)
