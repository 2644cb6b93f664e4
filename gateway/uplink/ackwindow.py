"""The acknowledgement window: publishes go out in order, PUBACKs may come back out of order,
and the store is acknowledged only up to the highest *contiguous* acknowledged mark.

A mark is what a publish covers up to: the last telemetry seq of a message, or an event's
outbox rowid. The forwarder keeps one window for telemetry and one for events.
"""

from __future__ import annotations

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
