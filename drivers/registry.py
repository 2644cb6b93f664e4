"""The driver registry: device ``type`` name -> how to build that driver.

This module is deliberately light (no pydantic, no protocol library): the ``fieldgate`` CLI
reads it at parse time, and ``fieldgate --help`` must not pay for asyncua, ocpp or pymodbus.

Two kinds of entry, one table:

- :class:`DriverSpec` holds the objects themselves. Third-party drivers register this way,
  from the plugin hook ``register_drivers`` (run before the config is validated)::

      register_driver(DriverSpec("acme", AcmeDeviceConfig, AcmeDriver))

- :class:`LazyDriver` holds ``"module:attribute"`` references and imports each part only when
  it is needed: the config model when a device of that type is in the config being validated,
  the driver when the runtime builds it, the CLI installer when the ``fieldgate`` parser is
  built. The built-in drivers are listed in :data:`BUILTIN_DRIVERS` this way, and a package
  may register its own the same way (``register_driver(LazyDriver(...))``).

A driver's ``cli`` module is imported for every ``fieldgate`` invocation, so it must keep its
protocol library out of its module level (import it inside the command handler).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drivers.base import DeviceConfig, Driver, DriverContext

DriverFactory = Callable[[Sequence[Any], "DriverContext"], "Driver"]
#: Adds subcommands to the ``fieldgate`` CLI. It receives argparse's subparsers object; each
#: parser it adds must ``set_defaults(func=handler)`` with ``handler(args) -> int`` (exit code).
CliInstaller = Callable[[Any], None]


@dataclass(frozen=True)
class DriverSpec:
    """How to build a driver: its config model (with ``type: Literal[name]``), its factory,
    and optionally a function that adds subcommands to the ``fieldgate`` CLI."""

    name: str
    config_model: type[DeviceConfig]
    factory: DriverFactory
    cli: CliInstaller | None = None


@dataclass(frozen=True)
class LazyDriver:
    """A driver named by ``"module:attribute"`` references, imported on first use.

    ``config`` names the device config model (keep its module free of the protocol library
    where you can: it is imported to validate any config that uses this type), ``factory``
    the :class:`~drivers.base.Driver` subclass, ``cli`` an optional :data:`CliInstaller`.
    """

    name: str
    config: str
    factory: str
    cli: str | None = None

    def resolve(self) -> DriverSpec:
        return DriverSpec(self.name, _load(self.config), _load(self.factory),
                          _load(self.cli) if self.cli else None)


#: The built-in drivers. Nothing here is imported until a config or a command needs it.
BUILTIN_DRIVERS: Mapping[str, LazyDriver] = {
    d.name: d for d in (
        LazyDriver("simulated", "drivers.simulated.driver:SimulatedDevice",
                   "drivers.simulated.driver:SimulatedDriver"),
        LazyDriver("ocpp", "drivers.ocpp.config:OcppDeviceConfig",
                   "drivers.ocpp.driver:OcppDriver", cli="drivers.ocpp.cli:install_cli"),
        LazyDriver("modbus", "drivers.modbus.config:ModbusDeviceConfig",
                   "drivers.modbus.driver:ModbusDriver", cli="drivers.modbus.cli:install_cli"),
        LazyDriver("opcua", "drivers.opcua.config:OpcuaDeviceConfig",
                   "drivers.opcua.driver:OpcuaDriver", cli="drivers.opcua.cli:install_cli"),
    )
}

_REGISTRY: dict[str, DriverSpec | LazyDriver] = dict(BUILTIN_DRIVERS)
_RESOLVED: dict[str, DriverSpec] = {}


def _load(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def register_driver(spec: DriverSpec | LazyDriver) -> DriverSpec | LazyDriver:
    """Add a driver type. Registering the same entry (or the same factory) again is a no-op;
    another driver under a taken name is an error."""
    existing = _REGISTRY.get(spec.name)
    if existing is not None and existing != spec and not _same_factory(existing, spec):
        raise ValueError(f"driver type {spec.name!r} is already registered")
    if existing != spec:
        _RESOLVED.pop(spec.name, None)
    _REGISTRY[spec.name] = spec
    return spec


def _same_factory(a: DriverSpec | LazyDriver, b: DriverSpec | LazyDriver) -> bool:
    if isinstance(a, DriverSpec) and isinstance(b, DriverSpec):
        return a.factory is b.factory
    return False


def names() -> list[str]:
    """Every registered device type, without importing any driver."""
    return sorted(_REGISTRY)


def get_driver(name: str) -> DriverSpec:
    """The driver for a device type, importing it (and its protocol library) if needed."""
    entry = _REGISTRY.get(name)
    if entry is None:
        raise KeyError(f"unknown driver type {name!r}; known: {', '.join(names())}")
    if isinstance(entry, DriverSpec):
        return entry
    spec = _RESOLVED.get(name)
    if spec is None:
        spec = _RESOLVED[name] = entry.resolve()
    return spec


def config_model(name: str) -> type[DeviceConfig]:
    """The device config model of a type; imports its config module only."""
    entry = _REGISTRY.get(name)
    if entry is None:
        raise KeyError(f"unknown driver type {name!r}; known: {', '.join(names())}")
    if isinstance(entry, DriverSpec):
        return entry.config_model
    resolved = _RESOLVED.get(name)
    model: type[DeviceConfig] = resolved.config_model if resolved else _load(entry.config)
    return model


def cli_installers() -> list[CliInstaller]:
    """The CLI installers of every driver that has one (imports their cli modules only)."""
    out: list[CliInstaller] = []
    for name in names():
        entry = _REGISTRY[name]
        if isinstance(entry, DriverSpec):
            if entry.cli is not None:
                out.append(entry.cli)
        elif entry.cli is not None:
            out.append(_load(entry.cli))
    return out


def registry() -> Mapping[str, DriverSpec]:
    """Every driver, resolved: imports every driver's library (``fieldgate schema`` uses it)."""
    return {name: get_driver(name) for name in names()}
