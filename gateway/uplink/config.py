"""The ``uplink`` config section: broker, TLS, credentials, topics, batching and timing.

Every field has a default. A site needs ``uplink.broker`` to forward to the cloud; the demo
sets ``uplink.embedded_broker`` instead, which starts an MQTT broker in-process on loopback
(see :mod:`gateway.uplink.broker`). With neither, the uplink is off and the data stays in the
local buffer (a warning says so at start).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, model_validator

from gateway.config.base import InputFile, StrictModel
from gateway.uplink.auth import CommandsSection


class TlsSection(StrictModel):
    """TLS to the broker. Verification is on unless ``insecure_skip_verify`` is set."""

    ca_file: InputFile | None = Field(
        None, description="CA bundle to verify the broker; default: the system store."
    )
    cert_file: InputFile | None = Field(
        None, description="Client certificate (PEM) for mutual TLS."
    )
    key_file: InputFile | None = Field(None, description="Private key (PEM) of cert_file.")
    insecure_skip_verify: bool = Field(
        False,
        description="Do not verify the broker certificate or host name. For lab use only.",
    )

    @model_validator(mode="after")
    def _pairs(self) -> TlsSection:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls.cert_file and tls.key_file go together; set both or neither")
        return self


class BrokerSection(StrictModel):
    host: str = Field(description="Broker host name or address.")
    port: Annotated[int, Field(ge=1, le=65535)] = Field(
        1883, description="Broker port (8883 is usual with TLS)."
    )
    protocol: Literal["3.1.1", "5"] = Field("3.1.1", description="MQTT protocol version.")
    username: str | None = Field(None, description="User name, if the broker wants one.")
    password: SecretStr | None = Field(
        None, description="Password; use ${ENV_VAR} in the file. Never logged."
    )
    tls: TlsSection | None = Field(None, description="TLS settings; absent: plain TCP.")
    keepalive: Annotated[int, Field(ge=2, le=3600)] = Field(
        30,
        description=(
            "Seconds. A dead link is detected within 1.5 x this: the client pings after "
            "keepalive/2 of silence and gives up when the ping is not answered in keepalive/2."
        ),
    )
    persistent_session: bool = Field(
        False,
        description=(
            "Keep the MQTT session (and commands queued for the gateway) across reconnects "
            "(clean_session=false / clean_start=false)."
        ),
    )
    connect_timeout: Annotated[float, Field(gt=0, le=120)] = Field(
        10.0, description="Seconds to wait for CONNACK, SUBACK and a clean DISCONNECT."
    )


class EmbeddedBrokerSection(StrictModel):
    host: str = Field("127.0.0.1", description="Address the demo broker listens on.")
    port: Annotated[int, Field(ge=0, le=65535)] = Field(
        1883, description="Port of the demo broker (0: any free port)."
    )


class UplinkSection(StrictModel):
    """Store-and-forward MQTT uplink and the command downlink (wire format v1)."""

    enabled: bool = Field(True, description="Turn the uplink off entirely.")
    broker: BrokerSection | None = Field(
        None, description="The MQTT broker. Absent: the embedded demo broker, if configured."
    )
    embedded_broker: EmbeddedBrokerSection | None = Field(
        None,
        description=(
            "Start an MQTT broker in-process (for demos and trials) and forward to it when no "
            "broker is configured."
        ),
    )
    topic_prefix: str = Field(
        "fieldgate",
        pattern=r"^[^#+\x00]+$",
        description="Topics are <topic_prefix>/<gateway id>/<kind>.",
    )
    max_samples: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        10_000, description="Most samples in one telemetry message."
    )
    max_bytes: Annotated[int, Field(ge=1_024, le=256_000_000)] = Field(
        128_000,
        description=(
            "Most bytes in one telemetry message payload, in either encoding; only a message "
            "of a single sample larger than this exceeds it. The default fits AWS IoT Core "
            "(128 KB) and the other common cloud brokers."
        ),
    )
    encoding: Literal["json", "columns+deflate"] = Field(
        "json",
        description=(
            "Telemetry encoding. json: wire format v1 on <prefix>/<gw>/telemetry. "
            "columns+deflate: the same samples as a zlib-compressed JSON document of "
            "columns on <prefix>/<gw>/telemetry/columns-deflate: 6 to 23 times fewer bytes "
            "than json in bench/wire_bytes.py, for more CPU (the rows are parsed and "
            "re-encoded). docs/wire-format.md has a decoder."
        ),
    )
    linger: Annotated[float, Field(ge=0, le=600)] = Field(
        0.0,
        description=(
            "Seconds the uplink may hold new telemetry back to fill a message (until "
            "max_samples or max_bytes is reached). Fuller messages take fewer bytes per "
            "sample, most of all with columns+deflate; 0 sends at once."
        ),
    )
    window: Annotated[int, Field(ge=1, le=1_000)] = Field(
        16, description="QoS 1 messages in flight at once (published, PUBACK pending)."
    )
    window_bytes: Annotated[int, Field(ge=1_024, le=1_000_000_000)] = Field(
        1_000_000,
        description=(
            "Most payload bytes in flight at once (published, PUBACK pending), whatever "
            "the number of messages; a single message larger than this goes out alone. "
            "This bounds the memory the uplink holds for the broker. 1 MB in flight keeps "
            "about 10 MB/s moving at a 100 ms round trip."
        ),
    )
    publish_timeout: Annotated[float, Field(gt=0, le=300)] = Field(
        10.0,
        description=(
            "Seconds a publish may wait for its PUBACK; then the link is torn down and "
            "rebuilt and nothing is acknowledged."
        ),
    )
    backoff_initial: Annotated[float, Field(gt=0, le=60)] = Field(
        0.5, description="First reconnect delay in seconds (doubles, jittered)."
    )
    backoff_max: Annotated[float, Field(gt=0, le=3600)] = Field(
        30.0, description="Cap of the reconnect delay in seconds."
    )
    drain_grace: Annotated[float, Field(ge=0, le=600)] = Field(
        5.0,
        description=(
            "At shutdown or reload, keep forwarding the buffer for up to this many seconds "
            "so a small backlog leaves before the process does."
        ),
    )
    command_max_bytes: Annotated[int, Field(ge=64, le=16_000_000)] = Field(
        65_536, description="Command payloads larger than this are refused."
    )
    command_concurrency: Annotated[int, Field(ge=1, le=64)] = Field(
        4, description="Commands executed at the same time."
    )
    reply_cache: Annotated[int, Field(ge=1, le=10_000)] = Field(
        256, description="Recent request ids remembered to answer a redelivery once."
    )
    stats_interval: Annotated[float, Field(ge=0, le=86_400)] = Field(
        60.0,
        description=(
            "Seconds between two stats messages (the health figures /metrics shows) on "
            "<prefix>/<gw>/stats, the first right after each connect; 0 sends none."
        ),
    )
    commands: CommandsSection = Field(
        default_factory=CommandsSection,
        description="Which commands MQTT may run, and whether they must be signed.",
    )

    @model_validator(mode="after")
    def _backoff(self) -> UplinkSection:
        if self.backoff_initial > self.backoff_max:
            raise ValueError("uplink.backoff_initial must not exceed uplink.backoff_max")
        return self
