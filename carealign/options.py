"""Command-line options derived from the settings models, and the options every command shares.

``config_option(Config, "field", "--flag")`` takes the option's help and its shown default from the
field of the pipeline's configuration model, and fails at import time if the field does not exist:
an option cannot drift from the setting it sets. The value stays ``None`` when the option is not
given, so the config file and ``CAREALIGN_*`` variables are not overridden by a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from pydantic import BaseModel
from rich.markup import escape

from carealign.settings import Settings


def _section_of(model: type[BaseModel]) -> str | None:
    for name, info in Settings.model_fields.items():
        if info.annotation is model:
            return name
    return None


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value)) or "none"
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def setting_help(model: type[BaseModel], field: str, help: str | None = None) -> str:
    """'HELP [default: X; setting SECTION.FIELD]' from the model's field."""
    if field not in model.model_fields:
        raise KeyError(f"{model.__name__} has no setting {field!r}")
    info = model.model_fields[field]
    text = help or info.description or field.replace("_", " ")
    section = _section_of(model)
    where = f"{section}.{field}" if section else field
    # escaped: typer renders help as rich markup, where '[default: 4]' would vanish as a style tag
    return escape(f"{text} [default: {_shown(info.get_default(call_default_factory=True))}; setting {where}]")


def config_option(model: type[BaseModel], field: str, *names: str, help: str | None = None, **kw: Any) -> Any:
    """A typer option that sets ``model.field`` (default ``None``: not given)."""
    return typer.Option(None, *names, help=setting_help(model, field, help), show_default=False, **kw)


def global_option(field: str, *names: str, help: str | None = None, **kw: Any) -> Any:
    """A typer option that sets a global setting (``Settings.field``)."""
    return typer.Option(None, *names, help=setting_help(Settings, field, help), show_default=False, **kw)


# -- shared by the pipeline commands -----------------------------------------------------------
def dataset_option() -> Any:
    return typer.Option(None, "--dataset", help=escape("dataset name [default: the input file's stem]"),
                        show_default=False)


def limit_option(what: str = "items") -> Any:
    return typer.Option(None, "--limit", min=1, help=f"only the first N {what} of the input", show_default=False)


def on_bad_row_option() -> Any:
    """How a reader treats a row it cannot use (``benchmarks.datasets.rows``)."""
    return typer.Option("fail", "--on-bad-row", metavar="fail|skip", help=escape(
        "fail: stop at the first bad row of the input (file:line and cause); skip: leave bad rows out, list each "
        "with its cause, and store their count with the run [default: fail]"), show_default=False)


def instruction_mapping_option() -> Any:
    return typer.Option(None, "--mapping", help=escape(
        "which keys of each line hold what, e.g. Alpaca's 'prompt=instruction,input=input,reference=output' "
        "(fields: prompt, input, messages, id, lang, rubric, reference, meta; other keys go to meta). HealthBench's "
        "own lines (prompt as a message list, rubrics) are read without one"), show_default=False)


def seed_option() -> Any:
    return global_option("seed", "--seed", help="base sampling seed")


def no_cache_option() -> Any:
    return typer.Option(False, "--no-cache", help="call the model even for requests already answered, and redo "
                        "items already done")


def judge_model_option(role: str = "judge") -> Any:
    return typer.Option(None, "--judge-model", show_default=False, help=escape(
        f"the {role} model, on the judge's server [default: the generator model; setting judge_model]"))


def judge_base_url_option(role: str = "judge") -> Any:
    """A command's own ``--judge-base-url``: a list, as the global option (pass it on with ``joined_urls``)."""
    return typer.Option(None, "--judge-base-url", show_default=False, metavar="URL", help=escape(
        f"server of the {role} model [default: --base-url; setting judge_base_url]; several replicas: repeat "
        "the option or give a comma list"))


def hidden_alias(name: str) -> Any:
    """An old option name kept for one release; the command maps it with ``command.deprecated``."""
    return typer.Option(None, name, hidden=True)


def out_dir_option(default: str, what: str) -> Any:
    return typer.Option(Path(default), "--out-dir", help=f"where {what} go")


# -- scale-out: the executor and model replicas (global options, so every claiming command has them) --
def executor_option() -> Any:
    return global_option("executor", "--executor", metavar="local|ray", help="who runs the claim loops: this "
                         "process, or --workers Ray actors against the shared PostgreSQL store")


def workers_option() -> Any:
    return global_option("workers", "--workers", help="Ray worker actors per job (--executor ray)")


def ray_address_option() -> Any:
    return global_option("ray_address", "--ray-address", help="Ray cluster: 'auto' (started by `ray start` on this "
                         "machine) or ray://HOST:10001; unset = RAY_ADDRESS, else a new local Ray instance")


def base_urls_option() -> Any:
    return global_option("base_url", "--base-url", metavar="URL", help=(
        "OpenAI-compatible API, e.g. http://HOST:8000/v1; several replicas: repeat the option or give a comma "
        "list; unset = start the embedded llama.cpp model"))


def judge_base_urls_option() -> Any:
    return global_option("judge_base_url", "--judge-base-url", metavar="URL", help=(
        "server of the judge model [default: --base-url]; several replicas: repeat the option or give a comma "
        "list"))


def joined_urls(urls: list[str] | None) -> str | None:
    """A repeated URL option as the comma list the settings hold (None: not given)."""
    return ",".join(urls) if urls else None
