"""Config builders shared by the uplink tests."""

from __future__ import annotations

from typing import Any

from tests.support.mosquitto import Mosquitto

GW = "test-gw"
BASE = f"fieldgate/{GW}"
#: The tests that exercise the message path (forwarding, outage, kill) run once per encoding.
ENCODINGS = ("json", "columns+deflate")


def site(broker: Mosquitto | None, *, devices: int = 2, interval: float = 0.05,
         extra_points: int = 0, **uplink: Any) -> dict[str, Any]:
    up: dict[str, Any] = {"backoff_initial": 0.1, "backoff_max": 0.5, "publish_timeout": 3,
                          "drain_grace": 3, **uplink}
    if broker is not None:
        up.setdefault("broker", {"host": broker.host, "port": broker.port, "keepalive": 4,
                                 "connect_timeout": 3})
    return {
        "gateway": {"id": GW},
        "uplink": up,
        "devices": [
            {"id": f"sim-{i}", "type": "simulated", "interval": interval, "seed": i,
             "extra_points": extra_points}
            for i in range(devices)
        ],
    }
