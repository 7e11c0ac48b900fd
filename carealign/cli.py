"""The ``carealign`` command line: the app, its global options, and where each command lives.

Every command module is thin: it turns options into settings (``carealign.options``,
``Ctx.settings_with``), reads its input, runs its pipeline from ``graphs/<pipeline>/`` inside the one
skeleton (``carealign.command.pipeline_session``) and prints tables. An error is one line with a
non-zero exit (the traceback only with ``--debug``).

    generate             cli_generate      graphs/generate/
    rubric-prefs         cli_rubric_prefs  graphs/rubric_prefs/
    rubrics ...          cli_rubrics       graphs/rubric_drafts/
    esc-search           cli_esc           graphs/esc_search/
    factcheck ...        cli_factcheck     graphs/factcheck/
    factbench ...        cli_factbench     graphs/factbench/
    bench ...            cli_bench         graphs/bench/
    train ...            cli_train         training/
    review ...           cli_review        carealign/web/ (the review web app)
    db ..., runs ...     cli_store         store/
    trace TARGET         cli_trace         store/lineage.py
"""

from __future__ import annotations

import importlib
import json
import logging
import signal
import sys
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import typer

from carealign.cli_bench import bench_app
from carealign.cli_esc import esc_app
from carealign.cli_factbench import factbench_app
from carealign.cli_factcheck import factcheck_app
from carealign.cli_generate import generate_app
from carealign.cli_review import review_app
from carealign.cli_rubric_prefs import rubric_prefs_app
from carealign.cli_rubrics import rubrics_app
from carealign.cli_store import db_app, runs_app
from carealign.cli_trace import trace_app
from carealign.cli_train import train_app
from carealign.command import Ctx, console, current, handles_errors, set_current
from carealign.options import (
    base_urls_option,
    executor_option,
    global_option,
    joined_urls,
    judge_base_urls_option,
    limit_option,
    ray_address_option,
    workers_option,
)

CONTEXT = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, context_settings=CONTEXT,
                  help="Alignment data and models for high-stakes dialogue.")
app.add_typer(generate_app)
app.add_typer(rubric_prefs_app)
app.add_typer(esc_app)
app.add_typer(rubrics_app, name="rubrics")
app.add_typer(factcheck_app, name="factcheck")
app.add_typer(factbench_app, name="factbench")
app.add_typer(bench_app, name="bench")
app.add_typer(train_app, name="train")
app.add_typer(review_app, name="review")
app.add_typer(db_app, name="db")
app.add_typer(runs_app, name="runs")
app.add_typer(trace_app)
data_app = typer.Typer(no_args_is_help=True, help="Turn public datasets into carealign inputs.")
app.add_typer(data_app, name="data")

# `carealign graph NAME`: each pipeline's graph.py and the function that assembles its flow
GRAPHS = {
    "generate": ("graphs.generate.graph", "build_graph"),
    "rubric-prefs": ("graphs.rubric_prefs.graph", "build_graph"),
    "rubrics-draft": ("graphs.rubric_drafts.graph", "build_graph"),
    "esc-search": ("graphs.esc_search.graph", "build_graph"),
    "factcheck": ("graphs.factcheck.graph", "build_graph"),
    "factbench": ("graphs.factbench.graph", "build_graph"),
    "bench-rubric": ("graphs.bench.graph", "build_rubric_graph"),
    "bench-strategy": ("graphs.bench.graph", "build_strategy_graph"),
    "bench-reward-model": ("graphs.bench.graph", "build_reward_model_graph"),
    "bench-medication": ("graphs.bench.graph", "build_medication_graph"),
    "bench-medication-build": ("graphs.bench.graph", "build_medication_build_graph"),
}


def _version() -> str:
    try:
        return version("carealign")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        console.print(f"carealign {_version()}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    db: str | None = global_option("db", "--db"),
    base_url: list[str] | None = base_urls_option(),
    judge_base_url: list[str] | None = judge_base_urls_option(),
    executor: str | None = executor_option(),
    workers: int | None = workers_option(),
    ray_address: str | None = ray_address_option(),
    model: str | None = global_option("model", "--model", help="model name; unset = the server's first model"),
    api_key_env: str | None = global_option("api_key_env", "--api-key-env",
                                            help="environment variable holding the API key"),
    concurrency: int | None = global_option("concurrency", "--concurrency", help="LLM requests in flight, "
                                            "process-wide"),
    model_file: str | None = global_option("local_model", "--model-file", help="embedded model: GGUF path, "
                                           "'smollm2-135m-instruct' or 'gemma3-270m'"),
    max_cost_usd: float | None = global_option("budget_usd", "--max-cost-usd"),
    max_total_tokens: int | None = global_option("budget_tokens", "--max-total-tokens", help="stop the "
                                                 "command's jobs cleanly once its LLM calls used this many tokens "
                                                 "(prompt + completion; --max-tokens would be the reply cap); "
                                                 "resumable"),
    config: Path | None = typer.Option(None, "--config", help="TOML settings file"),
    debug: bool = typer.Option(False, "--debug", help="show tracebacks and debug logs"),
    show_version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                      help="print the version and exit"),
) -> None:
    overrides = {"db": db, "base_url": joined_urls(base_url), "model": model, "api_key_env": api_key_env,
                 "concurrency": concurrency, "local_model": model_file, "budget_usd": max_cost_usd,
                 "budget_tokens": max_total_tokens, "judge_base_url": joined_urls(judge_base_url),
                 "executor": executor, "workers": workers, "ray_address": ray_address}
    ctx.obj = set_current(Ctx(config, debug, overrides))
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING)
    if not debug:
        for noisy in ("httpx", "httpcore"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


@app.command("serve-local")
@handles_errors
def serve_local(port: int | None = typer.Option(None, "--port", help="[default: a free port]")) -> None:
    """Run the embedded llama.cpp server until Ctrl-C (for use with --base-url elsewhere)."""
    import time

    from agents.local_server import LocalServer
    from carealign.engines import local_server_config

    with LocalServer(local_server_config(current().settings(), port)) as srv:
        console.print(f"serving {srv.model_name} at [bold]{srv.base_url}[/] on {srv.describe()} (Ctrl-C to stop)",
                      soft_wrap=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            console.print("stopping")


@app.command("graph")
@handles_errors
def graph(name: str = typer.Argument(..., help="pipeline: " + ", ".join(GRAPHS))) -> None:
    """Print a pipeline's LangGraph as Mermaid (LangGraph's own drawing)."""
    if name not in GRAPHS:
        raise ValueError(f"no pipeline {name!r}; choose one of {', '.join(GRAPHS)}")
    module, function = GRAPHS[name]
    compiled = getattr(importlib.import_module(module), function)()
    print(compiled.get_graph().draw_mermaid())


@data_app.command("mederrbench-instructions")
@handles_errors
def mederrbench_instructions_cmd(
    csv_file: Path = typer.Argument(..., help="a MedErrBench CSV, e.g. ../shared/data/mederrbench/EN_validation.csv"),
    out: Path = typer.Option(..., "--out", "-o", help="JSONL to write (the input of rubric-prefs)"),
    limit: int | None = limit_option("rows"),
) -> None:
    """Clinical-review instructions with rubrics derived from MedErrBench's gold labels."""
    from benchmarks.datasets.mederrbench import mederrbench_instructions

    rows = mederrbench_instructions(csv_file, limit)
    if not out.parent.exists():
        raise FileNotFoundError(f"folder {str(out.parent)!r} does not exist")
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    console.print(f"wrote {len(rows)} instructions to {out}")


def main() -> None:
    # `kill` (SIGTERM) stops carealign the way Ctrl-C does, so the same clean-up runs: claims are
    # handed back, the run is marked interrupted, the embedded model server is stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    warnings.simplefilter("default")
    warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
