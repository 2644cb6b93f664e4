"""Modbus TCP / RTU / RTU-over-TCP driver: planned block reads, shared buses, profiles, SunSpec.

See drivers/modbus/README.md for the config and the commissioning CLI.
"""

from __future__ import annotations

from drivers.base import DriverSpec, register_driver
from drivers.modbus.cli import install_cli
from drivers.modbus.config import ModbusDeviceConfig, PointConfig
from drivers.modbus.driver import ModbusDriver

SPEC = register_driver(
    DriverSpec(
        "modbus",
        ModbusDeviceConfig,
        ModbusDriver,
        cli=install_cli,
        description="Modbus TCP, RTU and RTU over TCP with read planning and device profiles.",
    )
)

__all__ = ["SPEC", "ModbusDeviceConfig", "ModbusDriver", "PointConfig"]
