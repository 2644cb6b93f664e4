"""Build the aiomqtt client from the config: protocol, TLS, credentials, last will, session.

A new client is built for every connection attempt (:mod:`gateway.uplink.mqtt` holds the
client class and every use of aiomqtt's private parts). That way nothing paho-mqtt queued on a
dead connection is ever resent behind our back: after a reconnect the forwarder resends from
the store, with the same sequence numbers, and that is the only source of truth.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.uplink.config import BrokerSection, TlsSection
from gateway.uplink.mqtt import UplinkClient

log = logging.getLogger(__name__)

#: How long the broker keeps a persistent MQTT 5 session after we went away (seconds).
SESSION_EXPIRY_S = 7 * 86_400


class UplinkConfigError(Exception):
    """The broker settings cannot be used (a certificate file missing, a bad key)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def tls_context(tls: TlsSection) -> ssl.SSLContext:
    """A client TLS context: the CA file (or the system store), the client certificate, and
    no verification only when ``insecure_skip_verify`` says so."""
    try:
        ctx = ssl.create_default_context(
            cafile=str(tls.ca_file) if tls.ca_file is not None else None
        )
        if tls.cert_file is not None and tls.key_file is not None:
            ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    except (OSError, ssl.SSLError) as err:
        raise UplinkConfigError(
            f"uplink TLS files cannot be loaded ({err}); check uplink.broker.tls paths and "
            "that the key matches the certificate"
        ) from err
    if tls.insecure_skip_verify:
        log.warning("uplink TLS verification is OFF (uplink.broker.tls.insecure_skip_verify); "
                    "anyone on the path can impersonate the broker")
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def build_client(
    broker: BrokerSection,
    endpoint: Endpoint,
    *,
    client_id: str,
    will_topic: str,
    will_payload: bytes,
    window: int,
) -> UplinkClient:
    """One connection's client. Must be called inside the running event loop."""
    v5 = broker.protocol == "5"
    properties: Properties | None = None
    clean_session: bool | None = None
    clean_start: int | bool = paho.MQTT_CLEAN_START_FIRST_ONLY
    if v5:
        clean_start = not broker.persistent_session
        if broker.persistent_session:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = SESSION_EXPIRY_S
    else:
        clean_session = not broker.persistent_session
    client = UplinkClient(
        endpoint.host,
        endpoint.port,
        identifier=client_id,
        protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
        username=broker.username,
        password=broker.password.get_secret_value() if broker.password is not None else None,
        will=aiomqtt.Will(will_topic, will_payload, qos=1, retain=True),
        clean_session=clean_session,
        clean_start=clean_start,  # type: ignore[arg-type]
        properties=properties,
        # paho pings after `keepalive` s of silence and drops the link when the ping is not
        # answered within `keepalive` more: negotiating half the configured value bounds
        # the detection of a dead link to about the configured keepalive (+1 s of polling).
        keepalive=max(1, broker.keepalive // 2),
        timeout=broker.connect_timeout,
        # Our own window bounds what is in flight; paho must not hold back or queue more.
        max_inflight_messages=window + 8,
        tls_context=tls_context(broker.tls) if broker.tls is not None else None,
        logger=logging.getLogger("gateway.uplink.paho"),
    )
    client.pending_calls_threshold = window + 16
    client.watch_socket_errors()
    return client
