"""Components start in the order their ``after`` declares, and a bad declaration is a clear
startup error rather than a silent misorder."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.components import (
    Component,
    ComponentContext,
    ComponentOrderError,
    ComponentSpec,
    register_component,
    registry,
    start_order,
    unregister_component,
)
from gateway.errors import StartupError
from tests.hooks.support import wait_for
from tests.support.app import running_app


def spec(name: str, *after: str) -> ComponentSpec:
    return ComponentSpec(name, lambda ctx: None, after=after)


def names(specs: list[ComponentSpec]) -> list[str]:
    return [s.name for s in specs]


def test_dependencies_start_first_and_ties_go_by_name() -> None:
    order = names(start_order([spec("uplink", "rules", "plugins"), spec("plugins", "rules"),
                               spec("rules"), spec("control"), spec("audit", "uplink")]))
    assert order == ["control", "rules", "plugins", "uplink", "audit"]


def test_an_unknown_dependency_is_a_startup_error_naming_both() -> None:
    with pytest.raises(ComponentOrderError, match="'weather' starts after 'rulez'") as err:
        start_order([spec("rules"), spec("weather", "rulez")])
    assert isinstance(err.value, StartupError)
    assert "registered: rules, weather" in str(err.value)


def test_a_cycle_is_a_startup_error_naming_its_members() -> None:
    with pytest.raises(ComponentOrderError, match="cycle: a after c; b after a; c after b"):
        start_order([spec("a", "c"), spec("b", "a"), spec("c", "b"), spec("d")])


def test_builtin_components_order() -> None:
    order = list(registry())
    assert order.index("rules") < order.index("plugins") < order.index("channels")
    assert order[-2:] == ["uplink", "config"]  # config's health gate watches the uplink


class Probe(Component):
    """Records what its context gives it."""

    name = "probe"

    def __init__(self, ctx: ComponentContext[None]) -> None:
        self.ctx = ctx
        self.seen: list[int] = []

    async def start(self) -> None:
        self.rules = self.ctx.component("rules")  # named in after: started already
        with pytest.raises(LookupError, match="not in its after"):
            self.ctx.component("uplink")
        self.remove = self.ctx.add_observer(lambda batch, seq: self.seen.append(seq))


async def test_the_context_gives_dependencies_and_a_remover(tmp_path: Path) -> None:
    register_component(ComponentSpec("probe", Probe, after=("rules",)))
    try:
        cfg = {"devices": [{"id": "m1", "type": "simulated", "interval": 0.02}]}
        async with running_app(cfg, tmp_path) as app:
            probe = app.running["probe"]
            assert probe.rules is app.running["rules"]
            await wait_for(lambda: probe.seen)
            probe.remove()
            count = app.pipeline.stats.commits
            await wait_for(lambda: app.pipeline.stats.commits > count + 2)
            before = len(probe.seen)
            await wait_for(lambda: app.pipeline.stats.commits > count + 4)
            assert len(probe.seen) == before, "removed: told of no commit since"
    finally:
        unregister_component("probe")
