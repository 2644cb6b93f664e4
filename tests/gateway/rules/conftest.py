from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from drivers.base import DeviceConfig
from tests.gateway.rules.harness import Harness

MakeHarness = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make_harness(tmp_path: Path) -> AsyncIterator[MakeHarness]:
    """``await make_harness(section, devices, **kw)``: a started Harness, closed at the end."""
    made: list[Harness] = []

    async def make(section: dict[str, Any], devs: Sequence[DeviceConfig], **kw: Any) -> Harness:
        h = Harness(tmp_path / f"rules{len(made)}.db", section, devs, **kw)
        made.append(h)
        return await h.start()

    yield make
    for h in made:
        if h.store is not None:
            await h.stop()
