"""``[review]``: the review web app (``carealign review serve``), declared once here and composed
into ``carealign.settings``.

The session secret is never a setting and never stored: ``secret_env`` names the environment
variable that holds it (as ``api_key_env`` does for API keys). Without it the server makes a random
secret at start, so sessions end when the server stops.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ReviewConfig(BaseModel):
    """Review web app settings; every constant here is carealign's own."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    host: str = Field("127.0.0.1", description="address the review server listens on")
    port: int = Field(8080, ge=1, le=65535, description="port of the review server")
    reviews_per_item: int = Field(1, ge=1, le=20, description="independent reviews an item needs before it leaves "
                                  "the queue")
    claim_minutes: float = Field(30.0, gt=0, description="an item claimed and not decided within this time goes "
                                 "back to the queue")
    session_hours: float = Field(12.0, gt=0, description="a login lasts this long")
    secret_env: str = Field("CAREALIGN_REVIEW_SECRET", description="environment variable holding the session "
                            "signing secret; unset = a random one per server start")
    secure_cookies: bool = Field(False, description="send the session cookie over HTTPS only (set behind TLS)")
    password_bytes: int = Field(12, ge=9, le=64, description="random bytes of a one-time password from `review "
                                "user add`")
    min_password_length: int = Field(12, ge=8, le=128, description="shortest password a reviewer may choose when "
                                     "replacing the one-time password")
