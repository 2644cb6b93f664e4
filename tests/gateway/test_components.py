"""Components start in the order their ``after`` declares, and a bad declaration is a clear
startup error rather than a silent misorder."""

from __future__ import annotations

import pytest

from gateway.components import ComponentOrderError, ComponentSpec, registry, start_order
from gateway.errors import StartupError


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
    assert order[-1] == "uplink"
