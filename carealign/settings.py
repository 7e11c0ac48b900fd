"""Settings: defaults < TOML config file (``--config``) < ``CAREALIGN_*`` environment < CLI options.

The global settings (store, model servers, limits, seed) are declared here; each pipeline's section
is its configuration model from ``graphs/<pipeline>/configuration.py`` (declared there only), and
the training section is validated by ``training``'s config dataclasses. Secrets are never settings:
``api_key_env`` names the environment variable that holds the key, and only that name is stored with
a run. Every constant a workflow uses that a paper did not publish is a setting, with its default.
"""

from __future__ import annotations

import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from agents.local_server import DEFAULT_PARALLEL
from agents.replicas import ReplicaSettings
from carealign.web.configuration import ReviewConfig
from graphs.bench.configuration import BenchConfig
from graphs.common.ray_executor import RayConfig
from graphs.esc_search.configuration import EscSearchConfig
from graphs.factbench.configuration import FactbenchConfig
from graphs.factcheck.configuration import FactcheckConfig
from graphs.generate.configuration import GenerateConfig
from graphs.rubric_drafts.configuration import RubricDraftsConfig
from graphs.rubric_prefs.configuration import RubricPrefsConfig

_FILE_VALUES: ContextVar[dict[str, Any] | None] = ContextVar("carealign_config_file", default=None)


class SettingsError(ValueError):
    """Settings that cannot be used (bad config file, bad value)."""


class TrainOptions(BaseModel):
    """``carealign train``: the ``[train]`` table; training/config.py validates each method's table
    against its config dataclass (unknown keys are refused there)."""

    model_config = ConfigDict(extra="forbid")
    data: dict[str, Any] = Field(default_factory=dict)
    rm: dict[str, Any] = Field(default_factory=dict)
    grpo: dict[str, Any] = Field(default_factory=dict)
    cso: dict[str, Any] = Field(default_factory=dict)
    sft: dict[str, Any] = Field(default_factory=dict)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CAREALIGN_", env_nested_delimiter="__", extra="forbid")

    db: str = Field("carealign.db", description="SQLite file path or database URL")
    base_url: str | None = Field(None, description="OpenAI-compatible API base; unset = embedded model")
    model: str | None = Field(None, description="model name; unset = the server's first model")
    judge_base_url: str | None = None
    judge_model: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    response_format: Literal["auto", "json_schema", "json_object", "none"] = "auto"
    concurrency: int = Field(16, ge=1, le=4096)
    rpm: float | None = Field(None, gt=0)
    tpm: float | None = Field(None, gt=0)
    timeout: float = Field(120.0, gt=0)
    max_retries: int = Field(5, ge=0, le=50)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    max_tokens: int = Field(512, ge=1)
    seed: int = 0
    cache: bool = True
    local_model: str = Field("smollm2-135m-instruct", description="embedded model name or GGUF path")
    local_n_ctx: int = Field(4096, ge=256, description="embedded model: context tokens per request (per slot)")
    local_server: Literal["auto", "native", "python"] = Field(
        "auto", description="embedded model server: llama.cpp's native llama-server (parallel slots), "
        "llama-cpp-python's server (one request at a time), or auto = native when it is built")
    local_parallel: int = Field(DEFAULT_PARALLEL, ge=1, le=64, description="native server: slots, i.e. "
                                "requests decoded together (continuous batching); measured best on 2 cores")
    local_threads: int | None = Field(None, ge=1, description="embedded model: CPU threads; unset = all usable cores")
    local_jinja: bool = Field(False, description="native server: the GGUF's Jinja chat template (for formats "
                              "llama.cpp has no built-in template for); off = the built-in one, with which a "
                              "json_schema reply is bare JSON (with Jinja it may come in a ```json fence: more tokens)")
    local_server_binary: str | None = Field(
        None, description="native llama-server path; unset = ~/.cache/carealign/llama-server-VERSION/bin/llama-server")
    local_startup_timeout: float = Field(120.0, gt=0, description="seconds the embedded server may take to answer")
    prices: dict[str, dict[str, float]] = Field(default_factory=dict, description="USD per 1M tokens")
    export_license: str = Field("other", description="license field of the dataset cards `db export` writes (a "
                                "Hugging Face license id, e.g. cc-by-4.0); 'other' = not set: the card says the "
                                "inputs' licenses and the model providers' terms apply")
    max_input_bytes: int = Field(1_000_000, ge=1, description="an input line or record over this many bytes is "
                                 "refused (file:line), before anything is stored or sent")
    max_input_tokens: int = Field(32_768, ge=1, description="an input record holding more than about this many "
                                  "tokens is refused (file:line); keep it under the model's context")
    budget_usd: float | None = Field(None, gt=0, description="stop the command's jobs cleanly once its LLM calls "
                                     "cost this much (needs prices); resumable")
    budget_tokens: int | None = Field(None, ge=1, description="stop the command's jobs cleanly once its LLM calls "
                                      "used this many tokens (prompt + completion); resumable")
    executor: Literal["local", "ray"] = Field("local", description="who runs the claim loops: this process, or "
                                              "--workers Ray actors against the shared PostgreSQL store")
    workers: int = Field(1, ge=1, le=4096, description="Ray worker actors per job (--executor ray)")
    ray_address: str | None = Field(None, description="Ray cluster to join: 'auto' (started by `ray start` on this "
                                    "machine), ray://HOST:10001; unset = RAY_ADDRESS, else a new local instance")
    ray: RayConfig = Field(default_factory=RayConfig)  # the Ray executor's actors ([ray])
    replicas: ReplicaSettings = Field(default_factory=ReplicaSettings)  # several --base-url of one role
    # one section per pipeline, each declared once in graphs/<pipeline>/configuration.py
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    rubric_prefs: RubricPrefsConfig = Field(default_factory=RubricPrefsConfig)
    rubrics: RubricDraftsConfig = Field(default_factory=RubricDraftsConfig)
    bench: BenchConfig = Field(default_factory=BenchConfig)
    factcheck: FactcheckConfig = Field(default_factory=FactcheckConfig)
    factbench: FactbenchConfig = Field(default_factory=FactbenchConfig)
    esc: EscSearchConfig = Field(default_factory=EscSearchConfig)
    train: TrainOptions = Field(default_factory=TrainOptions)
    review: ReviewConfig = Field(default_factory=ReviewConfig)  # the review web app (carealign/web)

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, InitSettingsSource(settings_cls, _FILE_VALUES.get() or {})

    def for_run(self) -> dict[str, Any]:
        """What is stored with a run: every setting, with credentials removed from URLs (a URL may
        carry a password or key; keys themselves are never settings)."""
        from agents.replicas import safe_urls
        from store import redact_url

        data = self.model_dump(mode="json")
        data["db"] = redact_url(self.db)
        for key in ("base_url", "judge_base_url"):  # a comma list when a role has several replicas
            data[key] = safe_urls(data[key])
        env_vars = data["ray"]["runtime_env"].get("env_vars")
        if isinstance(env_vars, dict):  # values may be secrets: only their names are kept
            data["ray"]["runtime_env"]["env_vars"] = {k: "(set)" for k in env_vars}
        return data


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise SettingsError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{path}: not valid UTF-8") from None


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings; ``overrides`` are CLI options (``None`` means not given)."""
    file_values = read_config_file(config_file) if config_file else {}
    token = _FILE_VALUES.set(file_values)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        where = f"config file {config_file}, " if config_file else ""
        raise SettingsError(
            f"setting '{field}' ({where}CAREALIGN_* environment or options): {err['msg']}"
        ) from None
    finally:
        _FILE_VALUES.reset(token)
