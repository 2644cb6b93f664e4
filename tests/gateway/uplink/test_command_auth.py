"""Who may command the gateway over MQTT, and what a hostile payload can do (issue 13, 7/9/11).

Against a real mosquitto: the allow-list's read-only default, HMAC-signed commands (good,
forged, expired, replayed, for another gateway, unsigned), a deeply nested payload that used
to kill the downlink silently, NaN in a write, and a flood of id-less commands.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gateway.uplink.auth import sign
from tests.gateway.uplink.helpers import BASE, GW, site
from tests.gateway.uplink.test_downlink import replies, reply_to, send
from tests.gateway.uplink.test_outage import uplink_of, wait_until
from tests.gateway.uplink.wirecheck import WireRecorder
from tests.support.app import running_app
from tests.support.mosquitto import Mosquitto

KEY = "k3y-for-tests-only-0123456789"
WRITE = {"device": "sim-0", "point": "power_limit_w", "value": 42}


def signed(command: str, request_id: str, args: Any, *, ts_ms: int | None = None,
           nonce: str | None = None, key: str = KEY, gateway: str = GW) -> bytes:
    return sign(key.encode(), gateway=gateway, command=command, request_id=request_id,
                args=args, ts_ms=ts_ms if ts_ms is not None else int(time.time() * 1000),
                nonce=nonce or secrets.token_hex(8))


def spy_on_writes(app: Any) -> list[Any]:
    """The values every device write receives from now on."""
    writes: list[Any] = []
    original = app.write

    async def spy(device: str, point: str, value: Any) -> Any:
        writes.append(value)
        return await original(device, point, value)

    app.write = spy
    return writes


def code_of(rec: WireRecorder, request_id: str) -> str | None:
    [reply] = replies(rec.got, request_id)
    return None if reply["ok"] else reply["error"]["code"]


async def test_default_allows_only_read_only_commands(mosquitto: Mosquitto,
                                                      tmp_path: Path) -> None:
    async with (
        WireRecorder(mosquitto.host, mosquitto.port, BASE) as rec,
        running_app(site(mosquitto, devices=1, interval=0.2), tmp_path) as app,
        aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="cloud") as cloud,
    ):
        await wait_until(uplink_of(app).connected.is_set, 10)
        writes = spy_on_writes(app)
        for rid, name, args in [("w", "write", WRITE), ("r", "reload", {}),
                                ("m", "maintenance", {"device": "sim-0", "on": True}),
                                ("p", "ping", {}), ("b", "buffer.stats", {}),
                                ("l", "commands.list", {}), ("a", "alarm.list", {})]:
            await send(cloud, name, {"id": rid, "args": args})
        for rid in "wrmpbla":
            await rec.wait_for(reply_to(rid), 5, f"reply {rid}")
        assert [code_of(rec, rid) for rid in "wrm"] == ["forbidden"] * 3
        assert [code_of(rec, rid) for rid in "pbla"] == [None] * 4
        listed = {c["name"]: c["read_only"] for c in replies(rec.got, "l")[0]["result"]}
        assert listed["ping"] and listed["alarm.list"] and not listed["write"]
        assert writes == []
        assert "uplink.commands.allow" in replies(rec.got, "w")[0]["error"]["message"]


async def test_signed_commands(mosquitto: Mosquitto, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FG_TEST_CMD_KEY", KEY)
    cfg = site(mosquitto, devices=1, interval=0.2,
               commands={"allow": ["@read", "write"],
                         "signing": {"key": "${FG_TEST_CMD_KEY}", "window": 60}})
    async with (
        WireRecorder(mosquitto.host, mosquitto.port, BASE) as rec,
        running_app(cfg, tmp_path) as app,
        aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="cloud") as cloud,
    ):
        await wait_until(uplink_of(app).connected.is_set, 10)
        writes = spy_on_writes(app)
        good = signed("write", "s1", WRITE)
        await send(cloud, "write", good)
        await rec.wait_for(reply_to("s1"), 5, "signed write")
        assert code_of(rec, "s1") is None and writes == [42]

        # A broker redelivery of the same signed payload: the same reply, no second write.
        await send(cloud, "write", good)
        await rec.wait_for(lambda g: len(replies(g, "s1")) == 2, 5, "redelivery reply")
        assert replies(rec.got, "s1")[0] == replies(rec.got, "s1")[1]

        # A replay of the same nonce under a new id: refused, not executed.
        nonce = secrets.token_hex(8)
        await send(cloud, "write", signed("write", "s2", WRITE, nonce=nonce))
        await send(cloud, "write", signed("write", "s3", WRITE, nonce=nonce))
        forged = json.loads(signed("write", "s4", {**WRITE, "value": 0}))
        forged["signed"] = forged["signed"].replace('"value":0', '"value":1')
        await send(cloud, "write", forged)
        await send(cloud, "write", signed("write", "s5", WRITE, key="another-key-0123456789"))
        await send(cloud, "write", signed("write", "s6", WRITE,
                                          ts_ms=int(time.time() * 1000) - 3_600_000))
        await send(cloud, "write", signed("write", "s7", WRITE, gateway="other-gw"))
        await send(cloud, "ping", signed("write", "s8", {}))  # signed for another command
        await send(cloud, "ping", {"id": "u1"})  # unsigned
        for rid in ("s2", "s3", "s4", "s5", "s6", "s7", "s8", "u1"):
            await rec.wait_for(reply_to(rid), 5, f"reply {rid}")
        assert code_of(rec, "s2") is None
        assert code_of(rec, "s3") == "replayed"
        assert [code_of(rec, r) for r in ("s4", "s5")] == ["unauthorized"] * 2
        assert code_of(rec, "s6") == "expired"
        assert [code_of(rec, r) for r in ("s7", "s8", "u1")] == ["unauthorized"] * 3
        assert writes == [42, 42]

    # The nonces survive a restart: the same signed request is not run again.
    async with (
        WireRecorder(mosquitto.host, mosquitto.port, BASE) as rec2,
        running_app(cfg, tmp_path) as app2,
        aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="cloud") as cloud,
    ):
        await wait_until(uplink_of(app2).connected.is_set, 10)
        replay = json.loads(signed("write", "s9", WRITE, nonce=nonce))
        await send(cloud, "write", replay)
        await rec2.wait_for(reply_to("s9"), 5, "replay after restart")
        assert code_of(rec2, "s9") == "replayed"
    rec.assert_valid()


async def test_hostile_payloads_never_kill_the_downlink(
    mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.uplink")
    cfg = site(mosquitto, devices=1, interval=0.2, commands={"allow": ["@read", "write"]})
    async with (
        WireRecorder(mosquitto.host, mosquitto.port, BASE) as rec,
        running_app(cfg, tmp_path) as app,
        aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="cloud") as cloud,
    ):
        await wait_until(uplink_of(app).connected.is_set, 10)
        deep = b"[" * 30_000 + b"]" * 30_000
        await send(cloud, "ping", b'{"id": "deep1", "args": {"x": ' + deep + b"}}")
        await send(cloud, "ping", deep)  # no id at all
        await send(cloud, "write", b'{"id": "nan1", "args": {"device": "sim-0", '
                                   b'"point": "power_limit_w", "value": NaN}}')
        await send(cloud, "write", b'{"id": "inf1", "args": {"device": "sim-0", '
                                   b'"point": "power_limit_w", "value": -Infinity}}')
        await send(cloud, "ping", b'{"id": "broken1", "args": {')
        for rid in ("deep1", "nan1", "inf1", "broken1"):
            await rec.wait_for(reply_to(rid), 5, f"reply {rid}")
            assert code_of(rec, rid) == "bad_json", rid
        assert "nested 30002 levels" in replies(rec.got, "deep1")[0]["error"]["message"]
        # The next command still works.
        await send(cloud, "ping", {"id": "after"})
        await rec.wait_for(reply_to("after"), 5, "ping after the hostile ones")
        assert code_of(rec, "after") is None

        # 5,000 commands without a usable id: counted, not 5,000 WARNING lines.
        caplog.clear()
        before = uplink_of(app).downlink.rejected
        for _ in range(5_000):
            await cloud.publish(f"{BASE}/cmd/ping", b'{"args": {}}', qos=0)
        await wait_until(lambda: uplink_of(app).downlink.rejected >= before + 5_000, 20)
        lines = [r for r in caplog.records if "no request id" in r.getMessage()]
        assert 1 <= len(lines) <= 2, len(lines)
        await send(cloud, "ping", {"id": "after2"})
        await rec.wait_for(reply_to("after2"), 5, "ping after the flood")
    rec.assert_valid()
