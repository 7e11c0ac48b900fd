"""The esc-search graph's nodes: seed the tree, start the search, one MCTS iteration per step,
finish the search, extract the pairs.

The tree is saved after every whole iteration (``MCTS.step``), so an interrupted or failed item
resumes from its last iteration. The live ``MCTS`` of an item is kept here between steps, keyed by
(run, item), and dropped when the item's search finishes or fails.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from agents.engine import CallContext, LLMEngine
from agents.errors import LLMCallFailed
from agents.esc import StrategySet, load_strategy_set
from agents.prompts import prompt_hashes
from benchmarks.datasets.sentences import detect_lang
from graphs.esc_search.configuration import EscSearchConfig
from graphs.esc_search.domain import EscDomain, chat_prompt, max_depth, pair_members, search_config, tagged, tree_pairs
from graphs.esc_search.seed import seed_tree
from graphs.esc_search.state import EscState
from mcts import MCTS, CallCounter, SQLNodeStore, Tree
from store import Store
from store.lookups import item_payload
from store.records import add_pairs, sha256_of

PROMPTS = ("esc_strategist", "esc_supporter", "esc_supporter_multi", "esc_seeker", "esc_judge")


def same_model(a: LLMEngine, b: LLMEngine) -> bool:
    return a.model == b.model and getattr(a.backend, "base_url", None) == getattr(b.backend, "base_url", None)


@dataclass
class EscDeps:
    """What the nodes run against: the store, the engines, the settings, the run's seed, the dataset."""

    store: Store
    supporter: LLMEngine  # the generator: strategist, supporter and seeker
    judge: LLMEngine
    config: EscSearchConfig
    seed: int = 0
    dataset: str = ""

    def __post_init__(self) -> None:
        self.strategies: StrategySet = load_strategy_set(self.config.strategy_set)
        if same_model(self.supporter, self.judge):
            warnings.warn(f"esc-search: the judge and the supporter are the same model ({self.judge.model}): it "
                          "scores its own turns; set --judge-model / --judge-base-url for an independent judge",
                          stacklevel=3)  # the caller of the generated __init__

    @property
    def tree_key(self) -> str:
        """What shapes a tree: the same key (and item) means the same tree, resumed or continued."""
        return sha256_of({
            "kind": "esc-search", "dataset": self.dataset, "supporter": [self.supporter.model,
                                                                         self.supporter.request_params()],
            "judge": [self.judge.model, self.judge.request_params()],
            "settings": self.config.tree_shaping(self.seed),
            "strategies": self.strategies.digest(), "prompts": [prompt_hashes(p) for p in PROMPTS],
        })[:32]

    @property
    def job_key(self) -> str:
        """The tree key plus the budgets: a larger budget is a new job that continues the same trees."""
        c = self.config
        return sha256_of([self.tree_key, c.iterations, c.early_stop_patience, c.max_llm_calls])[:32]

    def tree_id(self, item_id: int) -> str:
        return f"esc-{sha256_of([self.tree_key, item_id])[:40]}"


def seed_language(tree: Tree) -> str:
    """The language of the seed dialogue (its persona and opening, the real conversation's words),
    which the pairs continue, whatever language the generated turns came out in."""
    persona = tree.root.state.get("persona") or {}
    return detect_lang(" ".join([*(str(v) for v in persona.values()), str(tree.root.state.get("opening", ""))]))


def pair_rows(deps: EscDeps, tree: Tree, run_id: str, item_id: int) -> tuple[list[dict[str, Any]], int]:
    """Preference-pair rows of a tree (trl conversational), and how many had no prompt to give."""
    c, rows, empty = deps.config, [], 0
    for p in tree_pairs(tree, c):
        prompt = chat_prompt(p.preferred.parent)
        if not prompt:
            empty += 1
            continue
        ch, r = p.preferred, p.rejected
        rows.append({
            "kind": "esc", "run_id": run_id, "item_id": item_id, "prompt": prompt, "chosen": tagged(ch),
            "rejected": tagged(r), "margin": p.margin,
            "language": seed_language(tree),
            "margins": {"q": p.margin, "chosen_q": ch.value, "chosen_n": ch.visits, "rejected_q": r.value,
                        "rejected_n": r.visits},
            "provenance": {
                "tree_id": tree.tree_id, "tree_key": deps.tree_key, "parent_path": p.parent_path,
                "chosen_path": ch.path, "rejected_path": r.path, "chosen_strategy": ch.state["strategy"],
                "rejected_strategy": r.state["strategy"], "chosen_gold": ch.fixed,
                "llm_call_ids": {"chosen": list(ch.llm_call_ids), "rejected": list(r.llm_call_ids)},
                "strategy_set": deps.strategies.name, "supporter_model": deps.supporter.model,
                "judge_model": deps.judge.model, "thresholds": {"q_min": c.q_min, "n_min": c.n_min,
                                                                "margin": c.margin, "rejected_rule": c.rejected_rule,
                                                                "rejected_q_max": c.rejected_q_max}},
        })
    return rows, empty


class EscNodes:
    """Node functions bound to their dependencies (read only when a node runs, so the graph can be
    built without them to be drawn), and the live searches of the items in flight."""

    def __init__(self, deps: EscDeps | None):
        self.deps = deps
        self.live: dict[tuple[str, int], MCTS] = {}

    @cached_property
    def trees(self) -> SQLNodeStore:
        return SQLNodeStore(self.deps.store)

    def seed_tree(self, state: EscState) -> dict[str, Any]:
        """A new tree from the seed dialogue, unless this item's tree is stored already (resume)."""
        d, item_id = self.deps, state["item_id"]
        tree_id = d.tree_id(item_id)
        if not self.trees.exists(tree_id):
            self.trees.save(seed_tree(tree_id, item_payload(d.store, item_id), d.config.gold_turns,
                                      run_id=state["run_id"], item_id=item_id))
        return {"tree_id": tree_id}

    async def start_search(self, state: EscState) -> dict[str, Any]:
        """Load the tree and begin a run of the search on it (nothing is asked of a model yet)."""
        d = self.deps
        tree = self.trees.load_tree(state["tree_id"])
        counter = CallCounter()
        ctx = CallContext(run_id=state["run_id"], item_id=state["item_id"])
        domain = EscDomain(d.supporter, d.judge, d.strategies, d.config, d.seed, counter, ctx,
                           max_depth(d.config, tree))
        search = MCTS(domain, tree, search_config(d.config, d.seed, tree), node_store=self.trees, counter=counter,
                      qualifies=pair_members(tree, d.config))
        search.begin()
        self.live[state["run_id"], state["item_id"]] = search
        return {"stop_reason": search.stop_reason()}

    async def mcts_iteration(self, state: EscState) -> dict[str, Any]:
        """Select, expand, simulate, backpropagate, then save the tree: one step of the loop."""
        key = (state["run_id"], state["item_id"])
        search = self.live[key]
        try:
            await search.step()
        except LLMCallFailed as exc:
            del self.live[key]
            done = search.tree.meta.iterations  # the tree is stored after every whole iteration
            return {"failures": [f"search[{state['tree_id']} iteration {done + 1}]: {exc.reason}"],
                    "outcome": (f"partial: search failed after {done} iterations (a re-run resumes the tree)"
                                if done else "search failed")}
        except BaseException:
            del self.live[key]
            raise
        return {"stop_reason": search.stop_reason()}

    async def finish_search(self, state: EscState) -> dict[str, Any]:
        """A budget is spent: report the search and let it go."""
        search = self.live.pop((state["run_id"], state["item_id"]))
        report = search.report(state["stop_reason"])
        return {"search": {"iterations": report.iterations, "this_run": report.iterations_this_run,
                           "llm_calls": report.llm_calls, "calls_this_run": search.counter.count,
                           "nodes": report.nodes, "stop_reason": report.stop_reason}}

    def extract_pairs(self, state: EscState) -> dict[str, Any]:
        d = self.deps
        rows, empty = pair_rows(d, self.trees.load_tree(state["tree_id"]), state["run_id"], state["item_id"])
        with d.store.session() as s:
            new = add_pairs(s, rows)
        note = f" ({empty} without a prompt skipped)" if empty else ""
        return {"pairs": len(rows), "outcome": f"{len(rows)} pairs, {new} new{note}" if rows else f"no pair{note}"}
