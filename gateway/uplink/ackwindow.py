"""The acknowledgement window: publishes go out in order, PUBACKs may come back out of order,
and the store is acknowledged only up to the highest *contiguous* acknowledged mark.

A mark is what a publish covers up to: the last telemetry seq of a message, or an event's
outbox rowid. The forwarder keeps one window for telemetry and one for events, and one
:class:`InFlight` budget (messages and bytes awaiting a PUBACK) for everything it publishes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass


@dataclass(slots=True)
class Ticket:
    """One publish in flight; :meth:`AckWindow.done` marks it acknowledged."""

    mark: int
    acked: bool = False


class AckWindow:
    """``issue`` in increasing mark order; ``done`` in any order; ``unstored`` says up to
    where the store may now be acknowledged, and ``stored`` records that it was."""

    def __init__(self, start: int = 0) -> None:
        self.reset(start)

    def reset(self, start: int) -> None:
        """Start over from what the store says is acknowledged (a new connection)."""
        #: The last mark issued: the next publish covers what comes after it.
        self.pos = start
        #: The highest mark that, with every mark before it, was acknowledged by the broker.
        self.high = start
        #: The highest mark written to the store.
        self.acked = start
        self._inflight: deque[Ticket] = deque()

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    def issue(self, mark: int) -> Ticket:
        if mark <= self.pos:
            raise ValueError(f"marks must increase: {mark} after {self.pos}")
        ticket = Ticket(mark)
        self._inflight.append(ticket)
        self.pos = mark
        return ticket

    def done(self, ticket: Ticket) -> None:
        """The broker acknowledged ``ticket``; the contiguous mark moves past every
        acknowledged publish at the head of the window."""
        ticket.acked = True
        while self._inflight and self._inflight[0].acked:
            self.high = self._inflight.popleft().mark

    def unstored(self) -> int | None:
        """The mark to acknowledge in the store now, or None when it is up to date."""
        return self.high if self.high > self.acked else None

    def stored(self, mark: int) -> None:
        self.acked = max(self.acked, mark)


class InFlight:
    """The publish window: at most ``max_messages`` publishes and ``max_bytes`` of payload
    awaiting their PUBACK at once (a single message larger than ``max_bytes`` goes out
    alone). :meth:`acquire` waits its turn, first come first served; :meth:`release` is
    called when the PUBACK came (or the publish failed), so memory held for the broker is
    bounded by bytes, whatever the size or the number of the messages."""

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.messages = 0
        self.bytes = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    def _fits(self, nbytes: int) -> bool:
        return self.messages < self.max_messages and (
            self.messages == 0 or self.bytes + nbytes <= self.max_bytes)

    async def acquire(self, nbytes: int) -> None:
        if not self._waiters and self._fits(nbytes):
            self._take(nbytes)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((nbytes, fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # granted, then cancelled: give it back
                self.release(nbytes)
            else:
                self._grant()  # a cancelled head must not hold the others up
            raise

    def release(self, nbytes: int) -> None:
        self.messages -= 1
        self.bytes -= nbytes
        self._grant()

    def _take(self, nbytes: int) -> None:
        self.messages += 1
        self.bytes += nbytes

    def _grant(self) -> None:
        while self._waiters:
            nbytes, fut = self._waiters[0]
            if fut.done():  # cancelled while waiting
                self._waiters.popleft()
                continue
            if not self._fits(nbytes):
                return
            self._waiters.popleft()
            self._take(nbytes)
            fut.set_result(None)
