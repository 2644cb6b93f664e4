"""The ``simulated`` driver: plausible meters and inverters with no hardware."""

# Importing this package imports nothing heavy: the driver is registered lazily in
# drivers.registry.BUILTIN_DRIVERS, and these names load their module on first access.

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "SimulatedDevice": "drivers.simulated.driver",
    "SimulatedDriver": "drivers.simulated.driver",
}


def __getattr__(name: str) -> Any:
    if name == "SPEC":
        from drivers.registry import get_driver

        return get_driver("simulated")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["SPEC", "SimulatedDevice", "SimulatedDriver"]
