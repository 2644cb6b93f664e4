from __future__ import annotations

import pytest

from tests.gateway.uplink.helpers import ENCODINGS
from tests.support.mosquitto import mosquitto

__all__ = ["encoding", "mosquitto"]


@pytest.fixture(params=ENCODINGS)
def encoding(request: pytest.FixtureRequest) -> str:
    """``uplink.encoding``: a test taking this fixture runs once per telemetry encoding."""
    value: str = request.param
    return value
