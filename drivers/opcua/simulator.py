"""A small OPC-UA plant for tests, the demo site and the benchmark: one battery inverter.

Address space (namespace ``urn:fieldgate:simulator``, index 2 on a fresh server)::

    Objects/2:Inverter                      ns=2;s=Inverter
        2:Power          Double  kW         ns=2;s=Inverter.Power        (+ discharge, - charge)
        2:PowerSetpoint  Double  kW, RW     ns=2;s=Inverter.PowerSetpoint
        2:Enabled        Boolean RW         ns=2;s=Inverter.Enabled
        2:SoC            Double  %          ns=2;s=Inverter.SoC          (EURange 0..100)
        2:State          String             ns=2;s=Inverter.State        idle/charging/discharging
        2:MaxCurrent     Int32   A, RW      ns=2;s=Inverter.MaxCurrent
    Objects/2:Bench/2:Item<i>  Double       ns=2;i=<100000+i>            (``bench_items``)

Each ``step`` moves the actual power toward the setpoint (ramp limited), integrates the state
of charge and updates the state. Run standalone (the benchmark does, so the server's CPU is not
counted against the gateway): ``python -m drivers.opcua.simulator --port 4840 --items 5000``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from asyncua import Server, ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import User, UserRole
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

log = logging.getLogger(__name__)

NAMESPACE = "urn:fieldgate:simulator"
BENCH_BASE = 100_000
CAPACITY_KWH = 200.0
RAMP_KW_PER_S = 50.0
MAX_POWER_KW = 100.0
SCHEDULE_PERIOD_S = 600.0


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free right now (tests run in parallel: never use a fixed one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _sid(ns: int, name: str) -> ua.NodeId:
    return ua.NodeId.from_string(f"ns={ns};s={name}")


def _now() -> ua.DateTime:
    return cast(ua.DateTime, datetime.now(UTC))


class _Users:
    """asyncua user manager: one username/password pair, or anonymous when none is set."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        if not self.users:
            return User(role=UserRole.User)
        if username is not None and self.users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


class InverterSimulator:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        period: float = 1.0,
        bench_items: int = 0,
        certificate: Path | None = None,
        private_key: Path | None = None,
        policies: list[ua.SecurityPolicyType] | None = None,
        users: dict[str, str] | None = None,
        application_uri: str = "urn:fieldgate:simulator:server",
        auto_schedule: bool = False,
        client_pki: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.period = period
        self.bench_items = bench_items
        self.certificate = certificate
        self.private_key = private_key
        self.policies = policies
        self.application_uri = application_uri
        self.client_pki = client_pki
        self.server = Server(user_manager=_Users(users or {}))  # type: ignore[arg-type]
        self.nodes: dict[str, ua.NodeId] = {}
        self.bench_nodes: list[ua.NodeId] = []
        self.soc = 50.0
        self.power = 0.0
        self.ticks = 0
        self.running = False
        # Until a client writes PowerSetpoint, the plant runs its own slow charge/discharge
        # schedule so the demo shows live data; the first external write takes over.
        self.auto_schedule = auto_schedule
        self._auto_setpoint = 0.0  # the node's initial value

    @property
    def url(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}"

    async def start(self) -> None:
        server = self.server
        await server.init()
        await server.set_application_uri(self.application_uri)
        server.set_endpoint(self.url)
        server.set_server_name("fieldgate inverter simulator")
        if self.certificate is not None and self.private_key is not None:
            await server.load_certificate(str(self.certificate))
            await server.load_private_key(str(self.private_key))
        has_cert = self.certificate is not None and self.private_key is not None
        if self.client_pki is not None:
            server.set_certificate_validator(self._validate_client)
        if self.policies is not None:
            server.set_security_policy(self.policies)
        elif not has_cert:  # only offer what can work, and skip asyncua's warnings about it
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        if isinstance(server.iserver.user_manager, _Users) and server.iserver.user_manager.users:
            server.set_identity_tokens([ua.UserNameIdentityToken])
        else:
            server.set_identity_tokens([ua.AnonymousIdentityToken])
        # asyncua's server does not implement percent deadbands and warns on every change;
        # the driver enforces them itself, so this is noise in the demo log.
        logging.getLogger("asyncua.server.monitored_item_service").setLevel(logging.ERROR)
        ns = await server.register_namespace(NAMESPACE)
        inverter = await server.nodes.objects.add_object(_sid(ns, "Inverter"), f"{ns}:Inverter")

        async def var(name: str, value: Any, vtype: ua.VariantType, writable: bool = False) -> None:
            node = await inverter.add_variable(
                _sid(ns, f"Inverter.{name}"), f"{ns}:{name}", value, vtype
            )
            if writable:
                await node.set_writable()
            self.nodes[name] = node.nodeid

        await var("Power", 0.0, ua.VariantType.Double)
        await var("PowerSetpoint", 0.0, ua.VariantType.Double, writable=True)
        await var("Enabled", True, ua.VariantType.Boolean, writable=True)
        await var("SoC", self.soc, ua.VariantType.Double)
        await var("State", "idle", ua.VariantType.String)
        await var("MaxCurrent", 200, ua.VariantType.Int32, writable=True)
        soc = server.get_node(self.nodes["SoC"])
        # EURange is a standard property: its browse name lives in namespace 0
        await soc.add_property(
            _sid(ns, "Inverter.SoC.EURange"),
            ua.QualifiedName("EURange", 0),
            ua.Range(Low=0.0, High=100.0),
        )
        if self.bench_items:
            folder = await server.nodes.objects.add_folder(_sid(ns, "Bench"), f"{ns}:Bench")
            for i in range(self.bench_items):
                node = await folder.add_variable(
                    ua.NodeId.from_string(f"ns={ns};i={BENCH_BASE + i}"),
                    f"{ns}:Item{i}",
                    0.0,
                    ua.VariantType.Double,
                )
                self.bench_nodes.append(node.nodeid)
        await server.start()
        self.running = True
        log.info("OPC-UA simulator listening on %s", self.url)

    async def _validate_client(self, cert: x509.Certificate, app: ua.ApplicationDescription
                               ) -> None:
        """Like a PLC's PKI: a client certificate must sit in ``<client_pki>/trusted``; an
        unknown one is copied to ``<client_pki>/rejected`` (for the operator to move) and the
        client is refused with BadSecurityChecksFailed, the code real servers send (they do
        not tell an unknown client why). The application URI must match the certificate."""
        assert self.client_pki is not None
        der = cert.public_bytes(serialization.Encoding.DER)
        trusted, rejected = self.client_pki / "trusted", self.client_pki / "rejected"
        trusted.mkdir(parents=True, exist_ok=True)
        if not any(f.read_bytes() == der for f in trusted.iterdir() if f.is_file()):
            rejected.mkdir(parents=True, exist_ok=True)
            (rejected / f"{cert.fingerprint(hashes.SHA1()).hex()}.der").write_bytes(der)
            raise ServiceError(ua.StatusCodes.BadSecurityChecksFailed)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        if app.ApplicationUri not in san.value.get_values_for_type(x509.UniformResourceIdentifier):
            raise ServiceError(ua.StatusCodes.BadCertificateUriInvalid)

    async def stop(self) -> None:
        if self.running:
            self.running = False
            await self.server.stop()

    async def set(
        self, name: str, value: Any, vtype: ua.VariantType, status: int = ua.StatusCodes.Good
    ) -> None:
        """Write a value as the device would (with a source timestamp and a status code)."""
        now = _now()
        dv = ua.DataValue(
            ua.Variant(value, vtype),
            ua.StatusCode(ua.UInt32(status)),
            SourceTimestamp=now,
            ServerTimestamp=now,
        )
        await self.server.write_attribute_value(self.nodes[name], dv)

    def read(self, name: str) -> Any:
        variant = self.server.read_attribute_value(self.nodes[name]).Value
        return None if variant is None else variant.Value

    async def step(self, dt: float) -> None:
        """Advance the plant model by ``dt`` seconds."""
        self.ticks += 1
        if self.auto_schedule:
            await self._follow_schedule()
        target = float(self.read("PowerSetpoint")) if self.read("Enabled") else 0.0
        target = max(-MAX_POWER_KW, min(MAX_POWER_KW, target))
        if (target > 0 and self.soc <= 5.0) or (target < 0 and self.soc >= 95.0):
            target = 0.0
        ramp = RAMP_KW_PER_S * dt
        self.power += max(-ramp, min(ramp, target - self.power))
        self.soc = max(0.0, min(100.0, self.soc - self.power * dt / 3600 / CAPACITY_KWH * 100))
        noise = 0.05 * math.sin(self.ticks)  # a live value, even at rest
        state = "idle" if abs(self.power) < 0.1 else "discharging" if self.power > 0 else "charging"
        await self.set("Power", round(self.power + noise, 3), ua.VariantType.Double)
        await self.set("SoC", round(self.soc, 4), ua.VariantType.Double)
        if self.read("State") != state:
            await self.set("State", state, ua.VariantType.String)
        if self.bench_nodes:
            now = _now()
            for i, node in enumerate(self.bench_nodes):
                dv = ua.DataValue(
                    ua.Variant(float(self.ticks * 1000 + i), ua.VariantType.Double),
                    SourceTimestamp=now,
                    ServerTimestamp=now,
                )
                await self.server.write_attribute_value(node, dv)

    async def _follow_schedule(self) -> None:
        current = float(self.read("PowerSetpoint"))
        if current != self._auto_setpoint:
            self.auto_schedule = False  # a client wrote a setpoint: it is in charge now
            log.info("simulator: setpoint %.1f kW written by a client; schedule off", current)
            return
        # 60 kW sine with a 10-minute period: discharging, idle, charging, idle
        phase = 2 * math.pi * (self.ticks * self.period) / SCHEDULE_PERIOD_S
        self._auto_setpoint = round(60.0 * math.sin(phase), 1)
        await self.set("PowerSetpoint", self._auto_setpoint, ua.VariantType.Double)

    async def run(
        self,
        started: asyncio.Event | None = None,
        before_stop: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Start, tick every ``period`` until cancelled, stop. ``started`` is set once the
        server listens (the driver waits for it before its first connect); ``before_stop``
        lets in-process clients close their sessions first, so shutdown is quiet."""
        await self.start()
        if started is not None:
            started.set()
        try:
            loop = asyncio.get_running_loop()
            next_at = loop.time()
            while True:
                next_at += self.period
                await asyncio.sleep(max(0.0, next_at - loop.time()))
                await self.step(self.period)
        finally:
            if started is not None:
                started.clear()
            if before_stop is not None:
                with contextlib.suppress(Exception):
                    await before_stop()
            await self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4840)
    parser.add_argument("--period", type=float, default=1.0, help="seconds between updates")
    parser.add_argument("--items", type=int, default=0, help="extra bench items that change")
    parser.add_argument(
        "--schedule", action="store_true", help="run a charge/discharge schedule until written"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    sim = InverterSimulator(
        args.host,
        args.port,
        period=args.period,
        bench_items=args.items,
        auto_schedule=args.schedule,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(sim.run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
