"""The ``simulated`` driver: plausible meters and inverters with no hardware."""

from drivers.base import DriverSpec, register_driver
from drivers.simulated.driver import SimulatedDevice, SimulatedDriver

SPEC = register_driver(
    DriverSpec(
        "simulated",
        SimulatedDevice,
        SimulatedDriver,
        description="Simulated meters and inverters for demos and benchmarks.",
    )
)

__all__ = ["SPEC", "SimulatedDevice", "SimulatedDriver"]
