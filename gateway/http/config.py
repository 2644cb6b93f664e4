"""The ``http:`` section: where the local API and dashboard listen, and who may use them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from gateway.config.base import StrictModel
from gateway.net import is_loopback

Role = Literal["viewer", "operator"]


class HttpUser(StrictModel):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@\-]+$")]
    role: Role = "viewer"
    password_hash: str = Field(
        pattern=r"^scrypt\$",
        description="scrypt hash from `fieldgate http hash-password`; never the password.")


class HttpToken(StrictModel):
    """A machine credential (Authorization: Bearer). Revoke it by removing it and reloading."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    role: Role = "viewer"
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$",
                        description="SHA-256 (hex) of the token, from `fieldgate http new-token`.")


class HttpTlsSection(StrictModel):
    cert: Path = Field(description="PEM certificate (chain) file.")
    key: Path = Field(description="PEM private key file.")


class HttpSection(StrictModel):
    host: str = Field("127.0.0.1", description="Listen address; not loopback needs users.")
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    users: list[HttpUser] = []
    tokens: list[HttpToken] = []
    tls: HttpTlsSection | None = None
    session_ttl: Annotated[float, Field(gt=60, le=30 * 86400)] = Field(
        8 * 3600, description="Seconds a login lasts without activity.")
    login_attempts: Annotated[int, Field(ge=1, le=1000)] = Field(
        5, description="Failed logins per client address per minute before 429.")
    stream_queue: Annotated[int, Field(ge=10, le=100_000)] = Field(
        1000, description="Live-stream messages buffered per client before it is cut off.")

    @model_validator(mode="after")
    def _users_off_loopback(self) -> HttpSection:
        if not is_loopback(self.host) and not self.users and not self.tokens:
            raise ValueError(
                f"http.host {self.host!r} is not a loopback address: add http.users (and/or "
                "tokens) so the API is not open to the plant network, or listen on 127.0.0.1")
        names = [u.name for u in self.users]
        if len(names) != len(set(names)):
            raise ValueError("http.users: each user name must be unique")
        return self

    @property
    def open_access(self) -> bool:
        """No users and no tokens (loopback only): every local client is an operator."""
        return not self.users and not self.tokens

