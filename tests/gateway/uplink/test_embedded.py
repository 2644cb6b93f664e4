"""No broker configured: the demo's embedded amqtt broker carries the data."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.uplink.config import UplinkSection
from tests.gateway.uplink.helpers import BASE, site
from tests.gateway.uplink.test_outage import uplink_of, wait_until
from tests.gateway.uplink.wirecheck import WireRecorder
from tests.support.app import running_app


async def test_embedded_broker_when_none_is_configured(tmp_path: Path) -> None:
    cfg = site(None, devices=1, interval=0.1, embedded_broker={"port": 0})
    async with running_app(cfg, tmp_path) as app:
        uplink = uplink_of(app)
        assert uplink.embedded is not None
        await wait_until(uplink.connected.is_set, 10)
        endpoint = uplink.endpoint
        assert endpoint.host == "127.0.0.1" and endpoint.port > 0
        async with WireRecorder(endpoint.host, endpoint.port, BASE,
                                client_id="demo-viewer") as rec:
            await rec.wait_for(lambda g: g.high >= 50, 10, "telemetry via the embedded broker")
            rec.assert_valid()
            # Messages sent before this viewer subscribed are gone (nobody was listening),
            # after that every row arrived in order.
            assert all(first == 1 for first, _ in rec.got.gaps)
            rows = sorted(rec.got.rows)
            assert rows == list(range(rows[0], rows[-1] + 1))


def test_embedded_broker_defaults_to_loopback_1883() -> None:
    section = UplinkSection.model_validate({"embedded_broker": {}})
    assert section.broker is None and section.embedded_broker is not None
    assert (section.embedded_broker.host, section.embedded_broker.port) == ("127.0.0.1", 1883)


async def test_no_broker_at_all_keeps_data_local_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = {"devices": [{"id": "m", "type": "simulated", "interval": 0.05}]}
    async with running_app(cfg, tmp_path) as app:
        assert not any(c.name == "uplink" for c in app.components)
    assert "no uplink.broker configured: data stays in the local buffer" in caplog.text


def test_busy_embedded_broker_port_is_a_clean_startup_error(tmp_path: Path) -> None:
    import socket

    from tests.support.app import write_config
    from tests.support.daemon import fieldgate

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = write_config(tmp_path, {"uplink": {"embedded_broker": {"port": port}},
                                      "devices": [{"id": "m", "type": "simulated"}]})
        proc = fieldgate("run", "-c", str(cfg))
    assert proc.returncode == 78, proc.stderr
    assert f"the embedded MQTT broker cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr
