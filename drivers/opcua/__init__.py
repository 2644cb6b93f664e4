"""OPC-UA driver (asyncua): subscriptions and polling, security, reconnect, typed writes."""

from drivers.base import DriverSpec, register_driver
from drivers.opcua.cli import install_cli
from drivers.opcua.config import OpcuaDeviceConfig
from drivers.opcua.driver import OpcuaDriver

SPEC = register_driver(
    DriverSpec(
        "opcua",
        OpcuaDeviceConfig,
        OpcuaDriver,
        cli=install_cli,
        description="OPC-UA client: subscriptions or polling, secure channels, reconnect.",
    )
)

__all__ = ["SPEC", "OpcuaDeviceConfig", "OpcuaDriver"]
