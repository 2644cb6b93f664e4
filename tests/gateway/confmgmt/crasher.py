"""A plugin module whose component kills the daemon when it starts (the crash-loop test):
the config that lists it validates, and every start with it dies."""

from __future__ import annotations

import os

from gateway.components import Component, ComponentContext, ComponentSpec, register_component


class Crasher(Component):
    name = "crasher"

    async def start(self) -> None:
        os._exit(70)


def _factory(ctx: ComponentContext[None]) -> Crasher:
    return Crasher()


register_component(ComponentSpec("crasher", _factory))
