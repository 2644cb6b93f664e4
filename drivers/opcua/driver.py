"""The OPC-UA driver: one supervised task per device (plus one per in-process simulator)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from urllib.parse import urlparse

from drivers.base import Driver, DriverContext, TaskFactory, UnknownPoint, WriteResult
from drivers.opcua.config import OpcuaDeviceConfig
from drivers.opcua.session import DeviceSession
from gateway.model import Value

log = logging.getLogger(__name__)

# asyncua logs every publish response (with its payload) and every request at INFO. At the
# gateway's usual INFO level that is megabytes per minute and, with thousands of monitored
# items, measurable CPU. Quiet it unless someone configured the asyncua logger explicitly.
if logging.getLogger("asyncua").level == logging.NOTSET:
    logging.getLogger("asyncua").setLevel(logging.WARNING)

#: How long a device waits for its in-process simulator before trying to connect anyway.
SIMULATOR_START_TIMEOUT = 15.0


class OpcuaDriver(Driver):
    def __init__(self, devices: Sequence[OpcuaDeviceConfig], ctx: DriverContext) -> None:
        super().__init__(devices, ctx)
        self.configs: dict[str, OpcuaDeviceConfig] = {d.id: d for d in devices}
        self._sim_ready: dict[str, asyncio.Event] = {}
        self.sessions: dict[str, DeviceSession] = {}
        for dev in devices:
            ready = None
            if dev.simulate:
                event = self._sim_ready.setdefault(dev.id, asyncio.Event())
                ready = self._waiter(dev.id, event)
            self.sessions[dev.id] = DeviceSession(dev, ctx, ready)

    @staticmethod
    def _waiter(device: str, event: asyncio.Event) -> Callable[[], Awaitable[None]]:
        async def wait() -> None:
            try:
                await asyncio.wait_for(event.wait(), SIMULATOR_START_TIMEOUT)
            except TimeoutError:
                log.warning(
                    "opcua device %s: simulator did not start within %.0f s; connecting anyway",
                    device,
                    SIMULATOR_START_TIMEOUT,
                )

        return wait

    def tasks(self) -> Iterable[tuple[str, TaskFactory]]:
        for dev_id, session in self.sessions.items():
            cfg = self.configs[dev_id]
            if cfg.simulate:
                yield f"opcua-sim[{dev_id}]", self._sim_factory(cfg)
            yield f"opcua[{dev_id}]", session.run

    def _sim_factory(self, cfg: OpcuaDeviceConfig) -> TaskFactory:
        async def run_simulator() -> None:
            from drivers.opcua.simulator import InverterSimulator  # only when simulating

            url = urlparse(cfg.url)
            sim = InverterSimulator(
                url.hostname or "127.0.0.1", url.port or 4840, auto_schedule=True
            )
            session = self.sessions[cfg.id]

            async def sessions_closed() -> None:
                # At shutdown both tasks are cancelled together; let our client close its
                # session before the server goes, or asyncua logs a crashed publish loop.
                async with asyncio.timeout(2):
                    await session.closed.wait()

            await sim.run(self._sim_ready[cfg.id], before_stop=sessions_closed)

        return run_simulator

    async def write(self, device: str, point: str, value: Value) -> WriteResult:
        session = self.sessions.get(device)
        if session is None:
            raise UnknownPoint(device, "no such OPC-UA device")
        return await session.write(point, value)
