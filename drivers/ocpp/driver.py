"""The OCPP driver: one websocket central system for every charger entry of ``type: ocpp``."""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from collections.abc import Iterable, Sequence

from drivers.base import Driver, DriverContext, TaskFactory
from drivers.ocpp.commands import build_commands
from drivers.ocpp.config import OcppDeviceConfig, ServerSettings
from drivers.ocpp.hub import Hub
from drivers.ocpp.library import check_library
from drivers.ocpp.security import hash_password, random_password
from drivers.ocpp.server import OcppServer
from drivers.ocpp.simulator import SimCharger
from gateway.commands import Command

log = logging.getLogger(__name__)


class OcppDriver(Driver):
    def __init__(self, devices: Sequence[OcppDeviceConfig], ctx: DriverContext) -> None:
        super().__init__(devices, ctx)
        check_library()
        servers = [d for d in devices if d.role == "server"]
        if len(servers) > 1:
            raise ValueError(
                f"more than one OCPP entry has role: server ({', '.join(d.id for d in servers)});"
                " keep one"
            )
        self.server_device = servers[0] if servers else None
        settings = self.server_device.settings if self.server_device else ServerSettings()
        chargers = {d.id: d for d in devices if d.role == "charger"}
        self.hub = Hub(ctx, settings, chargers)
        self.server = OcppServer(self.hub, self.server_device.id if self.server_device else None)
        self._sim_passwords: dict[str, str] = {}
        for device in chargers.values():
            if device.simulate:
                password = random_password()
                self._sim_passwords[device.id] = password  # hashed by _run_simulator
            elif settings.security_profile in (1, 2) and not device.password_hash:
                log.warning("charger %s has no password_hash: it will be refused (HTTP 401); "
                            "run `fieldgate ocpp hash-password` and add the hash", device.id)
        self.simulators: dict[str, SimCharger] = {}

    def tasks(self) -> Iterable[tuple[str, TaskFactory]]:
        yield "ocpp-server", functools.partial(self.server.run)
        for charger in self._sim_passwords:
            yield f"ocpp-sim[{charger}]", functools.partial(self._run_simulator, charger)

    async def _run_simulator(self, charger: str) -> None:
        if charger not in self.hub.extra_hashes:  # until then, no password lets it in
            # scrypt costs ~35 ms of CPU: in a thread, not on the loop during start-up
            self.hub.extra_hashes[charger] = await asyncio.to_thread(
                hash_password, self._sim_passwords[charger])
        await self.server.ready.wait()
        device = self.hub.chargers[charger]
        s = self.hub.settings
        tls = None
        if s.security_profile >= 2:
            # loopback to ourselves: the demo charger does not verify the server certificate
            tls = ssl.create_default_context()
            tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
        scheme = "wss" if tls else "ws"
        sim = SimCharger(charger, device.simulate or "1.6",
                         f"{scheme}://127.0.0.1:{self.server.port}{s.path_prefix}",
                         password=self._sim_passwords[charger], connectors=device.connectors,
                         ssl_context=tls)
        self.simulators[charger] = sim
        try:
            await sim.run_demo()
        finally:
            await sim.disconnect()

    def commands(self) -> Iterable[Command]:
        return build_commands(self.hub)

    async def close(self) -> None:
        sessions = list(self.hub.sessions.values())
        await asyncio.gather(*(s.connection.close(1001, "gateway stopping") for s in sessions),
                             return_exceptions=True)
        self.hub.passwords.close()
