"""The uplink component: one supervised task that keeps a session with the broker.

A session is: connect (the client carries the retained *offline* last will), publish the
retained *online* birth message, subscribe to ``cmd/+``, then run the forwarder and the
command receiver side by side until the link fails; then wait a capped, jittered backoff and
start over. Whatever was not acknowledged is still in the store and goes out again.

Shutdown and reload call :meth:`Uplink.drain`: running commands finish (so ``reload`` gets
its reply out before the components are rebuilt), the forwarder keeps going until the
buffer is caught up or ``drain_grace`` runs out, in-flight publishes are awaited, a retained
*offline* status (reason ``shutdown``) replaces the birth message, and the client
disconnects cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

import aiomqtt

from gateway.commands import Command, NoArgs
from gateway.components import Component, ComponentContext, TaskFactory
from gateway.net import is_loopback
from gateway.supervisor import Backoff
from gateway.uplink import mqtt
from gateway.uplink.auth import CommandPolicy
from gateway.uplink.broker import EmbeddedBroker
from gateway.uplink.client import Endpoint, build_client
from gateway.uplink.config import BrokerSection, UplinkSection
from gateway.uplink.downlink import Downlink
from gateway.uplink.forwarder import CONSUMER, Forwarder, LinkLost, ReplyOutbox, UplinkStats
from gateway.uplink.messages import MessageSender
from gateway.uplink.stats import StatsPublisher
from gateway.uplink.wire import Topics, status_message

log = logging.getLogger(__name__)

_STATS_LOG_EVERY_S = 60.0


class Uplink(Component):
    name = "uplink"

    def __init__(self, ctx: ComponentContext[UplinkSection]) -> None:
        self.ctx = ctx
        self.cfg = cfg = ctx.config
        self.gateway_id = ctx.site.gateway.id
        self.topics = Topics.of(cfg.topic_prefix, self.gateway_id)
        # The embedded broker's port is known once it listens (it may be 0: any free one).
        self.embedded: EmbeddedBroker | None = None
        if cfg.broker is not None:
            self.broker_cfg = cfg.broker
        else:
            assert cfg.embedded_broker is not None, "the factory checks one of them is set"
            self.broker_cfg = BrokerSection(host=cfg.embedded_broker.host)
            self.embedded = EmbeddedBroker(cfg.embedded_broker)
        self.endpoint = Endpoint(self.broker_cfg.host, self.broker_cfg.port)
        self.stats = UplinkStats()
        self.outbox = ReplyOutbox()
        self.downlink = Downlink(
            topics=self.topics, cfg=cfg, gateway_id=self.gateway_id,
            execute=self._execute, outbox=self.outbox, kv=ctx.store.kv("uplink"),
            now_ms=ctx.clock.now_ms,
            policy=CommandPolicy(cfg.commands, gateway_id=self.gateway_id,
                                 lookup=lambda name: self.ctx.commands.get(name),
                                 now_ms=ctx.clock.now_ms),
        )
        self.stats_publisher = StatsPublisher(
            commands=ctx.commands, clock=ctx.clock, topics=self.topics,
            gateway_id=self.gateway_id, boot=lambda: ctx.store.boot_count,
            interval_s=cfg.stats_interval, publish_timeout=cfg.publish_timeout)
        self.connected = asyncio.Event()
        self._forwarder: Forwarder | None = None
        self._drain_deadline: float | None = None
        self._session = 0
        self._failures = 0  # connection attempts in a row that failed
        self._idle = asyncio.Event()  # set while no session is running
        self._idle.set()

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        if self.embedded is None and self.broker_cfg.tls is None \
                and not is_loopback(self.broker_cfg.host):
            log.warning("uplink: broker %s is not on this machine and uplink.broker.tls is not "
                        "set: telemetry, commands and credentials cross the network in clear "
                        "text. Add a tls section (port 8883 is usual)", self.endpoint)
        await self.ctx.store.register_consumer(CONSUMER)
        await self.downlink.load()
        if self.embedded is not None:
            self.endpoint = await self.embedded.start()
        self.ctx.commands.register(Command(
            "uplink.stats", NoArgs, self._stats_command,
            "Uplink counters: connects, messages, samples, events, replies, acked seq.",
            read_only=True,
        ))

    def tasks(self) -> Iterable[tuple[str, TaskFactory]]:
        yield "uplink", self.run

    async def drain(self) -> None:
        loop = asyncio.get_running_loop()
        self._drain_deadline = loop.time() + self.cfg.drain_grace
        await self.downlink.wait_idle(timeout=max(1.0, self.cfg.drain_grace))
        if self._forwarder is not None:
            self._forwarder.wake()
        await self._idle.wait()

    async def stop(self) -> None:
        await self.downlink.cancel()
        if self.embedded is not None:
            await self.embedded.stop()

    async def _execute(self, name: str, args: Any) -> dict[str, Any]:
        return await self.ctx.commands.execute(name, args)

    async def _stats_command(self, _: NoArgs) -> dict[str, Any]:
        return {**self.stats.as_dict(), "connected": self.connected.is_set(),
                "broker": str(self.endpoint), "commands_received": self.downlink.received,
                "commands_rejected": self.downlink.rejected,
                "stats_messages": self.stats_publisher.sent}

    # -- the session loop ----------------------------------------------------------------

    async def run(self) -> None:
        backoff = Backoff(initial=self.cfg.backoff_initial, cap=self.cfg.backoff_max)
        stats_task = asyncio.create_task(self._log_stats(), name="uplink-stats")
        try:
            while self._drain_deadline is None:
                self._idle.clear()
                try:
                    await self._session_once(backoff)
                except LinkLost as err:
                    self._lost(err)
                finally:
                    self.connected.clear()
                    self._forwarder = None
                    self._idle.set()
                if self._drain_deadline is not None:
                    break
                await self.ctx.clock.sleep(backoff.next_delay())
        finally:
            stats_task.cancel()
            self._idle.set()

    def _lost(self, err: LinkLost) -> None:
        self.stats.disconnects += 1
        self.stats.last_error = str(err)
        self._failures = 0 if self.connected.is_set() else self._failures + 1
        quiet = self._failures > 3 and self._failures % 20 != 0
        log.log(logging.INFO if quiet else logging.WARNING,
                "uplink to %s is down (%s); buffering locally and reconnecting with backoff "
                "(up to %g s). Check the broker and the network if this persists",
                self.endpoint, err, self.cfg.backoff_max)

    async def _session_once(self, backoff: Backoff) -> None:
        self._session += 1
        client = build_client(
            self.broker_cfg, self.endpoint, client_id=self.gateway_id,
            will_topic=self.topics.status, will_payload=self._status("offline", "lost"),
            window=self.cfg.window,
        )
        async with contextlib.AsyncExitStack() as stack:
            try:
                # A clean exit disconnects; an error aborts the link (the broker publishes
                # our will, which is the truth; the birth message follows on reconnect).
                await stack.enter_async_context(
                    mqtt.session(client, self.broker_cfg.connect_timeout))
            except aiomqtt.MqttError as err:
                raise LinkLost(f"connect failed: {err}") from err
            try:
                await self._serve(client, backoff)
            except aiomqtt.MqttError as err:
                raise LinkLost(str(err)) from err

    async def _serve(self, client: aiomqtt.Client, backoff: Backoff) -> None:
        backoff.reset()
        self.stats.connects += 1
        await self._publish_status(client, "online")
        await client.subscribe(self.topics.commands, qos=1,
                               timeout=self.broker_cfg.connect_timeout)
        log.info("uplink connected to %s as %s (session %d)", self.endpoint,
                 self.gateway_id, self._session)
        self.connected.set()
        forwarder = Forwarder(
            client=client, store=self.ctx.store, topics=self.topics, cfg=self.cfg,
            gateway_id=self.gateway_id, boot=self.ctx.store.boot_count,
            outbox=self.outbox, stats=self.stats, session=self._session,
            drain_deadline=lambda: self._drain_deadline,
        )
        self._forwarder = forwarder
        async with contextlib.AsyncExitStack() as tasks:
            receiver = asyncio.create_task(self._receive(client), name="uplink-receive")
            tasks.push_async_callback(_cancel_and_wait, receiver)
            if self.cfg.stats_interval > 0:
                stats = asyncio.create_task(self.stats_publisher.run(client),
                                            name="uplink-stats-message")
                tasks.push_async_callback(_cancel_and_wait, stats)
            sender = asyncio.create_task(self._send_messages(client), name="uplink-messages")
            tasks.push_async_callback(_cancel_and_wait, sender)
            await forwarder.run()
        # Only a drain ends the forwarder without an error: say goodbye.
        await self._publish_status(client, "offline", "shutdown")

    async def _receive(self, client: aiomqtt.Client) -> None:
        """Hand commands to the downlink; a lost link ends the iteration with an error,
        which is turned into LinkLost so the forwarder stops too."""
        try:
            async for message in client.messages:
                payload = message.payload
                data = payload if isinstance(payload, bytes) else str(payload).encode()
                self.downlink.handle(str(message.topic), data)
        except aiomqtt.MqttError as err:
            if self._forwarder is not None:
                self._forwarder.fail(LinkLost(f"connection lost: {err}"))

    async def _send_messages(self, client: aiomqtt.Client) -> None:
        """The queued messages (reports, daily KPIs: gateway/uplink/messages.py)."""
        try:
            await MessageSender(client, self.ctx.store, self.topics.base,
                                self.cfg.publish_timeout).run()
        except aiomqtt.MqttError as err:
            if self._forwarder is not None:
                self._forwarder.fail(LinkLost(f"publishing a queued message failed: {err}"))

    def _status(self, state: str, reason: str | None = None) -> bytes:
        return status_message(
            self.gateway_id, state, version=self.ctx.version, boot=self.ctx.store.boot_count,
            started_ms=self.ctx.started_ms, ts_ms=self.ctx.clock.now_ms(), reason=reason,
        )

    async def _publish_status(self, client: aiomqtt.Client, state: str,
                              reason: str | None = None) -> None:
        await client.publish(self.topics.status, self._status(state, reason), qos=1,
                             retain=True, timeout=self.cfg.publish_timeout)

    async def _log_stats(self) -> None:
        last = (0, 0)
        while True:
            await asyncio.sleep(_STATS_LOG_EVERY_S)
            now = (self.stats.samples, self.stats.events)
            if now != last:
                log.info("uplink: %d samples and %d events forwarded in the last %.0f s "
                         "(acked up to seq %d)", now[0] - last[0], now[1] - last[1],
                         _STATS_LOG_EVERY_S, self.stats.acked_seq)
                last = now


async def _cancel_and_wait(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, LinkLost):
        await task
