"""``carealign bench``: the four evaluation benches, each one graph run over its items as a job.

    rubric (HealthBench scoring, ProMedical pairwise, grader meta-evaluation; PROTOCOLS.md 1, 2):
        START -> sample_answer -> grade_answer -> END        (score)
        START -> judge_pair -> END                          (pairwise)
        START -> grade_completion -> END                    (meta)
        START -> score_pair -> END                          (pairwise, judged by a trained reward model)
    strategy (Kang et al. 2024, PROTOCOLS.md 3):
        START -> choose_strategy -> END
    medication (ChiDrug, PROTOCOLS.md 5):
        START -> answer_item -> END
    medication build (items from drug labels):
        START -> write_item (x task x format, fan-out) -> tally -> END

Every node stores its item's result in ``bench_results``; after the run the newest result of each
input item is summarised and stored as the run's ``summary`` (``results.py``). Nodes:
``*_nodes.py``; state: ``state.py``; settings: ``configuration.py`` (``[bench]``).
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from graphs.bench.medication_build_nodes import MedicationBuildDeps, MedicationBuildNodes, build_summary
from graphs.bench.medication_nodes import MedicationBenchDeps, MedicationNodes
from graphs.bench.results import OnItem, run_bench, run_job
from graphs.bench.reward_model_nodes import RewardModelBenchDeps, RewardModelNodes
from graphs.bench.rubric_nodes import RubricBenchDeps, RubricNodes
from graphs.bench.state import (
    MedicationBenchState,
    MedicationBuildState,
    RubricBenchState,
    StrategyBenchState,
)
from graphs.bench.strategy_nodes import StrategyBenchDeps, StrategyNodes
from graphs.common.runner import WorkflowReport
from store.bench import store_summary

Summary = tuple[WorkflowReport, dict[str, Any] | None]


def build_rubric_graph(deps: RubricBenchDeps | None = None):
    """The rubric bench; the mode (``[bench] rubric_mode``) picks the first node when an item runs."""
    n = RubricNodes(deps)
    first = {"score": "sample_answer", "pairwise": "judge_pair", "meta": "grade_completion"}

    def route(state: RubricBenchState) -> str:
        return first[n.deps.mode]

    def after_answer(state: RubricBenchState) -> str:
        return END if state.get("failures") else "grade_answer"

    g = StateGraph(RubricBenchState)
    g.add_node("sample_answer", n.sample_answer)
    g.add_node("grade_answer", n.grade_answer)
    g.add_node("judge_pair", n.judge_pair)
    g.add_node("grade_completion", n.grade_completion)
    g.add_conditional_edges(START, route, list(first.values()))
    g.add_conditional_edges("sample_answer", after_answer, ["grade_answer", END])
    g.add_edge("grade_answer", END)
    g.add_edge("judge_pair", END)
    g.add_edge("grade_completion", END)
    return g.compile()


def _one_node(state: type, name: str, node: Any):
    """START -> node -> END."""
    g = StateGraph(state)
    g.add_node(name, node)
    g.add_edge(START, name)
    g.add_edge(name, END)
    return g.compile()


def build_strategy_graph(deps: StrategyBenchDeps | None = None):
    return _one_node(StrategyBenchState, "choose_strategy", StrategyNodes(deps).choose_strategy)


def build_reward_model_graph(deps: RewardModelBenchDeps | None = None):
    return _one_node(RubricBenchState, "score_pair", RewardModelNodes(deps).score_pair)


def build_medication_graph(deps: MedicationBenchDeps | None = None):
    return _one_node(MedicationBenchState, "answer_item", MedicationNodes(deps).answer_item)


def build_medication_build_graph(deps: MedicationBuildDeps | None = None):
    n = MedicationBuildNodes(deps)

    def fan_out(state: MedicationBuildState) -> list[Send] | str:
        return [Send("write_item", task) for task in n.write_tasks(state)] or "tally"

    g = StateGraph(MedicationBuildState)
    g.add_node("write_item", n.write_item)
    g.add_node("tally", n.tally)
    g.add_conditional_edges(START, fan_out, ["write_item", "tally"])
    g.add_edge("write_item", "tally")
    g.add_edge("tally", END)
    return g.compile()


async def run_rubric_bench(deps: RubricBenchDeps, records: list[dict[str, Any]], run_config: dict[str, Any], *,
                           redo: bool = False, on_item: OnItem | None = None) -> Summary:
    """Run the bench, then store and return the summary (None when no item has a result)."""
    return await run_bench(deps.job, build_rubric_graph(deps), records, run_config, deps.engines,
                           RubricNodes(deps).summarise, redo=redo, on_item=on_item)


async def run_reward_model_bench(deps: RewardModelBenchDeps, records: list[dict[str, Any]],
                                 run_config: dict[str, Any], *, redo: bool = False,
                                 on_item: OnItem | None = None) -> Summary:
    """The pairwise bench judged by a reward model; stores and returns the summary."""
    return await run_bench(deps.job, build_reward_model_graph(deps), records, run_config, {},
                           RewardModelNodes(deps).summarise, redo=redo, on_item=on_item)


async def run_strategy_bench(deps: StrategyBenchDeps, records: list[dict[str, Any]], run_config: dict[str, Any], *,
                             redo: bool = False, on_item: OnItem | None = None) -> Summary:
    """Run the bench, then store and return the summary (None when no turn has a result)."""
    return await run_bench(deps.job, build_strategy_graph(deps), records, run_config, {"model": deps.model},
                           StrategyNodes(deps).summarise, redo=redo, on_item=on_item)


async def run_medication_bench(deps: MedicationBenchDeps, records: list[dict[str, Any]], run_config: dict[str, Any],
                               *, redo: bool = False, on_item: OnItem | None = None) -> Summary:
    """Run the bench, then store and return the summary (None when no item has a result)."""
    return await run_bench(deps.job, build_medication_graph(deps), records, run_config,
                           {"model": deps.model, "grader": deps.grader}, MedicationNodes(deps).summarise,
                           redo=redo, on_item=on_item)


async def run_medication_build(
    deps: MedicationBuildDeps, records: list[dict[str, Any]], run_config: dict[str, Any], *, redo: bool = False,
    on_item: OnItem | None = None,
) -> tuple[WorkflowReport, dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """Build items; returns the report, the summary (stored), the accepted items (bench format) and
    the rejections (each with its item, reason and result id)."""
    job = deps.job
    report, _, rows = await run_job(job, build_medication_build_graph(deps), records, run_config,
                                    {"writer": deps.writer, "checker": deps.checker}, redo=redo, on_item=on_item)
    summary, accepted, rejected = build_summary(deps, len(records), rows)
    store_summary(deps.store, report.run_id, job.bench, job.model, summary, [r.id for r in rows])
    return report, summary, accepted, rejected
