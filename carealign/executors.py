"""The command line's side of the executors: what a Ray worker runs, and the checks before a run.

A Ray actor gets no live object from the driver. It gets a ``CommandReplay``: the driver's resolved
settings, the command's name and options as parsed, and which of the command's jobs (its
``PipelineSession.run`` calls, counted from 0) to work on. The actor runs the same command with
them, so it reads the input, opens its store and engines and builds the job exactly as the driver
did; inside, ``pipeline_session`` and ``PipelineSession.run`` see ``REPLAYING``: jobs before the
asked one are passed over (each returns what it returned in the driver, so the command goes on as
there), and the asked one runs only its claim loop under the driver's run id
(``graphs.common.runner.work_in_joined_run``), after which the worker leaves the command. Input
files must therefore be readable at the same path on every node (a shared file system), like the
store and the model servers are reachable from every node.
"""

from __future__ import annotations

import io
import warnings
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any

from carealign.settings import Settings
from graphs.common.executor import JoinedRun, WorkerDone
from store import normalise_url

REPLAYING: ContextVar[CommandReplay | None] = ContextVar("carealign_replaying", default=None)


def check_executor(settings: Settings) -> None:
    """Refuse what an executor cannot do, before anything is opened or written."""
    if settings.executor == "local":
        if settings.workers != 1:
            raise ValueError(f"--workers {settings.workers} needs --executor ray (the local executor is this one "
                             "process; or start more `carealign` processes on one PostgreSQL store)")
        return
    if normalise_url(settings.db).startswith("sqlite"):
        raise ValueError("--executor ray needs a PostgreSQL store (--db postgresql://USER@HOST:5432/DB): workers on "
                         "other processes and machines cannot share a SQLite file; nothing was written")
    if settings.base_url is None:
        raise ValueError("--executor ray needs --base-url (model servers every worker can reach): the embedded "
                         "model runs inside one process")


@dataclass(frozen=True)
class CommandReplay:
    """The driver's command, as a Ray worker runs it (see the module docstring). Picklable."""

    path: tuple[str, ...]  # the command's names under `carealign`, e.g. ("factcheck", "run")
    params: dict[str, Any]  # its options and arguments as parsed
    settings: Settings  # the driver's resolved settings (config file, environment and options applied)
    debug: bool = False
    call: int = 0  # which of the command's jobs
    app: str = "carealign.cli:app"  # the command line, as its entry point names it (imported by name)
    earlier: tuple[Any, ...] = ()  # what the driver's earlier jobs returned (a worker's command goes on with them)

    @classmethod
    def of_current_command(cls, settings: Settings, debug: bool) -> CommandReplay:
        ctx = _current_click_context()
        if ctx is None:
            raise ValueError("--executor ray runs the command in every worker: start it from the `carealign` "
                             "command line")
        path: list[str] = []
        params = dict(ctx.params)  # the innermost command's options and arguments
        while ctx.parent is not None:
            path.append(ctx.info_name or "")
            ctx = ctx.parent
        if not path:
            raise ValueError("--executor ray needs a command to run")
        return cls(tuple(reversed(path)), params, settings, debug)

    def at(self, call: int, earlier: tuple[Any, ...] = ()) -> CommandReplay:
        return replace(self, call=call, earlier=earlier)

    def __call__(self, joined: JoinedRun) -> dict[str, Any]:
        """Run the command as a worker of ``joined``; returns the worker's result (or its error)."""
        import importlib

        import typer
        import typer.main

        from carealign import command

        module, _, name = self.app.partition(":")
        app = getattr(importlib.import_module(module), name)

        captured = io.StringIO()
        command.console.file = captured  # a worker prints nothing; its errors are returned
        command.err_console.file = captured
        cmd: Any = typer.main.get_command(app)
        for name in self.path:
            cmd = cmd.commands[name]
        token = REPLAYING.set(self)
        command.set_current(command.ReplayCtx(self.settings, self.debug))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the driver has shown them
                with cmd.context_class(cmd, info_name=self.path[-1]) as ctx:
                    ctx.invoke(cmd.callback, **self.params)
        except WorkerDone:
            raise
        except (typer.Exit, SystemExit) as exc:
            code = getattr(exc, "exit_code", getattr(exc, "code", 1))
            if code == 130:
                return {"worker": joined.worker, "summary": joined.summary, "interrupted": True}
            return {"error": captured.getvalue().strip() or f"the command exited with code {code}"}
        except Exception as exc:  # noqa: BLE001 - reported to the driver
            return {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            REPLAYING.reset(token)
        return {"error": f"`carealign {' '.join(self.path)}` ended without running job {self.call} "
                         "(the worker's command took another path than the driver's)"}


def _current_click_context() -> Any:
    """The running command's click context (typer >= 0.20 carries its own copy of click)."""
    try:
        from typer.main import get_current_context
    except ImportError:
        from click import get_current_context
    return get_current_context(silent=True)


def check_replayed_settings(settings: Settings, replay: CommandReplay) -> None:
    """A worker must build its job from exactly the driver's settings."""
    mine, theirs = settings.model_dump(mode="json"), replay.settings.model_dump(mode="json")
    differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    if differ:
        raise ValueError(f"the worker's settings differ from the driver's in {', '.join(differ)}")
