"""What every pipeline's configuration shares.

Each pipeline declares its settings once, as a pydantic model in ``graphs/<pipeline>/configuration.py``
deriving from ``PipelineConfig``. Everything else is derived from that model: the TOML section of the
same name, the ``CAREALIGN_<SECTION>__<FIELD>`` variables (``carealign.settings`` composes the models),
and the command-line options (``carealign.options.config_option`` takes name, default and help from a
field, so an option cannot name a setting that does not exist).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field


class PipelineConfig(BaseModel):
    """The claim-loop settings of every pipeline. They decide how fast a job runs, never what it
    produces, so they are left out of the job key (``shaping``): changing them resumes the same job."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    item_concurrency: int | None = Field(None, ge=1, le=4096, description="items in flight per worker process "
                                         "(unset: as many as --concurrency lets requests be in flight)")
    lease_seconds: float = Field(30.0, gt=0, description="a claim not renewed for this long (a heartbeat renews "
                                 "it every third) is taken over by another worker")
    wait_for_other_workers: bool = Field(True, description="when other live workers hold items of the job, wait "
                                         "for them instead of ending the run incomplete")

    RUN_ONLY: ClassVar[frozenset[str]] = frozenset({"item_concurrency", "lease_seconds", "wait_for_other_workers"})

    def shaping(self, *, exclude: set[str] | frozenset[str] = frozenset(), **extra: Any) -> dict[str, Any]:
        """The settings that shape the output (for job keys), plus ``extra`` (e.g. the run's seed)."""
        return {**self.model_dump(mode="json", exclude=set(self.RUN_ONLY) | set(exclude)), **extra}

    def with_values(self, **values: Any) -> PipelineConfig:
        """A copy with the given (not ``None``) values, validated like the TOML section."""
        given = {k: v for k, v in values.items() if v is not None}
        return self.model_validate({**self.model_dump(), **given}) if given else self
