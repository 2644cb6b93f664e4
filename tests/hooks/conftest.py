"""Plugins in these tests register drivers in the process-wide registry; each test leaves it
as it found it, so a later test's "known types" list is the built-in one."""

from collections.abc import Iterator

import pytest

from drivers import registry


@pytest.fixture(autouse=True)
def _restore_driver_registry() -> Iterator[None]:
    saved = dict(registry._REGISTRY)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)
