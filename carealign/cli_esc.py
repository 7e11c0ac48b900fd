"""``carealign esc-search``: turn real support dialogues into turn-level strategy preference pairs.

    carealign esc-search FailedESConv.json --limit 10 --iterations 100 --out-dir esc-out --export esc-pro

The flow is ``graphs/esc_search/``; this module only turns options into settings and prints.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from benchmarks.datasets.esconv import AUTO, FORMATS, read_seeds
from carealign.command import check_limit, console, current, handles_errors, outcome_line, pipeline_session
from carealign.options import (
    config_option,
    dataset_option,
    joined_urls,
    judge_base_url_option,
    judge_model_option,
    limit_option,
    no_cache_option,
    out_dir_option,
    seed_option,
)
from carealign.settings import Settings
from carealign.tables import rows_table, summary_table
from graphs.common.runner import WorkflowReport
from graphs.esc_search.configuration import EscSearchConfig
from graphs.esc_search.esc_pro import FILE_NAME as ESC_PRO_FILE
from graphs.esc_search.esc_pro import FORMAT as ESC_PRO
from graphs.esc_search.graph import run_esc_search
from graphs.esc_search.nodes import EscDeps
from graphs.esc_search.report import load_trees, summarise, write_outputs

esc_app = typer.Typer()


def _or_dash(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def print_summary(run_id: str, summary: dict[str, Any], usage: dict[str, Any], new_pairs: int) -> None:
    calls = sum(u.get("calls", 0) for u in usage.values())
    tokens = sum(u.get("prompt_tokens", 0) + u.get("completion_tokens", 0) for u in usage.values())
    console.print(summary_table(f"esc-search: run {run_id}", [
        ("trees searched", f"{summary['trees']}"), ("iterations (all runs)", f"{summary['iterations']}"),
        ("nodes / ended", f"{summary['nodes']} / {summary['ended_nodes']}"),
        ("LLM calls this run", f"{calls}"), ("tokens this run", f"{tokens:,}"),
        ("LLM calls charged to the trees", f"{summary['llm_calls']}"),
        ("pairs (new this run)", f"{summary['pairs']} ({new_pairs})"),
        ("mean margin (Q)", _or_dash(summary["mean_margin"], ".3f")),
        ("calls per pair", _or_dash(summary["calls_per_pair"], ".1f")),
    ]))
    chosen, rejected = summary["chosen_strategies"], summary["rejected_strategies"]
    console.print(rows_table("strategies of chosen vs rejected turns", ["strategy", "chosen", "rejected"],
                             [[n, str(chosen.get(n, 0)), str(rejected.get(n, 0))]
                              for n in sorted(set(chosen) | set(rejected))]))


EXPORTS = (ESC_PRO,)


def check_exports(exports: list[str]) -> list[str]:
    unknown = [e for e in exports if e not in EXPORTS]
    if unknown:
        raise ValueError(f"--export {unknown[0]!r}: unknown format; choose from {', '.join(EXPORTS)}")
    return exports


async def esc_search_command(settings: Settings, input_file: Path, fmt: str, dataset: str, limit: int | None,
                             out_dir: Path, exports: tuple[str, ...] = ()) -> WorkflowReport:
    records = read_seeds(input_file, fmt, limit)  # validated before anything is opened
    # EscDeps warns itself when the judge and the supporter are the same model
    async with pipeline_session(settings, warn_self_grading=False) as session:
        e = session.engines
        deps = EscDeps(session.store, e.generator, e.judge, settings.esc, settings.seed, dataset)
        report = await session.run("esc-search", len(records), [e.generator, e.judge],
                                   lambda on_item: run_esc_search(deps, records, session.run_config(),
                                                                  redo=session.redo, on_item=on_item))
        trees = load_trees(deps, records)
        summary = summarise(deps, trees)
        written = write_outputs(deps, trees, out_dir, esc_pro=ESC_PRO in exports)
    s = report.summary
    print_summary(report.run_id, summary, report.usage, report.new_pairs)
    console.print(f"items: {s.done} done, {s.partial} partial, {s.failed} failed now: {outcome_line(report)}")
    console.print(f"wrote {written.dialogues} ESC-Pro-style dialogues, {written.graphml} GraphML files"
                  f"{' and a tree picture' if written.picture else ''} to {out_dir}")
    if written.esc_pro is not None:
        cso = written.esc_pro
        first = cso.skipped[0] if cso.skipped else {}
        skipped = (f"; {len(cso.skipped)} kept paths left out (first: {first['path']} of {first['tree_id']}: "
                   f"{escape(first['reason'])})" if first else "")
        console.print(f"wrote {len(cso.entries)} dialogues in the published ESC-Pro shape ({cso.assistant_turns} "
                      f"supporter turns, {cso.negatives} negatives) to {out_dir / ESC_PRO_FILE}{skipped}")
    return report


@esc_app.command("esc-search")
@handles_errors
def esc_search(
    input_file: Path = typer.Argument(..., help="seed dialogues: ESConv JSON or the ESConv tsv"),
    fmt: str = typer.Option(AUTO, "--format", help=" | ".join((AUTO, *FORMATS)) + " (auto: from the file's content)"),
    iterations: int | None = config_option(EscSearchConfig, "iterations", "--iterations"),
    strategy_set: str | None = config_option(EscSearchConfig, "strategy_set", "--strategy-set"),
    expand_k: int | None = config_option(EscSearchConfig, "expand_k", "--expand-k"),
    early_stop: int | None = config_option(EscSearchConfig, "early_stop_patience", "--early-stop"),
    gold_turns: int | None = config_option(EscSearchConfig, "gold_turns", "--gold-turns"),
    rejected_rule: str | None = config_option(EscSearchConfig, "rejected_rule", "--rejected-rule"),
    judge_model: str | None = judge_model_option(),
    judge_base_url: list[str] | None = judge_base_url_option(),
    dataset: str | None = dataset_option(),
    limit: int | None = limit_option("seed dialogues"),
    out_dir: Path = out_dir_option("esc-out", "the dialogues, the GraphML files and the tree picture"),
    export: list[str] = typer.Option([], "--export", metavar="FORMAT",
                                     help=f"also write, in --out-dir: {ESC_PRO} ({ESC_PRO_FILE}, the published "
                                     "ESC-Pro shape CSO's converters read; repeatable)"),
    seed: int | None = seed_option(),
    no_cache: bool = no_cache_option(),
) -> None:
    """Search strategy trees from seed dialogues and store turn-level preference pairs (CSO / ESC-Pro)."""
    settings = current().settings_with(
        "esc", {"iterations": iterations, "strategy_set": strategy_set, "expand_k": expand_k,
                "early_stop_patience": early_stop, "gold_turns": gold_turns,
                "rejected_rule": rejected_rule},
        judge_model=judge_model, judge_base_url=joined_urls(judge_base_url), seed=seed,
        cache=False if no_cache else None)
    exports = tuple(check_exports(export))
    asyncio.run(esc_search_command(settings, input_file, fmt, dataset or input_file.stem, check_limit(limit), out_dir,
                                   exports))
