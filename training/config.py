"""Loading the training settings: the ``[train]`` table, validated against each method's config.

A TOML file holds a ``[train]`` table: ``[train.data]`` (pair selection and split, ``DataConfig``)
and one table per method (``[train.rm]`` ``RMConfig``, ``[train.grpo]`` ``GRPOConfig``,
``[train.cso]`` ``CSOConfig``, ``[train.sft]`` ``SFTConfig``; one ``<method>_config`` module each,
all sharing ``training.common.TrainCommon``); the settings file given with the global ``--config``
may carry the same ``[train]`` table. Unknown keys are refused so a typo never silently falls back
to a default. ``trl_args`` passes any further trl/transformers argument through unchanged (e.g.
``{deepspeed = "ds.json", gradient_checkpointing = true}``).

Reading the file is the caller's job (the CLI parses it with the settings reader, so its errors
read like every other config error); this module only merges and validates parsed tables.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, TypeVar

from training.cso_config import CSOConfig
from training.data_config import DataConfig
from training.grpo_config import GRPOConfig
from training.rm_config import RMConfig
from training.sft_config import SFTConfig

T = TypeVar("T")

METHOD_CONFIGS: dict[str, type] = {"rm": RMConfig, "grpo": GRPOConfig, "cso": CSOConfig, "sft": SFTConfig}
DEFAULT_KINDS = {"rm": ["rubric"], "grpo": ["rubric"], "cso": ["esc"], "sft": ["esc"]}


def unknown_keys(cls: type, keys: Any, where: str) -> None:
    """An error naming each unknown key, where it came from, and the closest known key."""
    names = sorted(f.name for f in dataclasses.fields(cls))
    unknown = sorted(set(keys) - set(names))
    if not unknown:
        return
    parts = []
    for key in unknown:
        close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
        parts.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise ValueError(f"{where}: unknown setting {', '.join(parts)}; "
                     f"`carealign train METHOD --list-settings` lists them all")


def check_types(cls: type, values: dict[str, Any], where: str) -> None:
    """An error naming the key, its value and the type it takes, for a value of the wrong type
    (``--set max_steps=\"a\"``), before it surfaces deep inside trl as an unrelated message."""
    from pydantic import TypeAdapter, ValidationError

    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        try:
            adapter = TypeAdapter(hints[key])
        except Exception:  # noqa: BLE001 - a hint pydantic cannot check is left to the dataclass
            continue
        try:
            adapter.validate_python(value)
        except ValidationError:
            raise ValueError(f"{where}: {key} = {value!r} is not of type {_type_name(hints[key])}") from None


def from_mapping(cls: type[T], values: dict[str, Any], where: str) -> T:
    """A config dataclass from a TOML table; unknown keys name the table they came from, values of
    the wrong type their key and type."""
    unknown_keys(cls, values, where)
    check_types(cls, values, where)
    try:
        return cls(**values)
    except TypeError as exc:
        raise ValueError(f"{where}: {exc}") from None


def train_table(file_table: dict[str, Any] | None, settings_train: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``[train]`` table: from a parsed TOML file (its ``[train]`` table, or the whole file when
    it has none) over the one in the global settings file."""
    table: dict[str, Any] = dict(settings_train or {})
    if file_table is not None:
        table.update(file_table.get("train", file_table))
    return table


def load_configs(method: str, table: dict[str, Any], overrides: dict[str, Any] | None = None,
                 data_overrides: dict[str, Any] | None = None) -> tuple[DataConfig, Any]:
    """(DataConfig, method config) from a ``[train]`` table plus CLI overrides (``None`` = not given)."""
    if method not in METHOD_CONFIGS:
        raise ValueError(f"unknown training method {method!r}; choose one of {', '.join(METHOD_CONFIGS)}")
    data_vals = dict(table.get("data", {}))
    data_vals.update({k: v for k, v in (data_overrides or {}).items() if v not in (None, [], ())})
    data = from_mapping(DataConfig, data_vals, "[train.data]")
    if not data.kinds:
        data.kinds = list(DEFAULT_KINDS[method])
    sets = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown_keys(METHOD_CONFIGS[method], sets, f"train {method} --set")
    vals = dict(table.get(method, {}))
    vals.update(sets)
    return data, from_mapping(METHOD_CONFIGS[method], vals, f"[train.{method}]")


# -- what --list-settings prints ------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    if isinstance(tp, str):
        return tp
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return " | ".join("none" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        return f"{typing.get_origin(tp).__name__}[{args}]"
    return getattr(tp, "__name__", str(tp))


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _help(cls: type, name: str) -> str:
    """A field's help; a subclass that only changes a default keeps its parent's help."""
    for klass in cls.__mro__:
        if dataclasses.is_dataclass(klass):
            f = {x.name: x for x in dataclasses.fields(klass)}.get(name)
            if f is not None and f.metadata.get("help"):
                return f.metadata["help"]
    return ""


def list_settings(cls: type) -> list[tuple[str, str, Any, str]]:
    """(key, type, default, help) of every field of a config dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    return [(f.name, _type_name(hints.get(f.name, f.type)), _default(f), _help(cls, f.name))
            for f in dataclasses.fields(cls)]
