"""Commands over MQTT: replies, redelivery executed once, malformed requests, reload."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.gateway.uplink.helpers import BASE, site
from tests.gateway.uplink.test_outage import uplink_of
from tests.gateway.uplink.wirecheck import Received, WireRecorder
from tests.support.app import running_app
from tests.support.mosquitto import Mosquitto
from tests.support.wait import stays, wait_until


def reply_to(request_id: str) -> Any:
    return lambda g: any(r["id"] == request_id for r in g.replies)


def replies(got: Received, request_id: str) -> list[dict[str, Any]]:
    return [r for r in got.replies if r["id"] == request_id]


async def send(client: aiomqtt.Client, name: str, payload: Any) -> None:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    await client.publish(f"{BASE}/cmd/{name}", data, qos=1)


async def test_commands_get_replies_and_bad_ones_never_crash(
    mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.uplink")
    cfg = site(mosquitto, devices=1, interval=0.2, command_max_bytes=1024,
               commands={"allow": ["@read", "write"]})
    async with (
        WireRecorder(mosquitto.host, mosquitto.port, BASE) as rec,
        running_app(cfg, tmp_path) as app,
        aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="cloud") as cloud,
    ):
        await wait_until(uplink_of(app).connected.is_set, 10)
        await send(cloud, "ping", {"id": "p1"})
        await rec.wait_for(reply_to("p1"), 5, "ping reply")
        [ping] = replies(rec.got, "p1")
        assert ping["ok"] is True and ping["command"] == "ping"
        assert ping["result"]["gateway"] == "test-gw"

        await send(cloud, "write", {"id": "w1", "args": {"device": "sim-0",
                                                          "point": "power_limit_w",
                                                          "value": 500}})
        await send(cloud, "nope", {"id": "u1"})
        await send(cloud, "write", {"id": "t1", "args": {"device": "sim-0", "point": 5,
                                                          "value": [1]}})
        await send(cloud, "write", {"id": "d1", "args": {"device": "ghost",
                                                          "point": "power_limit_w",
                                                          "value": 1}})
        await send(cloud, "ping", b"{not json")
        await send(cloud, "ping", {"args": {}})  # no id
        await send(cloud, "ping", b'{"id": "big1", "pad": "' + b"x" * 2000 + b'"}')
        await send(cloud, "ping", [1, 2])
        for rid in ("w1", "u1", "t1", "d1", "big1"):
            await rec.wait_for(reply_to(rid), 5, f"reply {rid}")
        got = rec.got
        assert replies(got, "w1")[0]["ok"] is True
        assert replies(got, "w1")[0]["result"]["written"] == 500.0
        assert replies(got, "u1")[0]["error"]["code"] == "unknown_command"
        assert replies(got, "t1")[0]["error"]["code"] == "bad_arguments"
        assert replies(got, "d1")[0]["error"]["code"] == "unknown_device"
        assert replies(got, "big1")[0]["error"]["code"] == "payload_too_large"
        # No id to answer: dropped with a log line that says why.
        await wait_until(lambda: uplink_of(app).downlink.rejected >= 4, 5)
        text = caplog.text
        assert "not JSON" in text and "needs an 'id'" in text and "JSON object" in text
        # Still alive and answering.
        await send(cloud, "ping", {"id": "p2"})
        await rec.wait_for(reply_to("p2"), 5, "second ping")
    rec.assert_valid()


async def test_a_redelivered_request_runs_once(mosquitto: Mosquitto, tmp_path: Path) -> None:
    cfg = site(mosquitto, devices=1, interval=0.2, commands={"allow": ["write"]})
    request = {"id": "same", "args": {"device": "sim-0", "point": "power_limit_w", "value": 7}}
    async with WireRecorder(mosquitto.host, mosquitto.port, BASE) as rec:
        async with (
            running_app(cfg, tmp_path) as app,
            aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="cloud") as cloud,
        ):
            await wait_until(uplink_of(app).connected.is_set, 10)
            calls: list[float] = []
            original = app.write

            async def counting_write(device: str, point: str, value: Any) -> Any:
                calls.append(value)
                # still running when the repeat arrives
                await wait_until(lambda: uplink_of(app).downlink.received >= 2, 10,
                                 what="the repeated request")
                return await original(device, point, value)

            app.write = counting_write  # type: ignore[method-assign]
            await send(cloud, "write", request)
            await send(cloud, "write", request)  # while the first runs: ignored
            await rec.wait_for(reply_to("same"), 5, "reply")
            await send(cloud, "write", request)  # after: the cached reply again
            await rec.wait_for(lambda g: len(replies(g, "same")) >= 2, 5, "repeat reply")
            await stays(lambda: calls == [7], 0.3, what="one write only")
            first, second = replies(rec.got, "same")[:2]
            assert first == second
        # The cache survives a restart (persisted in the store's KV).
        async with (
            running_app(cfg, tmp_path) as app2,
            aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="cloud") as cloud,
        ):
            await wait_until(uplink_of(app2).connected.is_set, 10)
            await send(cloud, "write", request)
            await rec.wait_for(lambda g: len(replies(g, "same")) >= 3, 5, "reply after restart")
            assert replies(rec.got, "same")[2] == first
    rec.assert_valid()


async def test_reload_reply_is_published_before_the_rebuild(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cfg = site(mosquitto, devices=1, interval=0.2, commands={"allow": ["@read", "reload"]})
    async with (
        WireRecorder(mosquitto.host, mosquitto.port, BASE) as rec,
        running_app(cfg, tmp_path) as app,
        aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="cloud") as cloud,
    ):
        first = uplink_of(app)
        await wait_until(first.connected.is_set, 10)
        await send(cloud, "reload", {"id": "r1"})
        await rec.wait_for(reply_to("r1"), 10, "reload reply")
        assert replies(rec.got, "r1")[0]["ok"] is True
        await wait_until(lambda: app.ready.is_set() and uplink_of(app) is not first, 10)
        await wait_until(uplink_of(app).connected.is_set, 10)
        # The reply went out on the old connection, before its offline status.
        names = [("reply", r["id"]) for r in rec.got.replies]
        assert names.count(("reply", "r1")) == 1
        await send(cloud, "ping", {"id": "after-reload"})
        await rec.wait_for(reply_to("after-reload"), 5, "ping after reload")
    rec.assert_valid()
