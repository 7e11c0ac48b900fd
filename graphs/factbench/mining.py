"""Hard-sample mining (``carealign factbench mine``): a panel of checkers over the benchmark's items.

The checkers are ``graphs/factcheck`` methods on one or more models, run over the accepted variants
AND their correct sources (``export.benchmark_items``) as items of dataset ``factbench-mine``
(external ids ``cand-N`` for a variant, ``src-N`` for a source item). Per item a ``bench_results``
row (bench ``factbench_mine``, key = the external id, metrics ``{checkers{name: right}, failed,
fail_fraction, difficulty, dropped}``): difficulty is ``1 + ceil(4 * fail fraction)`` (1 = every
checker right, 5 = every checker wrong), and an item every checker gets right is dropped when
``drop_easy`` is set.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from graphs.factbench.configuration import FactbenchConfig
from graphs.factbench.export import benchmark_items
from graphs.factcheck.configuration import FactcheckConfig
from graphs.factcheck.graph import records_of
from store import Store
from store.factbench import mine_items, save_mining
from store.factcheck import final_answers

if TYPE_CHECKING:
    from store.models import CheckAnswer

def checker_config(factcheck: FactcheckConfig, factbench: FactbenchConfig) -> FactcheckConfig:
    """The mining checkers' settings: the fact-checking temperature and tie rule, no 'unsure'
    verdict, locations matched by sentence; items claimed at factbench's pace."""
    return factcheck.with_values(allow_unsure=False, localisation="sentence",
                                 item_concurrency=factbench.item_concurrency, lease_seconds=factbench.lease_seconds)


def mining_records(store: Store) -> list[dict[str, Any]]:
    """The accepted variants and their sources as fact-checking records."""
    items = [b.item for b in benchmark_items(store)]
    if not items:
        raise ValueError("no accepted variant in the store: run `carealign factbench build` first")
    return records_of(items)


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
    items = mine_items(store)
    answers: dict[int, dict[str, CheckAnswer]] = defaultdict(dict)
    for name, key in job_keys.items():
        for a in final_answers(store, key):
            answers[a.item_id][name] = a
    results, rows = {}, []
    for item_id, by_checker in sorted(answers.items()):
        item = items[item_id]
        right = {n: checker_right(a, item.payload, require_location) for n, a in sorted(by_checker.items())}
        failed = sum(not r for r in right.values())
        m = {"checkers": right, "failed": failed, "fail_fraction": failed / len(right),
             "difficulty": difficulty_of(failed, len(right)), "dropped": drop_easy and failed == 0}
        results[item.external_id] = m
        rows.append({"result_key": item.external_id, "item_id": item_id, "model": ",".join(sorted(job_keys)),
                     "metrics": m,
                     "llm_call_ids": [a.llm_call_id for a in by_checker.values() if a.llm_call_id is not None]})
    save_mining(store, {**run_config, "checkers": job_keys}, rows,
                {"items": len(rows), "dropped": sum(r["dropped"] for r in results.values())})
    return results
