"""The contract between the gateway core and every protocol driver.

A driver turns a protocol into samples, device status and events. It never touches the store,
the rules or MQTT: it talks to the core only through its :class:`DriverContext`. A driver
declares long-running tasks (one per bus, per device or per server); the runtime supervises
each one on its own, so one crashing poller is restarted while the others go on.

Registering a driver is one call (see :mod:`drivers.registry`, which also lists the built-ins
as lazy ``"module:attribute"`` references so that a driver's library is imported only when a
configured device or a CLI command needs it)::

    register_driver(DriverSpec("acme", AcmeDeviceConfig, AcmeDriver))

Third-party packages do this from the pluggy hook ``register_drivers``.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

# The registry lives in drivers.registry (a light module the CLI reads at parse time).
from drivers.registry import (
    BUILTIN_DRIVERS,
    CliInstaller,
    DriverFactory,
    DriverSpec,
    LazyDriver,
    config_model,
    get_driver,
    names,
    register_driver,
    registry,
)
from gateway.clock import Clock
from gateway.commands import Command
from gateway.config.base import DeviceId, StrictModel
from gateway.model import Batch, DeviceStatus, Event, Value
from gateway.pollstats import PollStats


class DeviceConfig(StrictModel):
    """Fields every device has. A driver's model subclasses this and narrows ``type``."""

    id: DeviceId
    type: str
    name: str | None = None
    tags: list[str] = []
    enabled: bool = True


class DriverError(Exception):
    """Base of errors a driver raises across its boundary. Carries the device id."""

    def __init__(self, device: str, message: str) -> None:
        super().__init__(f"{device}: {message}")
        self.device = device
        self.message = message


class PollFailed(DriverError):
    """A read failed; library errors are translated into this at the driver boundary."""


class WriteFailed(DriverError):
    """A write was refused by the device or could not be delivered."""


class UnknownPoint(DriverError):
    """The device has no such point (or the point is not writable)."""


class NotWritable(UnknownPoint):
    """The point exists but is read-only (the ``write`` command answers ``not_writable``)."""


class NotSupported(DriverError):
    """The driver does not offer this operation."""


class DriverContext(Protocol):
    """What the core offers a driver. The runtime builds one per driver instance."""

    logger: logging.Logger
    clock: Clock
    state_dir: Path

    async def emit(self, batch: Batch) -> None:
        """Hand a batch of samples to the pipeline.

        Awaits when the pipeline queue is full: that is the backpressure that keeps memory
        bounded when the store is slow. Never mutate a batch after emitting it.
        """

    def set_status(self, device: str, status: DeviceStatus, reason: str = "") -> None:
        """Report a device's link status (online/offline). Cheap; repeats are ignored."""

    async def emit_event(self, event: Event) -> None:
        """Commit a business event (charging order, fault code, ...) to the outbox."""

    def kv(self, namespace: str) -> KeyValue:
        """A small persistent key-value map in the store, for state a driver must keep
        across restarts (open OCPP transactions, a transaction id counter)."""

    def poll_stats(self, name: str) -> PollStats:
        """The poll statistics of a device or bus (requests, errors by kind, latency): call
        ``ok(latency)`` or ``error(kind, message)`` once per request. See gateway/pollstats.py."""


class KeyValue(Protocol):
    async def get(self, key: str, default: Any = None) -> Any: ...

    async def put(self, key: str, value: Any) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def items(self) -> list[tuple[str, Any]]: ...


TaskFactory = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class WriteResult:
    """What a write did, as the ``write`` command replies it beside device and point
    (docs/wire-format.md): the value written and, for a point read back after the write,
    the value read back."""

    written: Value
    readback: Value = None
    read_back: bool = False

    def reply(self) -> dict[str, Value]:
        out: dict[str, Value] = {"written": self.written}
        if self.read_back:
            out["readback"] = self.readback
        return out


class Driver(ABC):
    """One instance per driver type, given every enabled device of that type."""

    def __init__(self, devices: Sequence[DeviceConfig], ctx: DriverContext) -> None:
        self.devices = {d.id: d for d in devices}
        self.ctx = ctx

    @abstractmethod
    def tasks(self) -> Iterable[tuple[str, TaskFactory]]:
        """The long-running coroutines to supervise, each with a descriptive name such as
        ``poll[meter-01]`` or ``ocpp-server``. A factory is called again after a crash."""

    async def write(self, device: str, point: str, value: Value) -> WriteResult | Value:
        """Write a value to a point. Returns a :class:`WriteResult`, or just the value
        written; raises :class:`UnknownPoint`, :class:`NotWritable` or :class:`WriteFailed`."""
        raise NotSupported(device, "this driver does not support writes")

    def commands(self) -> Iterable[Command]:
        """Extra commands this driver offers beyond the generic ``write`` (for example
        ``ocpp.reset``). Names are prefixed with the driver type."""
        return ()

    async def close(self) -> None:  # noqa: B027 - optional hook with a no-op default
        """Release connections. Called once at shutdown after the tasks are cancelled."""


__all__ = [
    "BUILTIN_DRIVERS", "CliInstaller", "DeviceConfig", "Driver", "DriverContext", "DriverError",
    "DriverFactory", "DriverSpec", "KeyValue", "LazyDriver", "NotSupported", "PollFailed",
    "TaskFactory", "UnknownPoint", "WriteFailed", "config_model", "get_driver", "names",
    "register_driver", "registry",
]
