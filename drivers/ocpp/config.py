"""Config model of the OCPP driver.

The core validates one device entry per ``DeviceConfig``; an OCPP site has one server and many
chargers. Both are entries of ``type: ocpp``: one entry with ``role: server`` carries the
central system's settings (listen address, TLS, admission policy, site power), every entry with
``role: charger`` (the default) is one charge point, its id being the charge point id in the
URL. One model with a ``role`` switch keeps the generated JSON Schema a plain object under the
core's ``type`` discriminator; the validator below refuses fields that do not belong to the
entry's role, so a misplaced key is still a load-time error naming the field.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from drivers.base import DeviceConfig
from gateway.config.base import Problems, StrictModel

OcppVersion = Literal["1.6", "2.0.1"]
SUBPROTOCOLS: dict[str, OcppVersion] = {"ocpp1.6": "1.6", "ocpp2.0.1": "2.0.1"}


class Admission(enum.StrEnum):
    KNOWN = "known"
    RECORD = "record"


class TlsSettings(StrictModel):
    certfile: Path = Field(description="Server certificate chain (PEM).")
    keyfile: Path = Field(description="Private key of the server certificate (PEM).")
    cafile: Path | None = Field(
        None, description="CA bundle that signs charger client certificates (profile 3)."
    )


class DataTransferReply(StrictModel):
    status: Literal["Accepted", "Rejected", "UnknownMessageId", "UnknownVendorId"] = Field(
        "UnknownVendorId", description="Status answered to every DataTransfer request."
    )
    data: str | None = Field(None, description="Optional data string sent back.")


class IdTagEntry(StrictModel):
    id_tag: Annotated[str, Field(min_length=1, max_length=36)] = Field(
        description="RFID / token id as the charger reports it."
    )
    status: Literal["Accepted", "Blocked", "Expired"] = "Accepted"
    expiry: str | None = Field(None, description="ISO 8601 expiry; past dates answer Expired.")


class ServerSettings(StrictModel):
    host: str = Field("0.0.0.0", description="Listen address of the websocket server.")
    port: Annotated[int, Field(ge=0, le=65535)] = Field(
        9000, description="Listen port (0: pick a free one, for tests)."
    )
    path_prefix: str = Field("/ocpp", description="Chargers connect to <prefix>/<charger id>.")
    security_profile: Literal[0, 1, 2, 3] = Field(
        1,
        description=(
            "0: no auth (lab only), 1: HTTP Basic, 2: TLS + Basic, 3: mutual TLS with the "
            "client certificate CN equal to the charger id."
        ),
    )
    tls: TlsSettings | None = Field(None, description="Required for profiles 2 and 3.")
    admission: Admission = Field(
        Admission.KNOWN,
        description=(
            "known: only configured chargers may connect. record: unknown chargers are "
            "admitted, recorded for commissioning and kept Pending at boot."
        ),
    )
    heartbeat_interval: Annotated[int, Field(ge=10, le=86_400)] = Field(
        300, description="Interval (s) sent in the BootNotification answer."
    )
    pending_retry_interval: Annotated[int, Field(ge=10, le=86_400)] = Field(
        60, description="Retry interval (s) sent to chargers kept Pending."
    )
    call_timeout: Annotated[float, Field(gt=0, le=120)] = Field(
        10.0, description="Seconds to wait for a charger's answer to a command."
    )
    max_frame_bytes: Annotated[int, Field(ge=1024, le=4_194_304)] = Field(
        65_536,
        description=(
            "Frames above this size get a CALLERROR, FormationViolation in OCPP 1.6 and "
            "FormatViolation in OCPP 2.0.1; frames above 4x this size make the websocket "
            "layer close the connection (1009)."
        ),
    )
    auth_workers: Annotated[int, Field(ge=1, le=8)] = Field(
        2,
        description=(
            "Password (scrypt) checks run at once. Each holds 16 MiB and one core for ~35 ms; "
            "2 keeps a reconnect storm of 1,000 chargers to ~20 s on a 2-core box while the "
            "event loop keeps serving the chargers already connected."
        ),
    )
    auth_max_pending: Annotated[int, Field(ge=1, le=100_000)] = Field(
        1024,
        description=(
            "Distinct password checks allowed to wait; beyond that a charger gets HTTP 503 "
            "with Retry-After and reconnects later (protects against a flood of wrong "
            "passwords)."
        ),
    )
    permessage_deflate: bool = Field(
        False,
        description=(
            "Offer websocket compression. Off by default: OCPP-J frames are small and it "
            "costs ~50 KiB of zlib state per charger that accepts it (50 MB at 1,000)."
        ),
    )
    max_site_power_w: Annotated[float, Field(gt=0)] | None = Field(
        None, description="Site power (W) shared between active sessions; none: no limit."
    )
    datatransfer_reply: DataTransferReply = DataTransferReply()
    id_tags: list[IdTagEntry] = Field(
        default_factory=list, description="Initial local id-tag list (changed by ocpp.id_tags)."
    )

    @model_validator(mode="after")
    def _tls_for_profile(self) -> ServerSettings:
        problems = Problems()  # located at the profile that asks for TLS
        if self.security_profile >= 2 and self.tls is None:
            problems.add(("security_profile",),
                         f"security_profile {self.security_profile} needs a tls section")
        elif self.security_profile == 3 and (self.tls is None or self.tls.cafile is None):
            problems.add(("security_profile",),
                         "security_profile 3 needs tls.cafile to verify charger certificates")
        problems.raise_any(self)
        return self


_ALL_VERSIONS: tuple[OcppVersion, ...] = ("1.6", "2.0.1")
_CHARGER_FIELDS = {"password_hash", "connectors", "ocpp_versions", "simulate"}


class OcppDeviceConfig(DeviceConfig):
    """One OCPP entry: the central system (``role: server``) or one charge point."""

    type: Literal["ocpp"]
    role: Literal["server", "charger"] = Field(
        "charger", description="server: the central system's settings; charger: one charger."
    )
    server: ServerSettings | None = Field(None, description="Only with role: server.")
    password_hash: str | None = Field(
        None,
        description=(
            "Charger's Basic-auth password as made by `fieldgate ocpp hash-password` "
            "(scrypt). Never the clear password."
        ),
    )
    connectors: Annotated[int, Field(ge=1, le=32)] = Field(
        1, description="Number of connectors; with more than one, point names get c<N>."
    )
    ocpp_versions: list[OcppVersion] = Field(
        default_factory=lambda: list(_ALL_VERSIONS), description="Versions the charger may speak."
    )
    simulate: OcppVersion | None = Field(
        None,
        description=(
            "Run an in-process simulated charger of this version for this entry (demo). "
            "It authenticates with a random password made at start."
        ),
    )

    @model_validator(mode="after")
    def _role_fields(self) -> OcppDeviceConfig:
        problems = Problems()  # every problem at once, each at its own key
        if self.role == "server":
            stray = sorted(_CHARGER_FIELDS & self.model_fields_set)
            for name in stray:
                problems.add((name,), f"fields {stray} belong to role: charger, not role: server")
        elif "server" in self.model_fields_set:
            problems.add(("server",), "the server section belongs to the entry with role: server")
        if self.simulate is not None and self.simulate not in self.ocpp_versions:
            problems.add(("simulate",), f"simulate {self.simulate} is not in ocpp_versions")
        problems.raise_any(self)
        return self

    @property
    def settings(self) -> ServerSettings:
        return self.server or ServerSettings()
