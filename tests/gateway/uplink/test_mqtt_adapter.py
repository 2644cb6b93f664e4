"""gateway/uplink/mqtt.py is the only code that touches aiomqtt's and paho's private parts.
These tests pin what it relies on, against the installed libraries and a real mosquitto, so
an upgrade that moves them fails here."""

from __future__ import annotations

import asyncio
import inspect
import time

import aiomqtt
import paho.mqtt.client as paho
import pytest

from gateway.uplink import mqtt
from tests.support.mosquitto import Mosquitto, free_port
from tests.support.wait import stays, wait_until

WILL = aiomqtt.Will("adapter/status", b"lost", qos=1, retain=True)


def client(broker_port: int, *, timeout: float = 5.0) -> mqtt.UplinkClient:
    c = mqtt.UplinkClient("127.0.0.1", broker_port, identifier="adapter-test", will=WILL,
                          timeout=timeout, keepalive=5)
    c.watch_socket_errors()
    return c


async def test_the_private_attributes_are_where_the_adapter_expects_them() -> None:
    c = client(1)
    for name in mqtt.PRIVATE["aiomqtt.Client"]:
        assert hasattr(c, name), f"aiomqtt.Client has no {name} any more"
    assert isinstance(c._client, paho.Client)
    for name in mqtt.PRIVATE["paho.mqtt.client.Client"]:
        assert hasattr(c._client, name), f"paho Client has no {name} any more"
    assert callable(c._client._sock_close)
    assert isinstance(c._connected, asyncio.Future)
    assert isinstance(c._disconnected, asyncio.Future)
    assert c._loop is asyncio.get_running_loop()
    assert c._client.on_log == c._on_paho_log  # watch_socket_errors took
    params = list(inspect.signature(aiomqtt.Client._on_disconnect).parameters)
    assert params == ["self", "client", "userdata", "flags", "reason_code", "properties"]
    assert isinstance(c.pending_calls_threshold, int)  # public, set by build_client


async def watch_will(broker: Mosquitto, seen: list[bytes]) -> None:
    async with aiomqtt.Client(broker.host, broker.port, identifier="watcher") as w:
        await w.subscribe("adapter/status", qos=1)
        async for message in w.messages:
            seen.append(bytes(message.payload))  # type: ignore[arg-type]


async def test_an_error_in_a_session_aborts_and_the_broker_publishes_the_will(
        mosquitto: Mosquitto) -> None:
    seen: list[bytes] = []
    watcher = asyncio.create_task(watch_will(mosquitto, seen))
    try:
        c = client(mosquitto.port)
        t0 = time.monotonic()
        with pytest.raises(RuntimeError, match="boom"):
            async with mqtt.session(c, close_timeout=5):
                raise RuntimeError("boom")
        assert time.monotonic() - t0 < 2, "abort must not wait for a DISCONNECT handshake"
        await wait_until(lambda: seen, 10, what="the will, published by the broker")
        assert seen == [b"lost"]
    finally:
        watcher.cancel()


async def test_a_clean_session_disconnects_and_the_will_is_not_published(
        mosquitto: Mosquitto) -> None:
    seen: list[bytes] = []
    watcher = asyncio.create_task(watch_will(mosquitto, seen))
    try:
        c = client(mosquitto.port)
        async with mqtt.session(c, close_timeout=5) as s:
            await s.publish("adapter/other", b"x", qos=1)
        assert c._disconnected.done()  # the DISCONNECT handshake completed
        # the will is retained: a watcher that subscribes late still gets it, so after a
        # moment nothing seen means nothing published
        await stays(lambda: not seen, 1.0, what="no will")
    finally:
        watcher.cancel()


async def test_a_connection_closed_before_the_connack_fails_at_once_with_the_reason() -> None:
    async def slam(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    port = free_port()
    server = await asyncio.start_server(slam, "127.0.0.1", port)
    try:
        c = client(port, timeout=20)
        t0 = time.monotonic()
        with pytest.raises(aiomqtt.MqttError, match="closed before the broker accepted it"):
            async with mqtt.session(c, close_timeout=1):
                pass
        assert time.monotonic() - t0 < 5, "waited out the connect timeout"
    finally:
        server.close()
        await server.wait_closed()
