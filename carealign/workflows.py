"""Command bodies that tie settings, store, engines and graphs together, with live progress.

Order matters for "bad input leaves the store unchanged": the input file and the rubric are read
and validated first, then the model server is checked, and only then is anything written.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from agents.backends import safe_http_url
from agents.roles import load_rubric
from carealign.engines import Engines, open_engines
from carealign.reports import generate_summary_table
from carealign.settings import Settings
from graphs.generate import GenerateDeps, GenerateSettings, run_generate
from graphs.inputs import read_instructions
from graphs.runner import ItemOutcome, WorkflowReport
from store import Store


def _usage_fields(engines: Engines, started: float) -> dict[str, object]:
    g, j = engines.generator.usage, engines.judge.usage
    tokens = g.prompt_tokens + g.completion_tokens + j.prompt_tokens + j.completion_tokens
    out_tokens = g.completion_tokens + j.completion_tokens
    elapsed = max(time.perf_counter() - started, 1e-6)
    return {"calls": g.calls + j.calls, "hits": g.cache_hits + j.cache_hits, "tokens": tokens,
            "rate": out_tokens / elapsed, "failed": g.failures + j.failures}


def run_config(settings: Settings, engines: Engines) -> dict[str, object]:
    """The settings plus what was resolved at run time (models, server URLs without credentials)."""
    resolved = {
        role: {"model": e.model, "base_url": safe_http_url(e.backend.base_url),
               "params": e.request_params()}
        for role, e in (("generator", engines.generator), ("judge", engines.judge))
    }
    if engines.local is not None:
        resolved["embedded_model_file"] = str(engines.local.model_path)
    return {**settings.for_run(), "resolved": resolved}


async def generate_command(console: Console, settings: Settings, input_file: Path, dataset: str) -> WorkflowReport:
    records = read_instructions(input_file)
    rubric = load_rubric(settings.generate.rubric)
    store = Store(settings.db)  # checks the URL; connects only when first used
    opts = settings.generate
    async with open_engines(settings, store) as engines:  # fails here if the server does not answer
        store.ensure_schema()
        deps = GenerateDeps(store, engines.generator, engines.judge, rubric,
                            GenerateSettings(opts.n_candidates, opts.min_margin, settings.seed,
                                             opts.judge_mode, opts.judge_scoring))
        progress = Progress(
            TextColumn("[bold]generate[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("items"),
            TextColumn("{task.fields[calls]} calls ({task.fields[hits]} cached, {task.fields[failed]} failed)"),
            TextColumn("{task.fields[tokens]:,} tok"), TextColumn("{task.fields[rate]:.1f} out-tok/s"),
            TimeElapsedColumn(), console=console, transient=False,
        )
        started = time.perf_counter()
        with progress:
            task = progress.add_task("generate", total=len(records), **_usage_fields(engines, started))

            def on_item(_: ItemOutcome) -> None:
                progress.update(task, advance=1, **_usage_fields(engines, started))

            async def ticker() -> None:
                while True:
                    await asyncio.sleep(0.5)
                    progress.update(task, **_usage_fields(engines, started))

            tick = asyncio.create_task(ticker())
            try:
                report = await run_generate(
                    deps, records, dataset, run_config(settings, engines), item_concurrency=opts.item_concurrency,
                    lease_seconds=opts.lease_seconds, redo=not settings.cache, on_item=on_item,
                )
            finally:
                tick.cancel()
            # items done by an earlier run of this job are not re-processed: show them as complete
            progress.update(task, completed=len(records), **_usage_fields(engines, started))
    console.print(generate_summary_table(report, store))
    store.dispose()
    return report
