"""``carealign generate``: N candidate answers per instruction, judged, best vs worst stored as a pair.

    START -> generate_candidate (x N, fan-out) -> dedupe_candidates
          -> judge_candidate (x unique candidates, fan-out) -> select_pair -> END

The state holds ids and scores, not texts: every text lives in the store, written by the node that
produced it (``nodes.py``), so an interrupted run loses nothing and a re-run is answered from the
request cache. Settings: ``configuration.py`` (``[generate]``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from agents.prompts import prompt_hashes
from agents.roles import AnswerGenerator
from graphs.common.candidates import pairing_outcome
from graphs.common.runner import ItemOutcome, WorkflowReport, run_workflow
from graphs.generate.nodes import GenerateDeps, GenerateNodes
from graphs.generate.state import GenerateState, JudgeTask, SampleTask
from store.records import sha256_of


def build_graph(deps: GenerateDeps | None = None):
    """The whole flow; without ``deps`` it can be drawn (``carealign graph generate``) but not run."""
    n = GenerateNodes(deps)

    def fan_out_samples(state: GenerateState) -> list[Send]:
        return [Send("generate_candidate", SampleTask(run_id=state["run_id"], item_id=state["item_id"],
                                                      sample_index=i))
                for i in range(n.deps.config.n_candidates)]

    def fan_out_judging(state: GenerateState) -> list[Send] | str:
        if len(state.get("distinct_ids", [])) < 2:
            return "select_pair"
        return [Send("judge_candidate", JudgeTask(run_id=state["run_id"], item_id=state["item_id"],
                                                  candidate_id=cid))
                for cid in state["distinct_ids"]]

    g = StateGraph(GenerateState)
    g.add_node("generate_candidate", n.generate_candidate)
    g.add_node("dedupe_candidates", n.dedupe_candidates)
    g.add_node("judge_candidate", n.judge_candidate)
    g.add_node("select_pair", n.select_pair)
    g.add_conditional_edges(START, fan_out_samples, ["generate_candidate"])
    g.add_edge("generate_candidate", "dedupe_candidates")
    g.add_conditional_edges("dedupe_candidates", fan_out_judging, ["judge_candidate", "select_pair"])
    g.add_edge("judge_candidate", "select_pair")
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
