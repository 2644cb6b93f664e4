from __future__ import annotations

from tests.support.mosquitto import mosquitto

__all__ = ["mosquitto"]
