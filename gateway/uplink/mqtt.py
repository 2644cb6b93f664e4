"""The one door to aiomqtt's (and paho-mqtt's) private parts.

The uplink needs three things aiomqtt 2.x does not offer publicly:

- fail a connection attempt at once when the socket dies before the CONNACK (aiomqtt waits
  out its whole timeout and then says only "Operation timed out"), with the socket error
  paho logged, so the log says why (a TLS 1.3 broker refusing our client certificate);
- drop a failed link without the DISCONNECT handshake (on a dead socket aiomqtt waits its
  full timeout; and a live broker must publish our last will, because the link *was* lost);
- and so a session that ends cleanly disconnects, one that fails aborts.

Everything that touches a private attribute is in this module, and the attributes it relies
on are listed in :data:`PRIVATE`. ``tests/gateway/uplink/test_mqtt_adapter.py`` checks them
against the installed library (and the behaviour against a real mosquitto), so an aiomqtt or
paho upgrade that moves them fails there, not in the field.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.properties import Properties

log = logging.getLogger(__name__)

#: The private attributes used here: aiomqtt.Client's and its paho client's (``_client``).
PRIVATE = {
    "aiomqtt.Client": ("_client", "_connected", "_disconnected", "_loop", "_on_disconnect"),
    "paho.mqtt.client.Client": ("_sock_close", "on_log"),
}


class UplinkClient(aiomqtt.Client):
    """An aiomqtt client that fails a connection lost before the CONNACK at once, with the
    last socket error paho saw (e.g. ``TLSV13_ALERT_CERTIFICATE_REQUIRED``), so the log says
    why and the backoff is not stretched by the connect timeout."""

    _last_socket_error: str | None = None

    def watch_socket_errors(self) -> None:
        """Call once after construction: remember paho's socket errors for the message."""
        self._client.on_log = self._on_paho_log

    def _on_paho_log(self, _client: Any, _userdata: Any, level: int, buf: str) -> None:
        if level == paho.MQTT_LOG_ERR:
            self._last_socket_error = buf

    def _on_disconnect(self, client: paho.Client, userdata: Any,
                       flags: paho.DisconnectFlags, reason_code: Any,
                       properties: Properties | None = None) -> None:
        if not self._connected.done():
            reason = self._last_socket_error or f"reason code {reason_code}"
            self._loop.call_soon_threadsafe(self._fail_connect, reason)
            return
        super()._on_disconnect(client, userdata, flags, reason_code, properties)

    def _fail_connect(self, reason: str) -> None:
        connected = self._connected
        if connected.done():
            return
        connected.set_exception(aiomqtt.MqttError(
            f"the connection was closed before the broker accepted it ({reason})"
        ))
        # If the connect already gave up, nobody awaits this future: mark it retrieved.
        connected.add_done_callback(_retrieve)

    def abort(self) -> None:
        """Drop the link: close the socket, no DISCONNECT. A live broker then publishes our
        will. The client is not used again (the uplink builds one per connection)."""
        with contextlib.suppress(Exception):
            self._client._sock_close()
        disconnected = self._disconnected
        if disconnected.done() and not disconnected.cancelled():
            disconnected.exception()  # retrieved, so asyncio does not warn about it


def _retrieve(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.exception()


@contextlib.asynccontextmanager
async def session(client: UplinkClient, close_timeout: float) -> AsyncIterator[UplinkClient]:
    """Connect; on a clean exit disconnect (within ``close_timeout``), on any error or
    cancellation abort (:meth:`UplinkClient.abort`). Connect errors are ``aiomqtt.MqttError``.
    """
    await client.__aenter__()  # aiomqtt's own context entry; its exit is chosen below
    try:
        yield client
    except BaseException:
        client.abort()
        raise
    with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
        await asyncio.wait_for(client.__aexit__(None, None, None), close_timeout)
