"""Forward the store to the broker over one connection: replies, events, then telemetry.

Ordering with a window. Up to ``window`` QoS 1 publishes, and at most ``window_bytes`` of
their payloads, are in flight at once (a message larger than that goes out alone), but they are
issued one after another, in sequence order, on a single connection; MQTT keeps the order of
QoS 1 messages from one client on one topic, so the broker (and every subscriber) sees the
telemetry in sequence order. PUBACKs may be processed out of order by us, so the store is
acknowledged only up to the highest *contiguous* acknowledged sequence number: a row leaves
the buffer only when it and every row before it were acknowledged. When the link fails, the
connection is dropped and the next one resends from the store's acknowledged mark, with the
same sequence numbers, so a receiver that keeps the highest seq it has seen drops repeats.

A publish waits at most ``publish_timeout`` for its PUBACK; a timeout raises
:class:`LinkLost`, which tears the connection down. Nothing is acknowledged on that path.

Memory. A payload is held from its building until its PUBACK (by us and, until the PUBACK,
by paho), never while the store's acknowledgement is written: that write can wait for the
pipeline's commits, and PUBACKs keep coming meanwhile. So the telemetry bytes the uplink holds
are at most ``window_bytes`` in flight plus the message waiting for room, plus the
decompressed text of the one stored chunk being cut into messages (the chunks read ahead
stay compressed).

Message size. A telemetry payload is at most ``max_bytes`` in either encoding, unless it holds
a single sample larger than that. JSON messages are sized exactly from the rows' text; a
``columns+deflate`` message takes rows up to ``max_bytes`` times the compression ratio seen
last, and is cut shorter and compressed again when it still comes out too big.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import aiomqtt

from gateway.store import Store
from gateway.store.db import RawTelemetryChunk
from gateway.store.flag import Flag
from gateway.uplink.ackwindow import AckWindow, InFlight, Ticket
from gateway.uplink.config import UplinkSection
from gateway.uplink.wire import (
    ChunkText,
    RowSlice,
    Topics,
    columns_message,
    event_message,
    telemetry_message,
    telemetry_overhead,
)

log = logging.getLogger(__name__)

CONSUMER = "uplink"
_EVENT_BATCH = 64
#: The idle wait's fallback look (seconds); while draining, often (see :meth:`_idle`).
_IDLE_LOOK_S = 5.0
_DRAIN_LOOK_S = 0.5


class LinkLost(Exception):
    """The connection to the broker failed; the session must be rebuilt."""


@dataclass
class UplinkStats:
    """Counters since the gateway started (kept across reconnects and reloads)."""

    connects: int = 0
    disconnects: int = 0
    telemetry_messages: int = 0
    samples: int = 0
    events: int = 0
    replies: int = 0
    acked_seq: int = 0
    last_error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass
class PendingReply:
    request_id: str | None
    payload: bytes
    session: int = -1  # the session that issued it last


class ReplyOutbox:
    """Replies waiting for a PUBACK. Kept across reconnects: a reply whose publish was cut
    is sent again on the next connection."""

    def __init__(self) -> None:
        self.pending: list[PendingReply] = []
        self.changed = Flag()

    def put(self, reply: PendingReply) -> None:
        self.pending.append(reply)
        self.changed.set()

    def done(self, reply: PendingReply) -> None:
        if reply in self.pending:
            self.pending.remove(reply)
        self.changed.set()


class Forwarder:
    """One connection's sender. :meth:`run` returns when asked to finish (drain) and every
    publish it issued is acknowledged; it raises :class:`LinkLost` when the link fails."""

    def __init__(
        self,
        *,
        client: aiomqtt.Client,
        store: Store,
        topics: Topics,
        cfg: UplinkSection,
        gateway_id: str,
        boot: int,
        outbox: ReplyOutbox,
        stats: UplinkStats,
        session: int,
        drain_deadline: Callable[[], float | None],
    ) -> None:
        self.client = client
        self.store = store
        self.topics = topics
        self.cfg = cfg
        self.gateway_id = gateway_id
        self.boot = boot
        self.outbox = outbox
        self.stats = stats
        self.session = session
        self._drain_deadline = drain_deadline
        self._window = InFlight(cfg.window, cfg.window_bytes)
        self._tg: asyncio.TaskGroup | None = None
        self._events = store.events_flag(CONSUMER)
        self._idle_fut: asyncio.Future[None] | None = None  # the idle wait's, while waiting
        self._tel = AckWindow()  # marks: the last seq of each telemetry message
        self._chunks: deque[ChunkText | RawTelemetryChunk] = deque()
        self._ev = AckWindow()  # marks: event outbox rowids
        self._drop_epoch = store.drop_epoch
        self._ack_writing = False  # a _write_acks is at work
        self._columns = cfg.encoding == "columns+deflate"
        self._tel_topic = topics.telemetry_for(cfg.encoding)
        self._ratio = 4.0  # rows' JSON text per compressed byte, for the columns budget
        self._full = False  # the last _next_slices stopped at a limit, not at the end
        self._linger_since: float | None = None
        self._linger_until: float | None = None

    def wake(self) -> None:
        """End the idle wait, if one is on (also the listener of the flags it waits for)."""
        fut = self._idle_fut
        if fut is not None and not fut.done():
            fut.set_result(None)

    def fail(self, err: LinkLost) -> None:
        """End :meth:`run` with ``err`` (the receive side saw the connection drop)."""
        if self._tg is None:
            return

        async def _raise() -> None:
            raise err

        coro = _raise()
        try:
            self._tg.create_task(coro, name="uplink-link-lost")
        except RuntimeError:  # the group already finished
            coro.close()

    async def run(self) -> None:
        self._tel.reset(await self.store.acked_seq())
        unlisten = self.listen()
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                await self._loop()
        except* LinkLost as group:
            raise group.exceptions[0] from None
        finally:
            for stop in unlisten:
                stop()

    def listen(self) -> list[Callable[[], None]]:
        """Let the flags the idle wait waits for end it; returns their stop functions."""
        flags: tuple[Flag, ...] = (self.store.telemetry_added, self.outbox.changed, self._events)
        return [flag.listen(self.wake) for flag in flags]

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            deadline = self._drain_deadline()
            busy = self._issue_replies()
            if deadline is None or loop.time() < deadline:
                busy = await self._issue_events() or busy
                busy = await self._issue_telemetry() or busy
            else:  # past the drain's grace: only the replies' PUBACKs are waited for
                self.store.telemetry_added.clear()
                self._events.clear()
            if not busy:
                if deadline is not None and not self.outbox.pending:
                    return  # draining and caught up; the TaskGroup awaits the due PUBACKs
                await self._idle()

    async def _idle(self) -> None:
        """Wait until there may be work: telemetry or events committed, a reply to send,
        a :meth:`wake` during the wait (a PUBACK's write, a drain), or the end of a linger.
        No task per wait: the flags' listeners complete one future. Each flag is cleared
        before the look it asks for, so one set since is still set here."""
        if self.store.telemetry_added.is_set() or self.outbox.changed.is_set() or \
                self._events.is_set():
            return
        loop = asyncio.get_running_loop()
        fut = self._idle_fut = loop.create_future()
        # A fallback look, should a wake-up ever be missed: rare (one timer per wait), and
        # often during a drain, whose grace the loop must see end.
        wake_at = loop.time() + (_DRAIN_LOOK_S if self._drain_deadline() is not None
                                 else _IDLE_LOOK_S)
        if self._linger_until is not None:
            wake_at = min(wake_at, self._linger_until)
        timer = loop.call_at(wake_at, self.wake)
        try:
            await fut
        finally:
            self._idle_fut = None
            timer.cancel()

    # -- publishing --------------------------------------------------------------------

    async def _publish(self, topic: str, payload: bytes) -> None:
        try:
            await self.client.publish(topic, payload, qos=1, timeout=self.cfg.publish_timeout)
        except aiomqtt.MqttError as err:
            raise LinkLost(f"publish to {topic} failed or was not acknowledged within "
                           f"{self.cfg.publish_timeout:g} s: {err}") from err
        finally:
            self._window.release(len(payload))

    # -- replies -----------------------------------------------------------------------

    def _issue_replies(self) -> bool:
        self.outbox.changed.clear()
        todo = [r for r in self.outbox.pending if r.session != self.session]
        for reply in todo:
            reply.session = self.session
            assert self._tg is not None
            self._tg.create_task(self._send_reply(reply), name="uplink-reply")
        return bool(todo)

    async def _send_reply(self, reply: PendingReply) -> None:
        await self._window.acquire(len(reply.payload))
        await self._publish(self.topics.reply, reply.payload)
        self.outbox.done(reply)
        self.stats.replies += 1

    # -- events ------------------------------------------------------------------------

    async def _issue_events(self) -> bool:
        self._events.clear()
        if self.store.events_high <= self._ev.pos:
            # Every committed event was issued already: no query (a round trip to the
            # store's thread on every wake: each commit, each PUBACK) to find none.
            return False
        stored = await self.store.read_events(CONSUMER, _EVENT_BATCH)
        fresh = [s for s in stored if s.rowid > self._ev.pos]
        for item in fresh:
            payload = event_message(self.gateway_id, item.event)
            await self._window.acquire(len(payload))
            ticket = self._ev.issue(item.rowid)
            assert self._tg is not None
            self._tg.create_task(self._send_event(ticket, payload), name="uplink-event")
        return bool(fresh)

    async def _send_event(self, ticket: Ticket, payload: bytes) -> None:
        await self._publish(self.topics.events, payload)
        del payload  # acknowledged by the broker: not held while the store is written
        self.stats.events += 1
        self._ev.done(ticket)
        await asyncio.shield(self._write_acks())

    # -- telemetry ---------------------------------------------------------------------

    async def _issue_telemetry(self) -> bool:
        self.store.telemetry_added.clear()
        slices = await self._next_slices(self._budget())
        if not slices:
            self._linger_since = self._linger_until = None
            return False
        if self._lingering():
            return False
        self._linger_since = self._linger_until = None
        if self._columns:
            payload, seq_last = self._columns_payload(slices)
        else:
            payload = telemetry_message(self.gateway_id, self.boot, slices, self.store.store_id)
            seq_last = slices[-1].seq_last
        rows = seq_last - slices[0].seq_first + 1
        del slices
        await self._window.acquire(len(payload))
        ticket = self._tel.issue(seq_last)
        self.store.note_sent(seq_last)  # the store never drops rows in flight
        assert self._tg is not None
        self._tg.create_task(self._send_telemetry(ticket, payload, rows),
                             name="uplink-telemetry")
        return True

    async def _send_telemetry(self, ticket: Ticket, payload: bytes, rows: int) -> None:
        await self._publish(self._tel_topic, payload)
        del payload  # acknowledged by the broker: not held while the store is written
        self.stats.telemetry_messages += 1
        self.stats.samples += rows
        self._tel.done(ticket)
        await asyncio.shield(self._write_acks())

    async def _write_acks(self) -> None:
        """Acknowledge the store up to the contiguous marks. One writer at a time: a caller
        that finds one at work returns at once (the writer looks again after each write, so
        it takes this caller's marks too), so PUBACKs that come while the store is slow do
        not pile up tasks waiting for it."""
        if self._ack_writing:
            return
        self._ack_writing = True
        try:
            while True:
                upto = self._tel.unstored()
                if upto is not None:
                    await self.store.ack_telemetry(upto)
                    self._tel.stored(upto)
                    self.stats.acked_seq = upto
                    continue
                upto = self._ev.unstored()
                if upto is None:
                    break
                await self.store.ack_events(CONSUMER, upto)
                self._ev.stored(upto)
        finally:
            self._ack_writing = False
        self.wake()

    def _budget(self) -> int:
        """Bytes of rows' JSON text (joined by commas) the next message may take."""
        if self._columns:
            return int(self.cfg.max_bytes * self._ratio)
        overhead = telemetry_overhead(self.gateway_id, self.boot, self.store.store_id)
        return max(1, self.cfg.max_bytes - overhead)

    def _lingering(self) -> bool:
        """Hold a message that is not full yet back for up to ``linger`` seconds (never
        while draining)."""
        if not self.cfg.linger or self._full or self._drain_deadline() is not None:
            return False
        now = asyncio.get_running_loop().time()
        if self._linger_since is None:
            self._linger_since = now
            self._linger_until = now + self.cfg.linger
        return now < self._linger_since + self.cfg.linger

    def _columns_payload(self, slices: list[RowSlice]) -> tuple[bytes, int]:
        """The columns+deflate payload of the rows of ``slices``, or of their head when all
        of them compress to more than ``max_bytes``; returns it and its last seq."""
        rows = [row for s in slices for row in (s.items or ())]
        assert len(rows) == slices[-1].seq_last - slices[0].seq_first + 1
        first, limit, n = slices[0].seq_first, self.cfg.max_bytes, len(rows)
        while True:
            payload = columns_message(self.gateway_id, self.boot, self.store.store_id, first,
                                      rows[:n])
            if len(payload) <= limit or n == 1:
                break
            n = max(1, min(n - 1, int(n * limit / len(payload) * 0.9)))
        if n == len(rows):
            text = sum(s.nbytes + 1 for s in slices)
            self._ratio = min(32.0, max(1.0, 0.8 * text / len(payload)))
        else:
            self._ratio = max(1.0, self._ratio / 2)
        return payload, first + n - 1

    async def _next_slices(self, max_bytes: int) -> list[RowSlice]:
        """The rows of the next message: contiguous, oldest first, within both limits (rows'
        text at most ``max_bytes``, but at least one row)."""
        max_rows = self.cfg.max_samples
        slices: list[RowSlice] = []
        rows = size = 0
        pos = self._tel.pos
        self._full = True
        while rows < max_rows:
            chunk = await self._chunk_after(pos)
            if chunk is None:
                self._full = False
                break
            first = max(pos + 1, chunk.seq_first)
            if slices and first != pos + 1:
                break  # rows were dropped (buffer overflow): the gap ends the message
            try:
                part = chunk.take(first, max_rows - rows, max_bytes - size,
                                  need_one=not slices)
            except ValueError as err:  # its rows do not add up: damaged
                await self.store.quarantine_chunk(chunk.seq_first, str(err))
                self._chunks.clear()
                break
            if part is None:
                break
            slices.append(part)
            rows += part.rows
            size += part.nbytes + 1
            pos = part.seq_last
            if size >= max_bytes:
                break
        return slices

    async def _chunk_after(self, pos: int) -> ChunkText | None:
        """The stored chunk holding the rows after ``pos``. Chunks are read ahead as they
        lie in the store (compressed) and decompressed one at a time, when they come next."""
        if self._drop_epoch != self.store.drop_epoch:  # the store dropped unsent rows
            self._drop_epoch = self.store.drop_epoch
            self._chunks.clear()
        while True:
            while self._chunks and self._chunks[0].seq_last <= pos:
                self._chunks.popleft()
            if not self._chunks:
                raw: list[RawTelemetryChunk] = await self.store.read_telemetry_raw(
                    pos, self.cfg.max_samples
                )
                if not raw:
                    return None
                self._chunks.extend(raw)
                continue
            head = self._chunks[0]
            if isinstance(head, ChunkText):
                return head
            try:
                self._chunks[0] = ChunkText(head.seq_first, head.seq_last, head.payload,
                                            parse=self._columns, plain=head.plain)
            except (zlib.error, ValueError) as err:
                # A damaged chunk must not stop everything behind it.
                self._chunks.popleft()
                await self.store.quarantine_chunk(head.seq_first, f"{type(err).__name__}: "
                                                  f"{err}")
