"""sd_notify: READY, STOPPING, STATUS and WATCHDOG pings. A no-op outside systemd.

The protocol is one datagram to the socket named in $NOTIFY_SOCKET; a dozen lines of stdlib
do it, which is why there is no dependency for it (the sdnotify package is unmaintained).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator

log = logging.getLogger(__name__)

#: While a long step of the start runs (the store's migrations), systemd is asked every this
#: many seconds for ``EXTEND_BY_S`` more before its start timeout (``EXTEND_TIMEOUT_USEC``,
#: systemd 236 and later): a large history's conversion can take minutes on a small box, and
#: a start killed at ``TimeoutStartSec`` would roll it back and begin it again, for ever.
EXTEND_EVERY_S = 10.0
EXTEND_BY_S = 30.0


class Notifier:
    def __init__(self) -> None:
        addr = os.environ.get("NOTIFY_SOCKET", "")
        self._addr = "\0" + addr[1:] if addr.startswith("@") else addr
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        wanted = usec.isdigit() and (not pid or pid == str(os.getpid()))
        self.watchdog_interval = int(usec) / 1e6 / 2 if wanted else None

    @property
    def enabled(self) -> bool:
        return bool(self._addr)

    def notify(self, message: str) -> None:
        if not self._addr:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self._addr)
                sock.sendall(message.encode())
        except OSError as err:
            log.warning("sd_notify(%s) failed: %s", message.split("=")[0], err)

    def ready(self, status: str = "") -> None:
        self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def status(self, text: str) -> None:
        self.notify(f"STATUS={text}")

    @contextlib.asynccontextmanager
    async def extending(self, status: str) -> AsyncIterator[None]:
        """While the body runs: STATUS=``status``, and more time before the start timeout
        every ``EXTEND_EVERY_S`` (see :data:`EXTEND_EVERY_S`)."""
        if not self._addr:
            yield
            return

        async def extend() -> None:
            while True:
                self.notify(f"EXTEND_TIMEOUT_USEC={int(EXTEND_BY_S * 1e6)}\nSTATUS={status}")
                await asyncio.sleep(EXTEND_EVERY_S)

        task = asyncio.create_task(extend(), name="systemd-extend")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def watchdog(self) -> None:
        """Ping from the event loop itself, so a stuck loop stops the pings."""
        if self.watchdog_interval is None or not self._addr:
            return
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_interval)
