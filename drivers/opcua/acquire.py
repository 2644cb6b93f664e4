"""Acquisition of one point group on one live connection: polling (batched Read requests) or a
subscription (monitored items with sampling interval, queue size and deadband).

Both runners live exactly as long as the connection: they raise on a transport error so the
device session tears the connection down and reconnects; they never swallow a lost link.
Subscription notifications arrive in bursts (one publish response at a time); the consumer
collects one burst and emits it as one batch, so a 5,000-item plant costs one ``emit`` per
publish, not 5,000.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from time import monotonic

from asyncua import Client, ua
from asyncua.common.subscription import (
    DataChangeEvent,
    OverflowPolicy,
    StatusChangeEvent,
    Subscription,
)

from drivers.base import DriverContext
from drivers.opcua.config import Deadband, DeadbandType, GroupConfig, OpcuaDeviceConfig, PointConfig
from drivers.opcua.convert import quality_of, timestamp_of, value_of
from gateway.model import Quality, Sample
from gateway.pollstats import PollStats

log = logging.getLogger(__name__)

#: Samples held between the subscription consumer and ``emit``; beyond it the consumer waits
#: (backpressure) and asyncua's own queue absorbs the rest, warning when it overflows.
MAX_PENDING = 50_000
#: Items per CreateMonitoredItems/Read call while setting up (servers limit operations per call).
PER_CALL = 1000
#: On a lost connection, how long we try to hand the last received samples on.
FLUSH_ON_CLOSE_TIMEOUT = 2.0


#: ns=0 ids of SByte..Double, Number, Integer, UInteger, Decimal.
_NUMERIC_TYPE_IDS = {*range(2, 12), 26, 27, 28, 50}


class ConnectionLost(Exception):
    """The link to the server is gone (transport closed, watchdog probe failed)."""


#: Service results that mean the link or session is gone rather than a refused request.
_LINK_CODES = frozenset({
    ua.StatusCodes.BadConnectionClosed,
    ua.StatusCodes.BadSecureChannelClosed,
    ua.StatusCodes.BadSecureChannelIdInvalid,
    ua.StatusCodes.BadServerNotConnected,
    ua.StatusCodes.BadSessionClosed,
    ua.StatusCodes.BadSessionIdInvalid,
    ua.StatusCodes.BadCommunicationError,
})


def error_kind(err: BaseException) -> str:
    """The poll-statistics kind of a failed request (gateway/pollstats.py)."""
    if isinstance(err, TimeoutError):
        return "timeout"
    if isinstance(err, ua.UaStatusCodeError):  # the server answered with a bad status
        return "connection" if err.code in _LINK_CODES else "exception"
    if isinstance(err, OSError | ConnectionLost | EOFError):  # refused, reset, closed
        return "connection"
    if isinstance(err, ua.UaError):  # an answer asyncua could not take apart
        return "bad_reply"
    return "other"


def error_text(err: BaseException) -> str:
    """A short description of a failed request for ``PollStats.last_error``."""
    if isinstance(err, ua.UaStatusCodeError):
        return f"server answered {ua.StatusCode(err.code).name}"
    if isinstance(err, TimeoutError):
        return "no answer in time"
    return str(err) or type(err).__name__


def count_failure(stats: PollStats, what: str, err: BaseException, started: float) -> None:
    """Count one failed request; an answered one (a bad status) keeps its latency."""
    kind = error_kind(err)
    latency = monotonic() - started if kind == "exception" else None
    stats.error(kind, f"{what}: {error_text(err)}", latency)


@dataclass
class BoundPoint:
    """A configured point resolved to a node id on the current connection."""

    config: PointConfig
    node_id: ua.NodeId
    # Percent deadband enforced on our side: asyncua's server (and some PLCs) ignore it.
    percent_width: float | None = None
    last_value: float | None = field(default=None, repr=False)

    def passes_deadband(self, value: object) -> bool:
        if self.percent_width is None or not isinstance(value, int | float):
            return True
        if self.last_value is not None and abs(value - self.last_value) <= self.percent_width:
            return False
        self.last_value = float(value)
        return True


def to_sample(
    device: OpcuaDeviceConfig, point: str, dv: ua.DataValue | None, now_ms: int
) -> Sample:
    """One data value as a sample; a value without a sample representation is BAD."""
    if dv is None:
        return Sample(device.id, point, now_ms, None, Quality.BAD)
    raw = dv.Value.Value if dv.Value is not None else None
    value, ok = value_of(raw)
    quality = quality_of(dv.StatusCode) if ok else Quality.BAD
    if not ok:
        log.debug("opcua device %s: point %s has unsupported value %r", device.id, point, raw)
    if quality is Quality.BAD:  # OPC-UA Part 4: the value of a Bad data value is not to be used
        value = None
    return Sample(device.id, point, timestamp_of(dv, device.timestamp, now_ms), value, quality)


#: Read results that mean the point as configured can never be read (not a passing state).
UNREADABLE_NODE = frozenset({
    ua.StatusCodes.BadNodeIdUnknown,
    ua.StatusCodes.BadNodeIdInvalid,
    ua.StatusCodes.BadAttributeIdInvalid,
    ua.StatusCodes.BadNotReadable,
    ua.StatusCodes.BadUserAccessDenied,
})


def _warn_unreadable(
    device: OpcuaDeviceConfig,
    group: GroupConfig,
    points: Sequence[BoundPoint],
    results: Sequence[ua.DataValue],
    warned: set[str],
) -> None:
    """Say once per connection which polled points the server cannot read, as a subscription
    group does when the server refuses to monitor them."""
    for p, dv in zip(points, results, strict=True):
        code = dv.StatusCode.value if dv.StatusCode is not None else 0
        if code in UNREADABLE_NODE and p.config.name not in warned:
            warned.add(p.config.name)
            log.warning(
                "opcua device %s: server cannot read point %s (node %s) of polling group %s: "
                "%s; it is reported bad every cycle - check the node id in the config (browse "
                "with 'fieldgate opcua browse')",
                device.id,
                p.config.name,
                p.node_id.to_string(),
                group.name,
                dv.StatusCode.name if dv.StatusCode is not None else code,
            )


def _count_read(
    stats: PollStats,
    what: str,
    chunk: Sequence[BoundPoint],
    results: Sequence[ua.DataValue],
    latency: float,
) -> None:
    """An answered Read is an ``exception`` when the server refused a node of it as
    configured (unknown node, not readable: :data:`UNREADABLE_NODE`), else ``ok``. A Bad
    value quality (a sensor failure behind the server) is the point's quality, not an error
    of the request."""
    for p, dv in zip(chunk, results, strict=True):
        status = dv.StatusCode
        if status is not None and status.value in UNREADABLE_NODE:
            stats.error("exception", f"{what}: server answered {status.name} for "
                                     f"point {p.config.name}", latency)
            return
    stats.ok(latency)


async def poll_group(
    client: Client,
    device: OpcuaDeviceConfig,
    group: GroupConfig,
    points: Sequence[BoundPoint],
    ctx: DriverContext,
) -> None:
    """Read every point of the group each ``interval`` seconds, ``batch_size`` per request."""
    clock = ctx.clock
    stats = ctx.poll_stats(device.id)
    what = f"read of polling group {group.name}"
    next_at = clock.monotonic()
    warned: set[str] = set()  # this task lives as long as the connection: once per connection
    while True:
        batch: list[Sample] = []
        for start in range(0, len(points), group.batch_size):
            chunk = points[start : start + group.batch_size]
            params = ua.ReadParameters()
            params.TimestampsToReturn = ua.TimestampsToReturn.Both
            params.NodesToRead = [
                ua.ReadValueId(NodeId=p.node_id, AttributeId=ua.AttributeIds.Value) for p in chunk
            ]
            started = monotonic()
            try:
                results = await client.uaclient.read(params)
            except Exception as err:
                count_failure(stats, what, err, started)
                raise
            latency = monotonic() - started
            now = clock.now_ms()
            if len(results) != len(chunk):  # a broken server reply: mark the chunk bad
                stats.error("bad_reply", f"{what}: {len(results)} results for {len(chunk)} "
                                         "nodes", latency)
                batch.extend(to_sample(device, p.config.name, None, now) for p in chunk)
                continue
            _count_read(stats, what, chunk, results, latency)
            batch.extend(
                to_sample(device, p.config.name, dv, now)
                for p, dv in zip(chunk, results, strict=True)
            )
            _warn_unreadable(device, group, chunk, results, warned)
        await ctx.emit(batch)
        next_at += group.interval
        delay = next_at - clock.monotonic()
        if delay < 0:  # overran: skip the missed slots instead of bursting to catch up
            next_at = clock.monotonic()
            delay = 0
        await clock.sleep(delay)


def _deadband_filter(deadband: Deadband | None) -> ua.DataChangeFilter | None:
    if deadband is None:
        return None
    flt = ua.DataChangeFilter()
    flt.Trigger = ua.DataChangeTrigger.StatusValue
    absolute = deadband.type is DeadbandType.ABSOLUTE
    flt.DeadbandType = ua.DeadbandType.Absolute if absolute else ua.DeadbandType.Percent
    flt.DeadbandValue = deadband.value
    return flt


async def _eu_range_width(client: Client, point: BoundPoint) -> float | None:
    """Width of the node's EURange property, for a percent deadband; None if absent."""
    try:
        prop = await client.get_node(point.node_id).get_child("0:EURange")
        rng = await prop.read_value()
        return float(rng.High) - float(rng.Low)
    except (ua.UaError, AttributeError, TypeError, ValueError):
        return None


class SubscriptionGroup:
    """One OPC-UA subscription carrying every point of a group."""

    def __init__(
        self,
        client: Client,
        device: OpcuaDeviceConfig,
        group: GroupConfig,
        points: Sequence[BoundPoint],
        ctx: DriverContext,
    ) -> None:
        self.client = client
        self.device = device
        self.group = group
        self.points = points
        self.ctx = ctx
        self.by_handle: dict[int, BoundPoint] = {}
        self.sub: Subscription | None = None
        self._pending: list[Sample] = []
        self._inflight: list[Sample] = []  # handed to emit, not yet accepted
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()

    async def create(self) -> list[Sample]:
        """Create the subscription and its monitored items. Returns BAD samples for points the
        server refused (unknown node, bad filter), which are also logged."""
        queue = max(10_000, 4 * len(self.points) * self.group.queue_size)
        self.sub = await self.client.create_subscription(
            self.group.interval * 1000, queue_maxsize=queue, overflow=OverflowPolicy.WARN
        )
        numeric = await self._numeric_points()
        requests = []
        for handle, point in enumerate(self.points, start=1):
            deadband = point.config.deadband or self.group.deadband
            if deadband is not None and point.config.name not in numeric:
                deadband = None  # a deadband on a string/bool node is refused by servers
            if deadband is not None and deadband.type is DeadbandType.PERCENT:
                width = await _eu_range_width(self.client, point)
                if width is None:
                    log.warning(
                        "opcua device %s: point %s has a percent deadband but node %s has no "
                        "EURange; every change is reported. Use an absolute deadband instead",
                        self.device.id,
                        point.config.name,
                        point.node_id.to_string(),
                    )
                else:
                    point.percent_width = width * deadband.value / 100
            params = ua.MonitoringParameters()
            params.ClientHandle = handle
            # -1: sample at the publishing interval (OPC-UA Part 4)
            sampling = self.group.sampling_interval
            params.SamplingInterval = -1.0 if sampling is None else sampling * 1000
            params.QueueSize = self.group.queue_size
            params.DiscardOldest = True
            params.Filter = _deadband_filter(deadband)
            req = ua.MonitoredItemCreateRequest()
            req.ItemToMonitor = ua.ReadValueId(
                NodeId=point.node_id, AttributeId=ua.AttributeIds.Value
            )
            req.MonitoringMode = ua.MonitoringMode.Reporting
            req.RequestedParameters = params
            requests.append(req)
            self.by_handle[handle] = point
        results: list[int | ua.StatusCode] = []
        for start in range(0, len(requests), PER_CALL):  # PLCs cap items per call
            results += await self.sub.create_monitored_items(requests[start : start + PER_CALL])
        refused: list[Sample] = []
        now = self.ctx.clock.now_ms()
        for point, result in zip(self.points, results, strict=True):
            if isinstance(result, ua.StatusCode):
                log.warning(
                    "opcua device %s: server refused to monitor point %s (node %s): %s; check "
                    "the node id in the config (browse with 'fieldgate opcua browse')",
                    self.device.id,
                    point.config.name,
                    point.node_id.to_string(),
                    result.name,
                )
                refused.append(Sample(self.device.id, point.config.name, now, None, Quality.BAD))
        return refused

    async def _numeric_points(self) -> set[str]:
        """Names of the points with a deadband whose node holds a number (one Read)."""
        wanted = [p for p in self.points if p.config.deadband or self.group.deadband]
        if not wanted:
            return set()
        nodes = [self.client.get_node(p.node_id) for p in wanted]
        types: list[ua.DataValue] = []
        for start in range(0, len(nodes), PER_CALL):
            chunk = nodes[start : start + PER_CALL]
            types += await self.client.read_attributes(chunk, ua.AttributeIds.DataType)
        numeric = set()
        for point, dv in zip(wanted, types, strict=True):
            type_id = dv.Value.Value if dv.Value is not None else None
            if not isinstance(type_id, ua.NodeId):
                continue
            # built-in numeric types, Number/Integer/UInteger, or vendor subtypes (assumed so)
            if type_id.NamespaceIndex != 0 or type_id.Identifier in _NUMERIC_TYPE_IDS:
                numeric.add(point.config.name)
        return numeric

    async def run(self) -> None:
        """Consume notifications until the connection ends (the caller cancels us). Samples
        received before the end are still handed on, so a lost link loses nothing we had."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._consume(), name=f"opcua-consume[{self.device.id}]")
                tg.create_task(self._flush_loop(), name=f"opcua-flush[{self.device.id}]")
        finally:
            leftover, self._inflight, self._pending = self._inflight + self._pending, [], []
            if leftover:
                try:
                    async with asyncio.timeout(FLUSH_ON_CLOSE_TIMEOUT):
                        await self.ctx.emit(leftover)
                except TimeoutError:
                    log.warning(
                        "opcua device %s: dropped %d samples received just before the "
                        "connection ended: the pipeline did not take them within %.0f s",
                        self.device.id,
                        len(leftover),
                        FLUSH_ON_CLOSE_TIMEOUT,
                    )

    async def _consume(self) -> None:
        assert self.sub is not None
        async for event in self.sub:
            if isinstance(event, DataChangeEvent):
                self._on_change(event)
            elif isinstance(event, StatusChangeEvent):
                status = event.notification.Status
                raise ConnectionLost(f"subscription status changed to {status.name}")
            if len(self._pending) >= MAX_PENDING:
                self._drained.clear()
                await self._drained.wait()
        raise ConnectionLost("subscription closed")

    def _on_change(self, event: DataChangeEvent) -> None:
        item = event.data.monitored_item
        point = self.by_handle.get(item.ClientHandle)
        if point is None:
            return
        sample = to_sample(self.device, point.config.name, item.Value, self.ctx.clock.now_ms())
        if sample.quality is Quality.GOOD and not point.passes_deadband(sample.value):
            return
        self._pending.append(sample)
        self._wake.set()

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            # The consumer drains a whole publish response without yielding, so by now the
            # burst is complete and goes out as one batch.
            self._inflight, self._pending = self._pending, []
            self._drained.set()
            if self._inflight:
                await self.ctx.emit(self._inflight)
            self._inflight = []
