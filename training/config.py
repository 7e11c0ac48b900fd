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
from typing import Any, TypeVar

from training.cso_config import CSOConfig
from training.data_config import DataConfig
from training.grpo_config import GRPOConfig
from training.rm_config import RMConfig
from training.sft_config import SFTConfig

T = TypeVar("T")

METHOD_CONFIGS: dict[str, type] = {"rm": RMConfig, "grpo": GRPOConfig, "cso": CSOConfig, "sft": SFTConfig}
DEFAULT_KINDS = {"rm": ["rubric"], "grpo": ["rubric"], "cso": ["esc"], "sft": ["esc"]}


def from_mapping(cls: type[T], values: dict[str, Any], where: str) -> T:
    """A config dataclass from a TOML table; unknown keys name the table they came from."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
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
    vals = dict(table.get(method, {}))
    vals.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return data, from_mapping(METHOD_CONFIGS[method], vals, f"[train.{method}]")
