"""Pairs from the store, a leak-free split, and the datasets each trl trainer expects.

The split is by group, not by pair: every pair of one item (an instruction, or a seed dialogue
whose turns give many ESC pairs) and every pair with the same prompt form one group (union-find
over items and prompt hashes), and a salted sha256 of the group's key decides its side. So the split
never depends on storage order, and no prompt or dialogue is seen on both sides.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from store import Store
from store import training as queries
from store.export import to_record
from store.records import canonical_json, sha256_of
from training.data_config import DataConfig


@dataclass(frozen=True)
class SelectedPair:
    id: int
    kind: str
    run_id: str
    item_id: int | None
    prompt: list[dict[str, Any]]
    chosen: str
    rejected: str
    chosen_candidate_id: int | None
    rejected_candidate_id: int | None
    margin: float
    language: str | None
    provenance: dict[str, Any] = field(default_factory=dict)

    def export_row(self) -> tuple[Any, ...]:
        """The row shape of ``store.export.COLUMNS``, so records come from the export's own shaper."""
        return (self.id, self.kind, self.run_id, self.item_id, json.dumps(self.prompt, ensure_ascii=False),
                self.chosen, self.rejected, self.margin, self.language)

    @property
    def prompt_hash(self) -> str:
        return sha256_of(self.prompt)


@dataclass
class Split:
    """Three disjoint sides: ``eval`` is the test split (reported figures), ``calibration`` is empty
    unless the split was asked for one (reward models' thresholds)."""

    train: list[SelectedPair]
    eval: list[SelectedPair]
    calibration: list[SelectedPair] = field(default_factory=list)

    @property
    def train_ids(self) -> list[int]:
        return sorted(p.id for p in self.train)

    @property
    def eval_ids(self) -> list[int]:
        return sorted(p.id for p in self.eval)

    @property
    def calibration_ids(self) -> list[int]:
        return sorted(p.id for p in self.calibration)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "calibration": len(self.calibration), "test": len(self.eval)}


def select_pairs(store: Store, cfg: DataConfig) -> list[SelectedPair]:
    """Pairs matching the filters, in id order (``max_pairs`` keeps the first ones)."""
    with store.session() as s:
        found = queries.preference_pairs(s, kinds=cfg.kinds, run_ids=cfg.run_ids, min_margin=cfg.min_margin,
                                         language=cfg.language, limit=cfg.max_pairs)
        return [SelectedPair(p.id, p.kind, p.run_id, p.item_id, list(p.prompt), p.chosen, p.rejected,
                             p.chosen_candidate_id, p.rejected_candidate_id, float(p.margin), p.language,
                             dict(p.provenance or {}))
                for p in found]


def split_groups(pairs: list[SelectedPair]) -> dict[int, str]:
    """Pair id -> group key: pairs sharing an item or a prompt are one group (union-find); the key
    is the smallest member name, so it is the same whatever order the pairs come in."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    for p in pairs:
        names = [f"prompt:{p.prompt_hash}"] + ([f"item:{p.item_id}"] if p.item_id is not None else [])
        find(names[0])
        for n in names[1:]:
            union(names[0], n)
    return {p.id: find(f"prompt:{p.prompt_hash}") for p in pairs}


def group_position(group: str, salt: str) -> float:
    """Where a group falls in [0, 1): a salted sha256 of its key."""
    h = int(hashlib.sha256(f"{salt}\0{group}".encode()).hexdigest()[:12], 16)
    return h / float(1 << 48)


def in_eval(group: str, salt: str, fraction: float) -> bool:
    return group_position(group, salt) < fraction


def split_pairs(pairs: list[SelectedPair], cfg: DataConfig, calibration: bool = False) -> Split:
    """Test below ``eval_fraction``, then calibration (only when asked for) up to
    ``eval_fraction + calibration_fraction``, the rest train. The test side is the same with or
    without a calibration split."""
    groups = split_groups(pairs)
    cal_end = cfg.eval_fraction + (cfg.calibration_fraction if calibration else 0.0)
    out = Split([], [], [])
    for p in pairs:
        at = group_position(groups[p.id], cfg.split_salt)
        (out.eval if at < cfg.eval_fraction else out.calibration if at < cal_end else out.train).append(p)
    return out


def load_split(store: Store, cfg: DataConfig, calibration: bool = False) -> Split:
    pairs = select_pairs(store, cfg)
    if not pairs:
        raise ValueError(f"no pairs match the selection (kinds={cfg.kinds}, run_ids={cfg.run_ids}, "
                         f"min_margin={cfg.min_margin}, language={cfg.language})")
    split = split_pairs(pairs, cfg, calibration)
    if not split.train:
        raise ValueError(f"all {len(pairs)} selected pairs fell into the held-out splits ({split.sizes()}); "
                         "lower eval_fraction" + (" or calibration_fraction" if calibration else ""))
    return split


def item_rubrics(store: Store, item_ids: set[int | None]) -> dict[int, dict[str, Any]]:
    """Item id -> the rubric in its payload (items without one are left out)."""
    with store.session() as s:
        return queries.item_rubrics(s, item_ids)


# -- datasets -----------------------------------------------------------------------------------
def preference_records(pairs: list[SelectedPair]) -> list[dict[str, Any]]:
    """Conversational prompt / chosen / rejected (DPOTrainer), shaped by ``store.export``."""
    return [to_record(p.export_row(), "preference", False) for p in pairs]


def sft_records(pairs: list[SelectedPair]) -> list[dict[str, Any]]:
    """Prompt / completion rows from the chosen side, one per distinct (prompt, chosen): trl's SFT
    then trains on the completion only."""
    seen: set[str] = set()
    out = []
    for p in pairs:
        key = canonical_json([p.prompt, p.chosen])
        if key not in seen:
            seen.add(key)
            out.append({"prompt": p.prompt, "completion": [{"role": "assistant", "content": p.chosen}]})
    return out


def prompt_records(pairs: list[SelectedPair], rubrics: dict[int, dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """One GRPO row per distinct prompt that has a rubric: ``prompt`` (messages) and ``rubric`` (its
    JSON text, so every row has the same Arrow type whatever the rubric holds). Returns the rows and
    how many pairs were left out for want of a rubric."""
    seen: set[str] = set()
    rows, missing = [], 0
    for p in pairs:
        rubric = rubrics.get(p.item_id) if p.item_id is not None else None
        if rubric is None:
            missing += 1
            continue
        if p.prompt_hash in seen:
            continue
        seen.add(p.prompt_hash)
        rows.append({"prompt": p.prompt, "rubric": canonical_json(rubric)})
    return rows, missing


def to_dataset(records: list[dict[str, Any]]):
    from datasets import Dataset, disable_progress_bars

    disable_progress_bars()
    if not records:
        raise ValueError("no training rows were built from the selected pairs")
    return Dataset.from_list(records)
