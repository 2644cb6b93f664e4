"""Config model of an OPC-UA device: where the server is, how to secure the link, and which
nodes become which points, grouped by acquisition mode (subscription or polling).

Everything is validated at load so a typo in a node id or a missing certificate path stops the
gateway before it touches a device, with the field path in the error.
"""

from __future__ import annotations

import enum
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlparse

from asyncua import ua
from pydantic import Field, SecretStr, field_validator, model_validator

from drivers.base import DeviceConfig
from gateway.config.base import Problems, StrictModel

PointName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-/]+$")]

# A node id in the standard string form: ns=2;s=Name, ns=2;i=17, i=2258, ns=1;g=<guid>, ns=1;b=..
_NODE_ID = re.compile(r"^(ns=\d+;|nsu=[^;]+;)?[isgb]=.+$")
# One browse path element: <namespace index>:<browse name>
_PATH_ELEMENT = re.compile(r"^\d+:.+$")


class Mode(enum.StrEnum):
    SUBSCRIPTION = "subscription"
    POLLING = "polling"


class TimestampSource(enum.StrEnum):
    SOURCE = "source"
    SERVER = "server"
    GATEWAY = "gateway"


class DeadbandType(enum.StrEnum):
    ABSOLUTE = "absolute"
    PERCENT = "percent"


class SecurityPolicy(enum.StrEnum):
    NONE = "None"
    BASIC256SHA256 = "Basic256Sha256"
    AES128_SHA256_RSAOAEP = "Aes128Sha256RsaOaep"
    AES256_SHA256_RSAPSS = "Aes256Sha256RsaPss"


class SecurityMode(enum.StrEnum):
    SIGN = "Sign"
    SIGN_AND_ENCRYPT = "SignAndEncrypt"


class Deadband(StrictModel):
    type: DeadbandType = Field(
        DeadbandType.ABSOLUTE,
        description=(
            "absolute: in engineering units. percent: of the node's EURange (0-100); applied by "
            "the server when it supports it and always re-checked by the driver."
        ),
    )
    value: Annotated[float, Field(ge=0)] = Field(description="Deadband width.")

    @model_validator(mode="after")
    def _percent_range(self) -> Deadband:
        if self.type is DeadbandType.PERCENT and self.value > 100:
            raise ValueError("a percent deadband must be between 0 and 100")
        return self


class PointConfig(StrictModel):
    name: PointName = Field(description="Point name in samples and commands.")
    node: str | None = Field(None, description="Node id, e.g. 'ns=2;s=Inverter.Power' or 'i=2258'.")
    path: str | None = Field(
        None,
        description=(
            "Browse path from the Objects folder, elements '<ns index>:<name>' joined by '/', "
            "e.g. '2:Inverter/2:Power'. Resolved again after every reconnect."
        ),
    )
    writable: bool = Field(False, description="Allow writes to this point via commands.")
    deadband: Deadband | None = Field(None, description="Overrides the group deadband.")

    @field_validator("node")
    @classmethod
    def _node_syntax(cls, value: str | None) -> str | None:
        if value is None:
            return value
        problem = not _NODE_ID.match(value)
        if not problem:
            plain = value.split(";", 1)[1] if value.startswith("nsu=") else value
            try:
                ua.NodeId.from_string(plain)
            except (ValueError, ua.UaError):
                problem = True
        if problem:
            raise ValueError(
                f"{value!r} is not an OPC-UA node id; use e.g. 'ns=2;s=Name', 'ns=0;i=2258' "
                "or 'nsu=<namespace uri>;s=Name'"
            )
        return value

    @field_validator("path")
    @classmethod
    def _path_syntax(cls, value: str | None) -> str | None:
        if value is None:
            return value
        bad = [part for part in value.split("/") if not _PATH_ELEMENT.match(part)]
        if bad:
            raise ValueError(
                f"browse path element(s) {bad} must look like '<ns index>:<name>', e.g. '2:Power'"
            )
        return value

    @model_validator(mode="after")
    def _one_address(self) -> PointConfig:
        if (self.node is None) == (self.path is None):
            raise ValueError(f"point {self.name!r}: give exactly one of 'node' or 'path'")
        return self


class GroupConfig(StrictModel):
    name: PointName = Field("default", description="Group name, used in task and log names.")
    mode: Mode | None = Field(None, description="subscription or polling; default: the device's.")
    interval: Annotated[float, Field(gt=0, le=86_400)] = Field(
        1.0, description="Polling: seconds between reads. Subscription: publishing interval."
    )
    sampling_interval: Annotated[float, Field(ge=0)] | None = Field(
        None,
        description=(
            "Subscription: server sampling interval in seconds (0 = fastest the server can); "
            "default: the publishing interval."
        ),
    )
    queue_size: Annotated[int, Field(ge=1, le=10_000)] = Field(
        1, description="Subscription: server-side queue per monitored item."
    )
    deadband: Deadband | None = Field(None, description="Subscription: default deadband.")
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = Field(
        500, description="Polling: nodes per Read request."
    )
    points: list[PointConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> GroupConfig:
        problems = Problems()  # every duplicate, each at its own line
        seen: set[str] = set()
        for i, p in enumerate(self.points):
            if p.name in seen:
                problems.add(("points", i, "name"), f"point name {p.name!r} appears twice")
            seen.add(p.name)
        problems.raise_any(self)
        return self


class SecurityConfig(StrictModel):
    policy: SecurityPolicy = Field(SecurityPolicy.NONE, description="OPC-UA security policy.")
    mode: SecurityMode = Field(SecurityMode.SIGN_AND_ENCRYPT, description="Sign or SignAndEncrypt.")
    certificate: Path | None = Field(None, description="Client certificate (DER or PEM).")
    private_key: Path | None = Field(None, description="Client private key (PEM or DER).")
    generate_certificate: bool = Field(
        False,
        description=(
            "Generate a self-signed client pair in <state_dir>/opcua/<device>/ on first start "
            "when 'certificate'/'private_key' are not given."
        ),
    )
    application_uri: str = Field(
        "urn:fieldgate:opcua-client", description="Client application URI (in the certificate)."
    )
    trusted_server_certificates: list[Path] = Field(
        [], description="Server certificates (files, or directories of .der/.pem) to trust."
    )
    allow_unknown_server_certificate: bool = Field(
        False,
        description="Accept a server certificate that is not in the trust list (logs a warning).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> SecurityConfig:
        if self.policy is SecurityPolicy.NONE:
            return self
        if (self.certificate is None) != (self.private_key is None):
            raise ValueError("give both 'certificate' and 'private_key', or neither")
        if self.certificate is None and not self.generate_certificate:
            raise ValueError(
                f"policy {self.policy} needs a client certificate: set 'certificate' and "
                "'private_key', or 'generate_certificate: true'"
            )
        if not self.trusted_server_certificates and not self.allow_unknown_server_certificate:
            raise ValueError(
                "no server certificate would be trusted: list 'trusted_server_certificates' "
                "or set 'allow_unknown_server_certificate: true'"
            )
        return self


class AuthConfig(StrictModel):
    username: str = Field(min_length=1, description="User name for the session.")
    password: SecretStr = Field(description="Password; use ${ENV_VAR}. Never logged.")


class ReconnectConfig(StrictModel):
    initial_delay: Annotated[float, Field(gt=0, le=60)] = Field(1.0, description="Seconds.")
    max_delay: Annotated[float, Field(gt=0, le=3600)] = Field(30.0, description="Cap, seconds.")
    max_delay_first_minute: Annotated[float, Field(gt=0, le=60)] = Field(
        2.0,
        description="Cap during the first minute of an outage, seconds: a restarting server is "
        "probed this often, so data flows again soon after it is back.",
    )


class OpcuaDeviceConfig(DeviceConfig):
    """One OPC-UA server (a PLC, a battery system, an inverter)."""

    type: Literal["opcua"] = "opcua"
    url: str = Field(description="Endpoint URL, e.g. opc.tcp://10.0.0.5:4840.")
    mode: Mode = Field(Mode.SUBSCRIPTION, description="Default acquisition mode of groups.")
    timestamp: TimestampSource = Field(
        TimestampSource.SOURCE,
        description="source: SourceTimestamp, else ServerTimestamp, else gateway time.",
    )
    request_timeout: Annotated[float, Field(gt=0, le=300)] = Field(4.0, description="Seconds.")
    watchdog_interval: Annotated[float, Field(gt=0, le=300)] = Field(
        2.0, description="Seconds between server-state probes that detect a dead connection."
    )
    security: SecurityConfig = SecurityConfig()
    auth: AuthConfig | None = Field(None, description="Username/password; anonymous if absent.")
    reconnect: ReconnectConfig = ReconnectConfig()
    groups: list[GroupConfig] = Field(min_length=1, description="Point groups.")
    simulate: bool = Field(
        False,
        description="Also run the built-in battery-inverter simulator on the (loopback) url.",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme != "opc.tcp" or not parsed.hostname or parsed.port is None:
            raise ValueError(f"{value!r}: expected opc.tcp://host:port")
        return value

    @model_validator(mode="after")
    def _checks(self) -> OpcuaDeviceConfig:
        problems = Problems()  # every problem at once, each at its own line
        first_group: dict[str, int] = {}
        group_names: set[str] = set()
        for g, group in enumerate(self.groups):
            if group.name in group_names:
                problems.add(("groups", g, "name"), "group names must be unique within a device")
            group_names.add(group.name)
            for i, p in enumerate(group.points):
                if first_group.setdefault(p.name, g) != g:
                    problems.add(("groups", g, "points", i, "name"),
                                 f"point name {p.name!r} is used in more than one group "
                                 f"(also in groups[{first_group[p.name]}])")
            if self.group_mode(group) is Mode.POLLING:
                polled: list[tuple[str | int, ...]] = (
                    [("groups", g, "deadband")] if group.deadband else [])
                polled += [("groups", g, "points", i, "deadband")
                           for i, p in enumerate(group.points) if p.deadband]
                for at in polled:
                    problems.add(at, f"group {group.name!r} polls: deadbands apply to "
                                     "subscription groups only")
        host = urlparse(self.url).hostname
        if self.simulate and host not in ("127.0.0.1", "localhost", "::1"):
            problems.add(("simulate",), "simulate: true needs a loopback url (127.0.0.1)")
        problems.raise_any(self)
        return self

    def group_mode(self, group: GroupConfig) -> Mode:
        return group.mode or self.mode
