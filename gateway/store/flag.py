"""An :class:`asyncio.Event` that also tells listeners when it is set.

A task that waits for any of several events (the uplink's forwarder: new telemetry, new
events, a reply to send, a PUBACK written) would otherwise wrap each ``Event.wait()`` in a
task of its own on every wait and cancel them after: four tasks per idle wait, and the
forwarder waits after every commit and every PUBACK. A listener costs nothing per wait: the
waiter leaves one future, and whichever flag is set first completes it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Flag(asyncio.Event):
    """An event whose :meth:`set` also calls each listener (when it was clear)."""

    def __init__(self) -> None:
        super().__init__()
        self._listeners: list[Callable[[], None]] = []

    def set(self) -> None:
        if self.is_set():
            return
        super().set()
        for listener in self._listeners:
            listener()

    def listen(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` (no arguments, on the loop) each time the flag is set; returns
        the function that stops it."""
        self._listeners.append(listener)

        def stop() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return stop
