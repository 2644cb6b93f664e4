"""Telemetry forwarding against a real mosquitto: order, acks, birth, clean stop."""

from __future__ import annotations

from pathlib import Path

from gateway.store.db import read_stats
from gateway.uplink.wire import ENCODING_TOPIC
from tests.gateway.uplink.helpers import BASE, site
from tests.gateway.uplink.wirecheck import WireRecorder
from tests.support.app import running_app
from tests.support.mosquitto import Mosquitto


async def test_forwards_in_order_and_acks_the_store(mosquitto: Mosquitto, tmp_path: Path,
                                                    encoding: str) -> None:
    cfg = site(mosquitto, max_samples=7, window=4, encoding=encoding)
    async with WireRecorder(mosquitto.host, mosquitto.port, BASE) as rec:
        async with running_app(cfg, tmp_path) as app:
            await rec.wait_for(lambda g: g.high >= 300, 15, "300 samples")
            await rec.wait_for(lambda g: any(s["state"] == "online" for s in g.status), 5,
                               "birth")
        stats = read_stats(app.store.path)
        # The clean stop drained the buffer: everything committed reached the broker.
        await rec.wait_for(lambda g: g.high == stats.next_seq - 1, 5, "all rows")
        assert stats.acked_seq == stats.next_seq - 1
        got = rec.got
        assert not got.gaps and not got.duplicates
        assert sorted(got.rows) == list(range(1, stats.next_seq))
        assert got.telemetry_topics == {BASE + "/telemetry" + ENCODING_TOPIC[encoding]}
        assert got.messages >= (stats.next_seq - 1) / 7  # messages of at most 7 samples
        assert got.status[0]["state"] == "online" and got.status[0]["boot"] == 1
        assert got.status[-1]["state"] == "offline" and got.status[-1]["reason"] == "shutdown"
        device, _point, ts, _value, quality = got.rows[1]
        assert device.startswith("sim-") and quality == "good" and isinstance(ts, int)
        # Events: each device going online, one message per event, exactly once.
        changes = [e for e in got.events if e["type"] == "device_status_changed"]
        assert sorted(e["device"] for e in changes) == ["sim-0", "sim-1"]
        assert all(e["body"]["new_status"] == "online" for e in changes)
        assert len({e["id"] for e in got.events}) == len(got.events)
        assert stats.events_pending == 0
        rec.assert_valid()


async def test_mqtt5_with_a_persistent_session(mosquitto: Mosquitto, tmp_path: Path) -> None:
    cfg = site(mosquitto, devices=1)
    cfg["uplink"]["broker"] = {"host": mosquitto.host, "port": mosquitto.port, "protocol": "5",
              "persistent_session": True, "keepalive": 4}
    async with WireRecorder(mosquitto.host, mosquitto.port, BASE) as rec:
        async with running_app(cfg, tmp_path) as app:
            await rec.wait_for(lambda g: g.high >= 50, 15, "telemetry over MQTT 5")
        stats = read_stats(app.store.path)
        await rec.wait_for(lambda g: g.high == stats.next_seq - 1, 5, "all rows")
    assert not rec.got.gaps and not rec.got.duplicates
    rec.assert_valid()
