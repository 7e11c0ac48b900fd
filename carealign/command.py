"""The one skeleton every command uses: global options, error handling, and a pipeline session.

A command parses its options, builds its settings (``Ctx.settings_with``), reads and validates its
input, and then runs inside ``pipeline_session``: the store is checked, the model servers are
checked (the embedded one started), the schema is created only after both answered, and everything
is closed on the way out (Ctrl-C included). ``PipelineSession.run`` runs a workflow under one live
progress line. Bad input therefore never leaves a trace in the store.
"""

from __future__ import annotations

import asyncio
import functools
import getpass
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from agents.engine import LLMEngine
from agents.errors import LLMError
from agents.replicas import safe_urls
from benchmarks.datasets.instructions import InputError
from benchmarks.datasets.limits import INPUT_LIMITS, InputLimits
from carealign.engines import Engines, open_engines
from carealign.executors import REPLAYING, CommandReplay, check_executor, check_replayed_settings
from carealign.options import joined_urls
from carealign.settings import Settings, SettingsError, load_settings
from graphs.common.executor import EXECUTOR
from graphs.common.runner import CONTROLS, Budget, ItemOutcome, RunControls, WorkflowReport
from graphs.common.workers import NOTICES
from store import Store, StoreError

console = Console()
err_console = Console(stderr=True)
USER_ERRORS = (StoreError, InputError, LLMError, SettingsError, ValueError, FileNotFoundError)


class Ctx:
    """Global options, resolved into settings on first use."""

    def __init__(self, config: Path | None, debug: bool, overrides: dict[str, Any]):
        self.config, self.debug, self.overrides = config, debug, overrides
        self._settings: Settings | None = None

    def settings(self, **more: Any) -> Settings:
        if self._settings is None or more:
            self._settings = load_settings(self.config, **{**self.overrides, **more})  # a command's option wins
            # the readers measure every input record against these (benchmarks.datasets.limits)
            INPUT_LIMITS.set(InputLimits(self._settings.max_input_bytes, self._settings.max_input_tokens))
        return self._settings

    def settings_with(self, section: str | None = None, values: dict[str, Any] | None = None,
                      **global_values: Any) -> Settings:
        """Settings with a command's options applied: ``values`` into the pipeline's ``section``,
        ``global_values`` at the top level; ``None`` means the option was not given. Validated like
        the config file, so a bad option value names its setting."""
        base = self.settings()
        more = {k: v for k, v in global_values.items() if v is not None}
        given = {k: v for k, v in (values or {}).items() if v is not None}
        if section and given:
            more[section] = {**getattr(base, section).model_dump(), **given}
        return self.settings(**more) if more else base

    @contextmanager
    def store(self, init: bool = True) -> Iterator[Store]:
        """The store of ``--db`` (the schema created when ``init``), disposed on the way out."""
        store = Store(self.settings().db)
        try:
            if init:
                store.ensure_schema()
            yield store
        finally:
            store.dispose()

    @contextmanager
    def existing_store(self) -> Iterator[Store]:
        """A store that must already hold a carealign schema (read and export commands), disposed
        on the way out."""
        store = Store(self.settings().db, must_exist=True)
        try:
            if store.current_revision() is None:
                raise StoreError(f"{store.safe_url} has no carealign schema: run `carealign db init`")
            yield store
        finally:
            store.dispose()


class ReplayCtx(Ctx):
    """The global options in a Ray worker (``carealign.executors``): the driver's resolved settings,
    with the command's options applied again (the same values), never this machine's config file or
    environment."""

    def __init__(self, settings: Settings, debug: bool):
        super().__init__(None, debug, {})
        self.base = settings

    def settings(self, **more: Any) -> Settings:
        if self._settings is None or more:
            self._settings = load_settings(None, **{**self.base.model_dump(), **more}) if more else self.base
            INPUT_LIMITS.set(InputLimits(self._settings.max_input_bytes, self._settings.max_input_tokens))
        return self._settings


_CURRENT: Ctx | None = None  # the global options of the command being run (set by set_current)


def set_current(ctx: Ctx) -> Ctx:
    global _CURRENT
    _CURRENT = ctx
    return ctx


def current() -> Ctx:
    assert _CURRENT is not None, "the app callback sets the global options first"
    return _CURRENT


def handles_errors(fn):
    """Known problems become one red line and exit code 2; anything else exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = bool(_CURRENT and _CURRENT.debug)
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except (KeyboardInterrupt, asyncio.CancelledError):
            # Ctrl-C or SIGTERM; inside the event loop it can surface as the main task's cancellation
            err_console.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None
        except USER_ERRORS as exc:
            if debug:
                raise
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except Exception as exc:  # noqa: BLE001
            if debug:
                raise
            err_console.print(f"[bold red]error:[/] unexpected {type(exc).__name__}: {escape(str(exc))} "
                              "(run with --debug for the traceback)", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


def deprecated(value: Any, old: str, new: str) -> Any:
    """A value given through an option's old name: warn, and pass it on (kept for one release)."""
    if value is not None and value != [] and value is not False:
        warnings.warn(f"{old} is deprecated and will be removed in the next release: use {new}", stacklevel=2)
    return value


def judge_or_old_names(judge_model: str | None, judge_base_url: list[str] | None, old_model: str | None,
                       old_base_url: str | None, old: str = "grader") -> tuple[str | None, str | None]:
    """``--judge-model`` / ``--judge-base-url`` (its replicas as one comma list), or the role's old
    option names (``--grader-model``, ``--checker-base-url``, ...) with a deprecation warning."""
    return (judge_model or deprecated(old_model, f"--{old}-model", "--judge-model"),
            joined_urls(judge_base_url) or deprecated(old_base_url, f"--{old}-base-url", "--judge-base-url"))


def reviewer_name(name: str | None) -> str:
    if name:
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "reviewer"


def check_limit(limit: int | None) -> int | None:
    if limit is not None and limit < 1:
        raise ValueError("--limit must be at least 1")
    return limit


# -- a pipeline session: store + engines + progress ------------------------------------------------
def _usage_totals(engines: list[LLMEngine]) -> dict[str, float]:
    usages = [e.usage for e in {id(e): e for e in engines}.values()]
    return {"calls": sum(u.calls for u in usages), "hits": sum(u.cache_hits for u in usages),
            "tokens": sum(u.prompt_tokens + u.completion_tokens for u in usages),
            "out": sum(u.completion_tokens for u in usages), "failed": sum(u.failures for u in usages),
            "cost": sum(u.cost_usd for u in usages)}


def _usage_fields(engines: list[LLMEngine], started: float, base: dict[str, float] | None = None) -> dict[str, object]:
    """The progress line's figures since ``base`` (the engines' totals when this job started: engines
    shared by several jobs, one per method, would otherwise add up across them)."""
    now = _usage_totals(engines)
    u = {k: v - (base or {}).get(k, 0) for k, v in now.items()}
    elapsed = max(time.perf_counter() - started, 1e-6)
    return {"calls": int(u["calls"]), "hits": int(u["hits"]), "tokens": int(u["tokens"]), "rate": u["out"] / elapsed,
            "failed": int(u["failed"]), "cost": f", ${u['cost']:.4f}" if u["cost"] else ""}


def run_config(settings: Settings, engines: Engines) -> dict[str, object]:
    """The settings plus what was resolved at run time (models, server URLs without credentials)."""
    roles = [("generator", engines.generator), ("judge", engines.judge)]
    roles += [(f"generator_{i + 2}", e) for i, e in enumerate(engines.more_generators)]
    roles += [(f"judge_{i + 2}", e) for i, e in enumerate(engines.more_judges)]
    resolved: dict[str, object] = {
        role: {"model": e.model, "base_url": safe_urls(e.backend.base_url), "params": e.request_params()}
        for role, e in roles
    }
    if engines.local is not None:
        resolved["embedded_model_file"] = str(engines.local.model_path)
        resolved["embedded_server"] = engines.local.describe()  # native llama-server or llama-cpp-python's
    return {**settings.for_run(), "resolved": resolved}


OnItem = Callable[[ItemOutcome], None]


async def with_progress(title: str, total: int, engines: list[LLMEngine],
                        run: Callable[[OnItem | None], Awaitable[Any]], show: bool = True) -> Any:
    """Run a workflow under a live progress line: items, calls (cached, failed), tokens, rate.
    ``show=False`` runs it without one (inline review asks questions on the same terminal)."""
    if not show:
        return await run(None)
    progress = Progress(
        TextColumn(f"[bold]{title}[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("items"),
        TextColumn("{task.fields[calls]} calls ({task.fields[hits]} cached, {task.fields[failed]} failed)"),
        TextColumn("{task.fields[tokens]:,} tok{task.fields[cost]}"), TextColumn("{task.fields[rate]:.1f} out-tok/s"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False,
        # twice a second, as the ticker below updates it: redrawing the line costs CPU the requests need
        refresh_per_second=2,
    )
    started, base = time.perf_counter(), _usage_totals(engines)
    with progress:
        task = progress.add_task(title, total=total, **_usage_fields(engines, started, base))

        def on_item(_: ItemOutcome) -> None:
            progress.update(task, advance=1, **_usage_fields(engines, started, base))

        async def ticker() -> None:
            while True:
                await asyncio.sleep(0.5)
                progress.update(task, **_usage_fields(engines, started, base))

        tick = asyncio.create_task(ticker())
        try:
            result = await run(on_item)
        finally:
            tick.cancel()
        # items done by an earlier run of this job are not re-processed: show them as complete
        progress.update(task, completed=total, **_usage_fields(engines, started, base))
    return result


def _report_of(result: Any) -> WorkflowReport | None:
    if isinstance(result, WorkflowReport):
        return result
    if isinstance(result, tuple):
        return next((r for r in result if isinstance(r, WorkflowReport)), None)
    return None


def print_failures(report: WorkflowReport) -> None:
    """The top failure reasons of a job, with counts and one item to look at (every command)."""
    from carealign.tables import failures_table

    if report.summary.failures:
        console.print(failures_table(report))


@dataclass
class PipelineSession:
    """An open store and checked engines for one command; see ``pipeline_session``."""

    settings: Settings
    store: Store
    engines: Engines
    unfinished: list[WorkflowReport] = field(default_factory=list)
    executor: Any = None  # the Ray executor; None: this process runs the claim loops
    replay: CommandReplay | None = None  # the command as the Ray workers run it
    results: list[Any] = field(default_factory=list)  # what each ``run`` returned (a worker is told which
    # job is its own, and what the ones before it returned)

    @property
    def redo(self) -> bool:
        """With the cache off, finished items are redone too."""
        return not self.settings.cache

    def run_config(self, **extra: Any) -> dict[str, Any]:
        return {**run_config(self.settings, self.engines), **extra}

    async def run(self, title: str, total: int, engines: list[LLMEngine],
                  run: Callable[[OnItem | None], Awaitable[Any]], show_progress: bool = True) -> Any:
        """Run a workflow under the progress line; then show why items failed and how each model
        replica did, and remember a job that did not finish (the command then exits non-zero).

        With ``--executor ray`` the workflow records the run and queues the input here, and the
        workers run its claim loop (one progress line for all). In a worker, the jobs before its own
        are passed over and its own runs only the claim loop (which leaves the command)."""
        job = len(self.results)
        replaying = REPLAYING.get()
        if replaying is not None:
            if job < replaying.call:
                self.results.append(replaying.earlier[job])
                return replaying.earlier[job]
            await run(None)
            raise RuntimeError(f"job {job} of the command ran no claim loop")
        if self.executor is not None and not show_progress:
            raise ValueError("this command asks questions at the terminal while it runs (inline review): Ray "
                             "workers cannot; use --executor local")
        work = self.replay.at(job, tuple(self.results)) if self.replay is not None else None
        token = EXECUTOR.set(self.executor.for_job(work) if self.executor is not None else None)
        try:
            result = await with_progress(title, total, engines, run, show_progress)
        finally:
            EXECUTOR.reset(token)
        self.results.append(result)
        report = _report_of(result)
        if report is not None:
            print_failures(report)
            print_replicas(report)
            if not report.finished:
                self.unfinished.append(report)
        return result

    def finish(self) -> None:
        """Say which jobs did not finish and why, and exit 3 (scripts can tell)."""
        for r in self.unfinished:
            left = ", ".join(f"{k}: {v}" for k, v in r.counts.items() if v and k not in ("done",))
            why = r.summary.stopped or "items still pending or held by other workers"
            console.print(f"[yellow]run {r.run_id} is {r.status}[/] ({escape(why)}; {left or 'no counts'}): "
                          "run the same command again to finish it", highlight=False)
        if self.unfinished:
            raise typer.Exit(3)


def print_replicas(report: WorkflowReport) -> None:
    """Requests, failures and latency per model replica, for each role served by several."""
    from rich.table import Table

    for role, rows in report.summary.replicas.items():
        table = Table(title=f"{role}: replicas", title_justify="left")
        for head in ("replica", "requests", "ok", "failures", "rests", "mean ms", "max ms", "state", "last error"):
            table.add_column(head, justify="left" if head in ("replica", "state", "last error") else "right")
        for r in rows:
            table.add_row(escape(r["url"]), str(r["requests"]), str(r["ok"]), str(r["failures"]), str(r["rests"]),
                          "-" if r["latency_ms_mean"] is None else f"{r['latency_ms_mean']:.0f}",
                          f"{r['latency_ms_max']:.0f}", r["state"], escape((r["last_error"] or "")[:60]))
        console.print(table)


@asynccontextmanager
async def pipeline_session(settings: Settings, *, more_generators: list[str] | None = None,
                           more_judges: list[str] | None = None, warn_self_grading: bool = True,
                           must_exist: bool = False) -> AsyncIterator[PipelineSession]:
    """Open the store (its URL checked, nothing written), then the engines (servers checked), then
    create the schema; close everything on the way out. With ``--executor ray`` the executor's
    conditions are checked first and the Ray cluster joined (or a local one started)."""
    replaying = REPLAYING.get()
    if replaying is not None:
        check_replayed_settings(settings, replaying)
    else:
        check_executor(settings)
    executor, replay, started_ray = None, None, False
    ray_driver = settings.executor == "ray" and replaying is None
    if ray_driver:
        replay = CommandReplay.of_current_command(settings, bool(_CURRENT and _CURRENT.debug))
    store = Store(settings.db, must_exist=must_exist)
    budget = (Budget(settings.budget_tokens, settings.budget_usd)
              if settings.budget_tokens or settings.budget_usd else None)
    notices = NOTICES.set(lambda message: console.print(f"[yellow]{escape(message)}[/]"))
    controls = CONTROLS.set(RunControls(budget))
    try:
        if ray_driver:
            from graphs.common.ray_executor import RayExecutor, connect

            started_ray = connect(settings.ray_address, settings.ray)
            executor = RayExecutor(None, settings.workers, settings.ray)
        async with open_engines(settings, store, more_generators, more_judges,
                                warn_self_grading=warn_self_grading) as engines:
            store.ensure_schema()
            session = PipelineSession(settings, store, engines, executor=executor, replay=replay)
            yield session
    finally:
        CONTROLS.reset(controls)
        NOTICES.reset(notices)
        store.dispose()
        if started_ray:
            import ray

            ray.shutdown()
    session.finish()


def outcome_line(report: WorkflowReport) -> str:
    """What happened to the items processed now, by outcome."""
    s = report.summary
    return ", ".join(f"{k}: {v}" for k, v in sorted(s.outcomes.items())) or "none (all done before)"
