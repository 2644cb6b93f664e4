"""The life of one OPC-UA device: connect, resolve points, acquire, and on any loss mark the
device offline and reconnect with capped, jittered backoff. The task never ends on its own.

How a lost connection is detected: we use asyncua's connection supervisor with its own
auto-reconnect switched off. Every ``watchdog_interval`` seconds it reads the server-state
node with a timeout of at most that interval, and it reacts at once when the transport closes
(server restart). Either way it calls our ``connection_lost_callback``, which ends the
acquisition; a failing Read or a subscription status change ends it too. We then build a fresh
client rather than let asyncua patch the old one, so the device status, the backoff, the
re-resolution of browse paths (node ids may change when a server restarts) and the re-creation
of subscriptions are all in one place and visible in our log.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
from collections.abc import Awaitable, Callable, Coroutine
from time import monotonic
from typing import Any

from asyncua import Client, ua
from asyncua.client.ua_client import UaClientState

from drivers.base import DriverContext, NotWritable, UnknownPoint, WriteFailed, WriteResult
from drivers.opcua import liblog
from drivers.opcua.acquire import (
    BoundPoint,
    ConnectionLost,
    SubscriptionGroup,
    count_failure,
    poll_group,
)
from drivers.opcua.config import Mode, OpcuaDeviceConfig, PointConfig, SecurityPolicy
from drivers.opcua.convert import CoercionError, coerce_for_write
from drivers.opcua.security import (
    ClientCredentials,
    TrustList,
    apply_security,
    client_credentials,
    refused_certificate_reason,
)
from gateway.model import DeviceStatus, Quality, Sample, Value

log = logging.getLogger(__name__)

#: How long a connection must have stayed up before the backoff starts again from the bottom.
STABLE_AFTER = 30.0
#: For this long after a loss, retries wait at most ``reconnect.max_delay_first_minute``.
FIRST_MINUTE = 60.0

liblog.install()


class CertificateRefused(Exception):
    """The server refused our client certificate; the message says what to do."""


class DeviceSession:
    def __init__(
        self,
        cfg: OpcuaDeviceConfig,
        ctx: DriverContext,
        ready: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self._ready = ready  # awaited before connecting (the in-process simulator starting)
        self.points: dict[str, PointConfig] = {p.name: p for g in cfg.groups for p in g.points}
        self.client: Client | None = None
        self.bound: dict[str, BoundPoint] = {}
        self._types: dict[str, ua.VariantType] = {}
        self._trust = TrustList(
            list(cfg.security.trusted_server_certificates),
            cfg.security.allow_unknown_server_certificate,
            cfg.id,
        )
        self._creds: ClientCredentials | None = None
        self.connections = 0
        #: Poll statistics: each Read of a polling group (acquire.py), each connect attempt
        #: (answered when the device went online) and each write count as one request.
        self.stats = ctx.poll_stats(cfg.id)
        self._attempt_started = 0.0
        self.closed = asyncio.Event()  # set while no client is open (for an orderly shutdown)
        self.closed.set()

    # -- the supervised task ---------------------------------------------------------------

    async def run(self) -> None:
        if self._ready is not None:
            await self._ready()
        rc = self.cfg.reconnect
        delay = rc.initial_delay
        failures = 0  # consecutive attempts without reaching online
        outage_since = self.ctx.clock.monotonic()
        while True:
            started = self.ctx.clock.monotonic()
            before = self.connections
            try:
                await self._connected_session()
                reason = "connection ended"
            except asyncio.CancelledError:
                raise
            except Exception as err:
                _raise_if_cancelled(err)
                if self.connections == before:  # the attempt never got online
                    self._count_failed_attempt(err)
                reason = self._describe(err)
            now = self.ctx.clock.monotonic()
            if self.connections > before:  # we were online: this is a fresh loss
                failures = 0
                outage_since = now
                if now - started > STABLE_AFTER:
                    delay = rc.initial_delay
            failures += 1
            wait = delay * random.uniform(0.8, 1.2)
            # A restarting server is usually back within a minute: probe it often meanwhile
            # (time to data), and back off only for a longer outage.
            first_minute = now - outage_since < FIRST_MINUTE
            if first_minute:
                wait = min(wait, rc.max_delay_first_minute)
            self.ctx.set_status(self.cfg.id, DeviceStatus.OFFLINE, reason)
            # WARNING when the device goes offline (and every 10th failed attempt after),
            # INFO for the retries in between: a long outage must not flood the journal.
            level = logging.WARNING if failures % 10 == 1 else logging.INFO
            log.log(
                level,
                "opcua device %s: no connection to %s (%s); device marked offline, reconnecting "
                "in %.1f s (attempt %d)",
                self.cfg.id,
                self.cfg.url,
                reason,
                wait,
                failures,
            )
            await self.ctx.clock.sleep(wait)
            cap = min(rc.max_delay_first_minute, rc.max_delay) if first_minute else rc.max_delay
            delay = min(delay * 2, max(cap, rc.initial_delay))

    async def _connected_session(self) -> None:
        lost = asyncio.Event()
        loss: list[Exception] = []

        async def on_lost(exc: Exception) -> None:
            loss.append(exc)
            lost.set()

        self.closed.clear()
        self._attempt_started = monotonic()
        try:
            client = await self._connect(on_lost)
        except BaseException:
            self.closed.set()
            raise
        try:
            refused = await self._bind_points(client)
            subs, polls = [], []
            for group in self.cfg.groups:
                points = [self.bound[p.name] for p in group.points if p.name in self.bound]
                if not points:
                    continue
                if self.cfg.group_mode(group) is Mode.SUBSCRIPTION:
                    sub = SubscriptionGroup(client, self.cfg, group, points, self.ctx)
                    refused += await sub.create()
                    subs.append(sub)
                else:
                    polls.append((group, points))
            self.client = client
            self.connections += 1
            self.stats.ok(monotonic() - self._attempt_started)
            self.ctx.set_status(self.cfg.id, DeviceStatus.ONLINE, f"connected to {self.cfg.url}")
            log.info(
                "opcua device %s: connected to %s (security %s), %d subscription and %d polling "
                "group(s) running",
                self.cfg.id,
                self.cfg.url,
                self._security_label(),
                len(subs),
                len(polls),
            )
            if refused:
                await self.ctx.emit(refused)
            tg = asyncio.TaskGroup()
            try:
                async with tg:
                    for sub in subs:
                        tg.create_task(sub.run(),
                                       name=f"opcua-sub[{self.cfg.id}/{sub.group.name}]")
                    for group, points in polls:
                        tg.create_task(
                            poll_group(client, self.cfg, group, points, self.ctx),
                            name=f"opcua-poll[{self.cfg.id}/{group.name}]",
                        )
                    tg.create_task(self._watch(lost, loss), name=f"opcua-watch[{self.cfg.id}]")
            finally:
                _take_back_group_cancel(tg)
        except ExceptionGroup as group_err:  # report the first failure of the task group
            raise _first_leaf(group_err) from None
        finally:
            self.client = None
            await self._dispose(client)
            self.closed.set()

    @staticmethod
    async def _watch(lost: asyncio.Event, loss: list[Exception]) -> None:
        await lost.wait()
        raise ConnectionLost(f"watchdog: {loss[0]!r}" if loss else "watchdog")

    async def _connect(self, on_lost: Callable[[Exception], Coroutine[Any, Any, None]]) -> Client:
        cfg = self.cfg
        if self._creds is None and cfg.security.policy is not SecurityPolicy.NONE:
            self._creds = await client_credentials(cfg.security, cfg.id, self.ctx.state_dir)
        client = Client(
            cfg.url, timeout=cfg.request_timeout, watchdog_intervall=cfg.watchdog_interval
        )
        client.name = client.description = f"fieldgate {cfg.id}"
        client.session_timeout = 120_000  # a dead gateway's session must not linger for an hour
        client.connection_lost_callback = on_lost
        if cfg.auth is not None:
            client.set_user(cfg.auth.username)
            client.set_password(cfg.auth.password.get_secret_value())
        try:
            async with asyncio.timeout(cfg.request_timeout * 3):
                await apply_security(client, cfg.security, self._creds, self._trust)
                await client.connect()
        except BaseException as err:
            await self._dispose(client)
            refused = (refused_certificate_reason(err, self._creds.certificate)
                       if self._creds is not None and self._trust.last_refused is None else None)
            if refused is not None:
                raise CertificateRefused(refused) from err
            raise
        return client

    async def _bind_points(self, client: Client) -> list[Sample]:
        """Resolve every point to a node id on this connection; unresolvable ones go BAD."""
        self.bound = {}
        self._types = {}
        bad: list[Sample] = []
        now = self.ctx.clock.now_ms()
        objects = client.nodes.objects
        namespaces: list[str] | None = None
        for point in self.points.values():
            if point.node is not None and point.node.startswith("nsu="):
                if namespaces is None:
                    namespaces = await client.get_namespace_array()
                uri, rest = point.node[4:].split(";", 1)
                if uri not in namespaces:
                    log.warning(
                        "opcua device %s: namespace %s of point %s is not on the server; the "
                        "point is reported bad. Check the node id",
                        self.cfg.id,
                        uri,
                        point.name,
                    )
                    bad.append(Sample(self.cfg.id, point.name, now, None, Quality.BAD))
                    continue
                node_id = ua.NodeId.from_string(f"ns={namespaces.index(uri)};{rest}")
                self.bound[point.name] = BoundPoint(point, node_id)
                continue
            if point.node is not None:
                self.bound[point.name] = BoundPoint(point, ua.NodeId.from_string(point.node))
                continue
            assert point.path is not None
            try:
                node = await objects.get_child(point.path.split("/"))
            except ua.UaStatusCodeError as err:
                log.warning(
                    "opcua device %s: browse path %s of point %s does not resolve (%s); the point "
                    "is reported bad. Check the path with 'fieldgate opcua browse %s'",
                    self.cfg.id,
                    point.path,
                    point.name,
                    type(err).__name__,
                    self.cfg.url,
                )
                bad.append(Sample(self.cfg.id, point.name, now, None, Quality.BAD))
                continue
            self.bound[point.name] = BoundPoint(point, node.nodeid)
        return bad

    async def _dispose(self, client: Client) -> None:
        """Close a client whatever state it is in, without hanging on a dead socket."""
        try:
            async with asyncio.timeout(2):
                if client.uaclient.state is UaClientState.CONNECTED:
                    await client.disconnect()
                else:
                    await client.close_session()
        except Exception as err:
            log.debug("opcua device %s: ignoring error while closing: %r", self.cfg.id, err)
        finally:
            client.disconnect_socket()

    # -- writes ------------------------------------------------------------------------------

    async def write(self, point: str, value: Value) -> WriteResult:
        cfg = self.points.get(point)
        if cfg is None:
            raise UnknownPoint(self.cfg.id, f"no point {point!r}")
        if not cfg.writable:
            raise NotWritable(self.cfg.id, f"point {point!r} is not writable (set writable: true)")
        client, bound = self.client, self.bound.get(point)
        if client is None or bound is None:
            raise WriteFailed(self.cfg.id, f"not connected to {self.cfg.url}; write not sent")
        started = monotonic()
        try:
            vtype = self._types.get(point)
            if vtype is None:
                vtype = await client.get_node(bound.node_id).read_data_type_as_variant_type()
                self._types[point] = vtype
            variant = coerce_for_write(value, vtype)
            params = ua.WriteParameters()
            params.NodesToWrite = [
                ua.WriteValue(
                    NodeId=bound.node_id,
                    AttributeId=ua.AttributeIds.Value,
                    Value=ua.DataValue(variant),
                )
            ]
            results = await client.uaclient.write(params)
        except CoercionError as err:  # refused here: nothing was sent for the value
            raise WriteFailed(self.cfg.id, f"point {point!r}: {err}") from err
        except (ua.UaError, OSError, TimeoutError) as err:
            count_failure(self.stats, f"write of point {point}", err, started)
            raise WriteFailed(self.cfg.id, f"point {point!r}: {self._describe(err)}") from err
        status = results[0]
        if not status.is_good():
            self.stats.error("exception", f"write of point {point}: server answered "
                                          f"{status.name}", monotonic() - started)
            raise WriteFailed(
                self.cfg.id, f"point {point!r}: server refused the write: {status.name}"
            )
        self.stats.ok(monotonic() - started)
        return WriteResult(variant.Value)

    # -- helpers -----------------------------------------------------------------------------

    def _count_failed_attempt(self, err: Exception) -> None:
        what = f"connect to {self.cfg.url}"
        if isinstance(err, CertificateRefused):  # the server answered: not with us
            self.stats.error("exception", f"{what}: {err}", monotonic() - self._attempt_started)
        else:
            count_failure(self.stats, what, err, self._attempt_started)

    def _security_label(self) -> str:
        sec = self.cfg.security
        return "None" if sec.policy is SecurityPolicy.NONE else f"{sec.policy}/{sec.mode}"

    def _describe(self, err: BaseException) -> str:
        refused = self._trust.last_refused
        if refused is not None:
            self._trust.last_refused = None
            return f"{refused}; add it to trusted_server_certificates if this is the right server"
        if isinstance(err, ua.UaStatusCodeError):
            return f"server answered {ua.StatusCode(err.code).name}"
        if isinstance(err, TimeoutError):
            return "timed out"
        if isinstance(err, ConnectionRefusedError):
            return "connection refused: is the server running and the port right?"
        if isinstance(err, OSError):
            return err.strerror or type(err).__name__
        return str(err) or type(err).__name__


def _raise_if_cancelled(err: Exception) -> None:
    """Turn a failure that swallowed a cancel of this task back into the cancel.

    Python 3.11's ``asyncio.wait_for`` (asyncua's socket connect uses it) returns or raises
    the awaited result when a cancel arrives after that result is ready: against a refused
    port, a cancel just after the refusal comes out as ``ConnectionRefusedError``. The retry
    loop would then run on for ever after a reload or shutdown cancelled it. The task still
    counts the cancel (``cancelling()``), so honour it here.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError() from err


def _take_back_group_cancel(tg: asyncio.TaskGroup) -> None:
    """Undo the cancel a Python 3.11 TaskGroup leaves on its parent task.

    When a child fails while the group waits in ``__aexit__`` (a lost connection ends our
    group that way), 3.11 cancels the parent to wake it but takes the cancel back only if it
    was sent before ``__aexit__`` began (fixed in 3.12). The task's ``cancelling()`` would stay
    raised for ever and :func:`_raise_if_cancelled` would take the next failure for a cancel.
    (Our group's body never awaits, so no child can fail before ``__aexit__`` begins.)
    """
    task = asyncio.current_task()
    if (sys.version_info < (3, 12) and task is not None and task.cancelling()
            and getattr(tg, "_parent_cancel_requested", False)):
        task.uncancel()


def _first_leaf(err: BaseException) -> BaseException:
    while isinstance(err, BaseExceptionGroup):
        err = err.exceptions[0]
    return err
