"""The embedded demo broker: amqtt in-process, on loopback, when no broker is configured.

This exists so that ``fieldgate run -c config/demo.yaml`` on a fresh machine shows data
flowing with nothing else installed. It is not meant for production: it keeps nothing on
disk, has no authentication, and shares the gateway's event loop. Point
``uplink.broker`` at a real broker (mosquitto, EMQX, a cloud IoT hub) for anything else.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from gateway.errors import StartupError
from gateway.uplink.client import Endpoint
from gateway.uplink.config import EmbeddedBrokerSection

log = logging.getLogger(__name__)


class EmbeddedBroker:
    """An amqtt broker listening on ``host:port`` (port 0: a free one, see :attr:`endpoint`)."""

    def __init__(self, cfg: EmbeddedBrokerSection) -> None:
        self.cfg = cfg
        self.endpoint = Endpoint(cfg.host, cfg.port)
        self._broker: Any = None

    async def start(self) -> Endpoint:
        from amqtt.broker import Broker  # imported here: only the demo needs it

        port = self.cfg.port or _free_port(self.cfg.host)
        self.endpoint = Endpoint(self.cfg.host, port)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.cfg.host}:{port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {
                "allow_anonymous": True}},
        }
        # amqtt logs every connection at INFO; keep the demo's console readable.
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        broker = Broker(config)
        amqtt_log = logging.getLogger("amqtt")
        level = amqtt_log.level
        amqtt_log.setLevel(logging.CRITICAL)  # a failed start is reported below, once
        try:
            await broker.start()
        except Exception as err:
            raise StartupError(
                f"the embedded MQTT broker cannot listen on {self.endpoint} ({err})",
                "is another broker (or another fieldgate) running there? Set "
                "uplink.embedded_broker.port, or configure uplink.broker to use that one",
            ) from err
        finally:
            amqtt_log.setLevel(level)
        self._broker = broker
        log.info("no uplink.broker configured: started the embedded demo MQTT broker on %s "
                 "(subscribe with: mosquitto_sub -h %s -p %d -t '#' -v)",
                 self.endpoint, self.endpoint.host, self.endpoint.port)
        return self.endpoint

    async def stop(self) -> None:
        if self._broker is not None:
            broker, self._broker = self._broker, None
            try:
                await asyncio.wait_for(broker.shutdown(), 5)
            except Exception as err:
                log.warning("the embedded MQTT broker did not shut down cleanly: %s", err)


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
