"""The benchmark's items, near-duplicate removal, balancing and export (``carealign factbench export``).

The items are the accepted variants (by their latest round's decision) and their correct sources,
as MedFact-schema items (ids ``cand-N`` for a variant, ``src-N`` for a source item); mining
(``mining.py``) scores the same items. Export keeps undropped items, removes near-duplicates
(word/CJK-bigram Jaccard, as the rubric writer's example choice) among sources (a duplicate source
takes its variants with it) and among variants of different sources, balances correct and
erroneous texts, stratified by error type and difficulty, and writes MedFact JSONL (every line a
valid ``FactCheckItem``) plus ``FILE.provenance.jsonl`` (source id, injector model and call, filter
verdicts, reviews, mining).
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.text_similarity import jaccard, shingles
from benchmarks.datasets.factcheck import FactCheckItem
from store import Store
from store.factbench import FILTER_KIND, REVIEW_KIND, SPAN_CRITERION, accepted_variants, latest_mining
from store.records import normalise_text


@dataclass
class BenchItem:
    item: FactCheckItem
    source_key: str  # src-N of the source (the variant's own source, or itself)
    provenance: dict[str, Any] = field(default_factory=dict)


def _carry(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: payload[k] for k in ("specialty", "writing_style", "lang") if payload.get(k) is not None}


def benchmark_items(store: Store) -> list[BenchItem]:
    """Accepted variants (by their latest round's decision) and their sources, as MedFact items."""
    out: list[BenchItem] = []
    sources: dict[int, BenchItem] = {}
    for a in accepted_variants(store):
        cand, item, rows, cid = a.candidate, a.item, a.judgments, a.candidate.id
        span = next(j for j in rows if j.criterion == SPAN_CRITERION)
        inj, payload = span.details["injection"], item.payload
        src_key = f"src-{item.id}"
        if item.id not in sources:
            sources[item.id] = BenchItem(FactCheckItem.model_validate({
                "id": src_key, "text": payload["text"], "label": "correct", "sentences": payload["sentences"],
                "source": f"factbench:{item.external_id or item.id}", **_carry(payload)}), src_key,
                {"kind": "source", "source_item_id": item.id, "source_id": item.external_id,
                 "source_file": item.source})
            out.append(sources[item.id])
        out.append(BenchItem(FactCheckItem.model_validate({
            "id": f"cand-{cid}", "text": cand.text, "label": "error", "sentences": span.details["sentences"],
            "error_sentence_id": inj["sentence_id"], "error_span": inj["replacement"],
            "error_start": inj["variant_start"], "error_end": inj["variant_end"], "correction": inj["correction"],
            "error_type": span.details["error_type"], "source": f"factbench:{item.external_id or item.id}",
            **_carry(payload)}), src_key, {
            "kind": "variant", "candidate_id": cid, "source_item_id": item.id, "source_id": item.external_id,
            "source_file": item.source, "injector_model": cand.model, "injector_call_id": cand.llm_call_id,
            "injection": inj, "accepted_in_round": a.decision.details["round"],
            "filter_verdicts": [{"criterion": j.criterion, "met": j.met, "reason": j.reason,
                                 "judge_model": j.judge_model, "round": j.details.get("round")}
                                for j in rows if j.criterion_kind == FILTER_KIND],
            "review": [{"criterion": j.details["criterion_id"], "agree": j.details["agree"], "met": j.met,
                        "note": j.reason, "reviewer": j.details["reviewer"],
                        "round": j.details["review_round"]} for j in rows if j.criterion_kind == REVIEW_KIND]}))
    return out


# -- dedup, balance, export -----------------------------------------------------------------------
def near_duplicates(items: list[BenchItem], threshold: float, same_group_ok: bool) -> set[str]:
    """Ids of items that repeat an earlier one: the same normalised text, or Jaccard similarity at
    least ``threshold`` (``agents.text_similarity``, its word / CJK-bigram shingles computed once per
    text, since the comparison is pairwise); with ``same_group_ok``, variants
    of one source never count as repeats of each other."""
    dropped: set[str] = set()
    kept: list[tuple[BenchItem, str, set]] = []
    for it in items:
        norm, grams = normalise_text(it.item.text), shingles(it.item.text)
        for other, other_norm, other_grams in kept:
            if other_norm == norm:
                break
            if same_group_ok and other.source_key == it.source_key:
                continue
            if jaccard(grams, other_grams) >= threshold:
                break
        else:
            kept.append((it, norm, grams))
            continue
        dropped.add(it.item.id)
    return dropped


def stratified(items: list[BenchItem], n: int, rng: random.Random) -> list[BenchItem]:
    """``n`` items taken round-robin across strata (error type x difficulty), shuffled within each."""
    groups: dict[tuple[str, str], list[BenchItem]] = defaultdict(list)
    for it in items:
        groups[(it.item.error_type or "", it.item.difficulty or "")].append(it)
    for g in groups.values():
        rng.shuffle(g)
    order = sorted(groups)
    out: list[BenchItem] = []
    while len(out) < n:
        for key in order:
            if groups[key] and len(out) < n:
                out.append(groups[key].pop())
    return out


@dataclass
class ExportSummary:
    candidates: int
    dropped_easy: int
    duplicates: int
    written_correct: int
    written_error: int
    path: Path
    provenance_path: Path
    strata: dict[str, int]


def export(store: Store, out: Path, *, threshold: float = 0.9, seed: int = 0, require_mined: bool = False,
           balance: bool = True) -> ExportSummary:
    items = benchmark_items(store)
    mined = latest_mining(store)
    kept, easy = [], 0
    for it in items:
        m = mined.get(it.item.id)
        if m is None and require_mined:
            continue
        if m is not None and m["dropped"]:
            easy += 1
            continue
        if m is not None:
            it.item.difficulty = str(m["difficulty"])
            it.provenance["mining"] = m
        kept.append(it)
    sources = [it for it in kept if it.item.label == "correct"]
    dup_sources = near_duplicates(sources, threshold, False)
    dup_keys = {it.source_key for it in sources if it.item.id in dup_sources}
    variants = [it for it in kept if it.item.label == "error" and it.source_key not in dup_keys]
    dup_variants = near_duplicates(variants, threshold, True)
    correct = [it for it in sources if it.item.id not in dup_sources]
    errors = [it for it in variants if it.item.id not in dup_variants]
    with_source = sum(1 for it in kept if it.item.label == "error" and it.source_key in dup_keys)
    duplicates = len(dup_sources) + len(dup_variants) + with_source
    rng = random.Random(seed)
    if balance:
        n = min(len(correct), len(errors))
        correct, errors = stratified(correct, n, rng), stratified(errors, n, rng)
    chosen = sorted(correct + errors, key=lambda it: it.item.id)
    out.parent.mkdir(parents=True, exist_ok=True)
    prov_path = out.with_name(out.name + ".provenance.jsonl") if out.suffix != ".jsonl" else \
        out.with_name(out.stem + ".provenance.jsonl")
    with open(out, "w", encoding="utf-8") as fh, open(prov_path, "w", encoding="utf-8") as ph:
        for it in chosen:
            fh.write(json.dumps(it.item.model_dump(mode="json", exclude_none=True), ensure_ascii=False) + "\n")
            ph.write(json.dumps({"id": it.item.id, **it.provenance}, ensure_ascii=False, default=str) + "\n")
    strata: dict[str, int] = defaultdict(int)
    for it in errors:
        strata[f"{it.item.error_type} / difficulty {it.item.difficulty or '-'}"] += 1
    return ExportSummary(len(items), easy, duplicates, len(correct), len(errors), out, prov_path, dict(strata))
