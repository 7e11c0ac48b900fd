"""``carealign generate``: N candidate answers per instruction, judged, best vs worst stored as a pair.

    START -> write_candidates (N answers at once; exact duplicates dropped)
          -> judge_candidates (each distinct candidate at once) -> select_pair -> END

With fewer than two distinct candidates ``judge_candidates`` is skipped: there is nothing to pair.
Each node fans out itself (``graphs.common.fan_out``), not with one LangGraph task per branch: at a
fast model server those tasks cost more CPU than the requests they wait for.

The state holds ids and scores, not texts: every text lives in the store, written by the node that
produced it (``nodes.py``), so an interrupted run loses nothing and a re-run is answered from the
request cache. Settings: ``configuration.py`` (``[generate]``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langgraph.graph import END, START, StateGraph

from agents.prompts import prompt_hashes
from agents.roles import AnswerGenerator
from graphs.common.candidates import pairing_outcome
from graphs.common.runner import ItemOutcome, WorkflowReport, run_workflow
from graphs.generate.nodes import GenerateDeps, GenerateNodes
from graphs.generate.state import GenerateState
from store.records import sha256_of


def build_graph(deps: GenerateDeps | None = None):
    """The whole flow; without ``deps`` it can be drawn (``carealign graph generate``) but not run."""
    n = GenerateNodes(deps)

    def judge_or_skip(state: GenerateState) -> str:
        return "judge_candidates" if len(state.get("distinct_ids", [])) >= 2 else "select_pair"

    g = StateGraph(GenerateState)
    g.add_node("write_candidates", n.write_candidates)
    g.add_node("judge_candidates", n.judge_candidates)
    g.add_node("select_pair", n.select_pair)
    g.add_edge(START, "write_candidates")
    g.add_conditional_edges("write_candidates", judge_or_skip, ["judge_candidates", "select_pair"])
    g.add_edge("judge_candidates", "select_pair")
    g.add_edge("select_pair", END)
    return g.compile()


def job_key_for(deps: GenerateDeps, dataset: str) -> str:
    """What shapes this job's output; the same key means the same job (resume, share, skip)."""
    return sha256_of({
        "kind": "generate", "dataset": dataset, "generator": deps.generator.model,
        "generator_params": deps.generator.request_params(), "judge": deps.judge.model,
        "rubric": [c.__dict__ for c in deps.rubric.criteria],
        "settings": deps.config.shaping(exclude={"rubric"}, seed=deps.seed),
        "prompts": [prompt_hashes(AnswerGenerator.prompt), prompt_hashes("judge"), prompt_hashes("judge_criterion")],
    })[:32]


async def run_generate(deps: GenerateDeps, records: list[dict[str, Any]], dataset: str, run_config: dict[str, Any],
                       *, redo: bool = False, on_item: Callable[[ItemOutcome], None] | None = None) -> WorkflowReport:
    """Store the inputs, queue them under this job, and run the graph over the queue.

    Items already done by an earlier run of the same job are skipped; failed ones are retried;
    ``redo`` queues every item again (used with the cache off)."""
    return await run_workflow(
        deps.store, "generate", job_key_for(deps, dataset), build_graph(deps), records, dataset, run_config,
        pairing_outcome, {"generator": deps.generator, "judge": deps.judge},
        config=deps.config, redo=redo,
        on_item=on_item)
