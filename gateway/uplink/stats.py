"""The periodic ``stats`` message: the gateway's health figures, pushed to the cloud.

Every ``uplink.stats_interval`` seconds (0: never) of a connected session the uplink
publishes the ``health.stats`` document (:mod:`gateway.health`, the figures ``/metrics``
exposes) on ``<prefix>/<gateway>/stats``, QoS 1, not retained, so the cloud sees every
gateway's health without scraping it. The first goes out right after each connect. A stats
message is not stored: while the link is down none is made, and none is sent late.
Schema: config/wire/stats.schema.json; docs/wire-format.md describes it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import aiomqtt

from gateway.clock import Clock
from gateway.commands import CommandRegistry
from gateway.health import COMMAND
from gateway.uplink.wire import WIRE_VERSION, Topics, encode_json

log = logging.getLogger(__name__)


def stats_topic(topics: Topics) -> str:
    return f"{topics.base}/stats"


def stats_message(gateway: str, boot: int, interval_s: float, figures: dict[str, Any]) -> bytes:
    return encode_json({"v": WIRE_VERSION, "gw": gateway, "boot": boot,
                        "interval_s": interval_s, **figures})


class StatsPublisher:
    """Publishes the stats message on one session's client until cancelled."""

    def __init__(self, *, commands: CommandRegistry, clock: Clock, topics: Topics,
                 gateway_id: str, boot: Callable[[], int], interval_s: float,
                 publish_timeout: float) -> None:
        self.commands = commands
        self.clock = clock
        self.topic = stats_topic(topics)
        self.gateway_id = gateway_id
        self.boot = boot
        self.interval_s = interval_s
        self.publish_timeout = publish_timeout
        #: Messages acknowledged by the broker (the same counter across sessions).
        self.sent = 0

    async def run(self, client: aiomqtt.Client) -> None:
        # On a fixed cadence from the connect: a slow publish does not push the next one back.
        due = self.clock.monotonic()
        while True:
            await self.publish_once(client)
            due += self.interval_s
            now = self.clock.monotonic()
            if due < now:  # a publish took longer than the interval: no burst to catch up
                due = now
            await self.clock.sleep(due - now)

    async def publish_once(self, client: aiomqtt.Client) -> bool:
        """Gather and publish one message; False when there was nothing to send or the
        publish failed (the session's own tasks notice a lost link)."""
        if self.commands.get(COMMAND) is None:
            log.debug("uplink stats: no %s command; nothing to publish", COMMAND)
            return False
        reply = await self.commands.execute(COMMAND, {})
        if not reply.get("ok"):
            log.warning("uplink stats: %s failed (%s); this stats message is skipped, the "
                        "next comes in %g s", COMMAND, reply.get("error"), self.interval_s)
            return False
        payload = stats_message(self.gateway_id, self.boot(), self.interval_s, reply["result"])
        try:
            await client.publish(self.topic, payload, qos=1, timeout=self.publish_timeout)
        except aiomqtt.MqttError as err:
            log.info("uplink stats: publishing on %s failed (%s); the next comes in %g s",
                     self.topic, err, self.interval_s)
            return False
        self.sent += 1
        return True
