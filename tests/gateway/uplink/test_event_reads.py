"""The forwarder looks for new events only when one was committed past the last it issued:
while telemetry flows and no event comes, it does not query the event outbox on every wake
(each commit, each PUBACK); an event committed later still goes out, once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.model import Event
from tests.gateway.uplink.helpers import BASE, site
from tests.gateway.uplink.wirecheck import WireRecorder
from tests.support.app import running_app
from tests.support.mosquitto import Mosquitto


async def test_no_event_query_without_a_new_event(mosquitto: Mosquitto, tmp_path: Path
                                                  ) -> None:
    cfg = site(mosquitto, devices=2, interval=0.01, max_samples=20)
    async with (WireRecorder(mosquitto.host, mosquitto.port, BASE) as rec,
                running_app(cfg, tmp_path) as app):
        # both devices online: their status events went out
        await rec.wait_for(lambda g: len(g.events) >= 2 and g.high >= 100, 15,
                           "events and telemetry")
        reads: list[Any] = []
        real = app.store.read_events

        async def counted(consumer: str, limit: int = 100) -> Any:
            reads.append(consumer)
            return await real(consumer, limit)

        app.store.read_events = counted  # type: ignore[method-assign]
        start = rec.got.high
        await rec.wait_for(lambda g: g.high >= start + 200, 15, "200 more samples")
        assert reads.count("uplink") == 0, "queried the outbox with no new event"
        await app.pipeline.add_event(Event("test_marker", {"n": 1}))
        await rec.wait_for(lambda g: any(e["type"] == "test_marker" for e in g.events),
                           10, "the new event")
        assert reads.count("uplink") >= 1
    assert [e["type"] for e in rec.got.events].count("test_marker") == 1
