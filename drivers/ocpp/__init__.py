"""OCPP 1.6J / 2.0.1 central system driver (see README.md)."""

# Importing this package imports nothing heavy: the driver is registered lazily in
# drivers.registry.BUILTIN_DRIVERS, and these names load their module on first access.

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "OcppDeviceConfig": "drivers.ocpp.config",
    "OcppDriver": "drivers.ocpp.driver",
}


def __getattr__(name: str) -> Any:
    if name == "SPEC":
        from drivers.registry import get_driver

        return get_driver("ocpp")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["SPEC", "OcppDeviceConfig", "OcppDriver"]
