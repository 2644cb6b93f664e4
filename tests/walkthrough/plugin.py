"""What a site lists in ``plugins.modules``: imported when the config is loaded, before the
config is validated, so the ``tank`` device type and the ``refill:`` section exist for it."""

from __future__ import annotations

from collections.abc import Iterable

from drivers.base import DriverSpec
from hooks.spec import hookimpl
from tests.walkthrough import refill  # noqa: F401 - registers the component
from tests.walkthrough.tank import TankDevice, TankDriver


@hookimpl
def register_drivers() -> Iterable[DriverSpec]:
    return [DriverSpec("tank", TankDevice, TankDriver)]
