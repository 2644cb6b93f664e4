"""OCPP 1.6J / 2.0.1 central system driver (see README.md)."""

from drivers.base import DriverSpec, register_driver
from drivers.ocpp.cli import install_cli
from drivers.ocpp.config import OcppDeviceConfig
from drivers.ocpp.driver import OcppDriver

SPEC = register_driver(
    DriverSpec(
        "ocpp",
        OcppDeviceConfig,
        OcppDriver,
        cli=install_cli,
        description="OCPP central system for EV chargers (1.6J and 2.0.1).",
    )
)
