"""Hard-sample mining, near-duplicate removal, balancing and export of the fact-check benchmark.

Mining (``carealign factbench mine``) runs a panel of checkers (``graphs.factcheck`` methods on one
or more models) over the accepted variants AND their correct sources, as MedFact-schema items in
dataset ``factbench-mine`` (external ids ``cand-N`` for a variant, ``src-N`` for a source item).
Per item it stores a ``bench_results`` row (bench ``factbench_mine``, key = the external id,
metrics ``{checkers{name: right}, failed, fail_fraction, difficulty, dropped}``): difficulty is
``1 + ceil(4 * fail fraction)`` (1 = every checker right, 5 = every checker wrong), and an item
every checker gets right is dropped when ``drop_easy`` is set.

Export keeps undropped items, removes near-duplicates (word/CJK-bigram Jaccard, as the rubric
writer's example choice) among sources (a duplicate source takes its variants with it) and among
variants of different sources, balances correct and erroneous texts, stratified by error type and
difficulty, and writes MedFact JSONL (every line a valid ``FactCheckItem``) plus
``FILE.provenance.jsonl`` (source id, injector model and call, filter verdicts, reviews, mining).
"""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from agents.rubric_writer import word_grams
from benchmarks.factcheck_data import FactCheckItem
from graphs.factbench import DECISION_KIND, FILTER_KIND, SPAN_CRITERION
from graphs.factbench_review import REVIEW_KIND
from store import Store, insert_ignore
from store.models import BenchResult, Candidate, CheckAnswer, Item, Judgment
from store.records import create_run, finish_run, normalise_text

MINE_DATASET, MINE_BENCH = "factbench-mine", "factbench_mine"


@dataclass
class BenchItem:
    item: FactCheckItem
    source_key: str  # src-N of the source (the variant's own source, or itself)
    provenance: dict[str, Any] = field(default_factory=dict)


def _carry(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: payload[k] for k in ("specialty", "writing_style", "lang") if payload.get(k) is not None}


def benchmark_items(store: Store) -> list[BenchItem]:
    """Accepted variants (by their latest round's decision) and their sources, as MedFact items."""
    with store.session() as s:
        latest: dict[int, Judgment] = {}
        for j in s.scalars(select(Judgment).where(Judgment.criterion_kind == DECISION_KIND).order_by(Judgment.id)):
            if j.candidate_id not in latest or j.details["round"] >= latest[j.candidate_id].details["round"]:
                latest[j.candidate_id] = j
        out: list[BenchItem] = []
        sources: dict[int, BenchItem] = {}
        for cid, decision in sorted(latest.items()):
            if not decision.met:
                continue
            cand = s.get(Candidate, cid)
            item = s.get(Item, cand.item_id)
            rows = list(s.scalars(select(Judgment).where(Judgment.candidate_id == cid).order_by(Judgment.id)))
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
                "injection": inj, "accepted_in_round": decision.details["round"],
                "filter_verdicts": [{"criterion": j.criterion, "met": j.met, "reason": j.reason,
                                     "judge_model": j.judge_model, "round": j.details.get("round")}
                                    for j in rows if j.criterion_kind == FILTER_KIND],
                "review": [{"criterion": j.details["criterion_id"], "agree": j.details["agree"], "met": j.met,
                            "note": j.reason, "reviewer": j.details["reviewer"],
                            "round": j.details["review_round"]} for j in rows if j.criterion_kind == REVIEW_KIND]}))
    return out


# -- mining ---------------------------------------------------------------------------------------
def difficulty_of(failed: int, total: int) -> int:
    """1 when every checker is right, 5 when every checker fails, evenly between."""
    return 1 + math.ceil(4 * failed / total)


def checker_right(answer: CheckAnswer, item: dict[str, Any], require_location: bool) -> bool:
    if answer.verdict != item["label"]:
        return False
    return item["label"] == "correct" or not require_location or answer.sentence_id == item["error_sentence_id"]


def score_mining(store: Store, job_keys: dict[str, str], *, drop_easy: bool, require_location: bool,
                 run_config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per mined item (external id): which checkers (name -> job key) got it right, its difficulty,
    and whether it is dropped; stored as ``factbench_mine`` bench results of a new run."""
    with store.session() as s:
        items = {i.id: i for i in s.scalars(select(Item).where(Item.dataset == MINE_DATASET))}
        answers: dict[int, dict[str, CheckAnswer]] = defaultdict(dict)
        for name, key in job_keys.items():
            for a in s.scalars(select(CheckAnswer).where(CheckAnswer.job_key == key, CheckAnswer.role == "final")):
                answers[a.item_id][name] = a
        results, rows = {}, []
        run_id = create_run(s, "factbench-mine", {**run_config, "checkers": job_keys})
        for item_id, by_checker in sorted(answers.items()):
            item = items[item_id]
            right = {n: checker_right(a, item.payload, require_location) for n, a in sorted(by_checker.items())}
            failed = sum(not r for r in right.values())
            m = {"checkers": right, "failed": failed, "fail_fraction": failed / len(right),
                 "difficulty": difficulty_of(failed, len(right)), "dropped": drop_easy and failed == 0}
            results[item.external_id] = m
            rows.append({"run_id": run_id, "bench": MINE_BENCH, "result_key": item.external_id, "item_id": item_id,
                         "model": ",".join(sorted(job_keys)), "metrics": m,
                         "llm_call_ids": [a.llm_call_id for a in by_checker.values() if a.llm_call_id is not None]})
        insert_ignore(s, BenchResult, rows, ["run_id", "bench", "result_key"])
        finish_run(s, run_id, "completed", {"items": len(rows), "dropped": sum(r["dropped"] for r in results.values())})
    return results


def latest_mining(store: Store) -> dict[str, dict[str, Any]]:
    with store.session() as s:
        return {r.result_key: r.metrics for r in s.scalars(select(BenchResult).where(BenchResult.bench == MINE_BENCH)
                                                           .order_by(BenchResult.id))}


# -- dedup, balance, export -----------------------------------------------------------------------
def near_duplicates(items: list[BenchItem], threshold: float, same_group_ok: bool) -> set[str]:
    """Ids of items that repeat an earlier one: the same normalised text, or Jaccard similarity at
    least ``threshold`` (the measure of ``agents.rubric_writer.similarity``, on its word / CJK-bigram
    sets computed once per text, since the comparison is pairwise); with ``same_group_ok``, variants
    of one source never count as repeats of each other."""
    dropped: set[str] = set()
    kept: list[tuple[BenchItem, str, set[str]]] = []
    for it in items:
        norm, grams = normalise_text(it.item.text), word_grams(it.item.text)
        for other, other_norm, other_grams in kept:
            if other_norm == norm:
                break
            if same_group_ok and other.source_key == it.source_key:
                continue
            if grams and other_grams and len(grams & other_grams) / len(grams | other_grams) >= threshold:
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
