"""Malformed frames from raw websocket clients: each gets the right CALLERROR, the connection
stays up, and other chargers are unaffected. Plus admission and credentials."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from drivers.ocpp.config import ServerSettings
from drivers.ocpp.security import basic_auth_header
from tests.drivers.ocpp.conftest import PASSWORD, charger, server
from tests.support.wait import wait_until

BOOT16 = {"chargePointVendor": "raw", "chargePointModel": "raw"}
BOOT201 = {"chargingStation": {"vendorName": "raw", "model": "raw"}, "reason": "PowerUp"}


async def raw_client(url: str, cid: str, version: str, password: str = PASSWORD) -> Any:
    return await websockets.connect(
        f"{url}/{cid}", subprotocols=[f"ocpp{version}"],  # type: ignore[list-item]
        additional_headers={"Authorization": basic_auth_header(cid, password)})


async def exchange(ws: Any, frame: str) -> list[Any]:
    await ws.send(frame)
    return json.loads(await ws.recv())


def fv(version: str) -> str:
    return "FormationViolation" if version == "1.6" else "FormatViolation"


def rpc(version: str) -> str:
    """Not a valid RPC message: 2.0.1 has RpcFrameworkError for it, 1.6 FormationViolation."""
    return "FormationViolation" if version == "1.6" else "RpcFrameworkError"


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_each_malformed_frame_gets_its_callerror(make_gateway: Any, version: str) -> None:
    gw = await make_gateway([server(max_frame_bytes=2048), charger("cp-raw"), charger("cp-ok")])
    ok = gw.sim("cp-ok", version)
    await ok.connect()
    await ok.boot()
    ws = await raw_client(gw.url, "cp-raw", version)
    boot = BOOT16 if version == "1.6" else BOOT201

    # before BootNotification: SecurityError
    assert await exchange(ws, json.dumps([2, "p1", "Heartbeat", {}])) == \
        [4, "p1", "SecurityError", "Not accepted",
         {"cause": "send BootNotification and wait for Accepted first"}]
    reply = await exchange(ws, json.dumps([2, "b1", "BootNotification", boot]))
    assert reply[0] == 3 and reply[2]["status"] == "Accepted"

    cases = [
        ("{not json", "-1", rpc(version)),
        (json.dumps({"a": 1}), "-1", rpc(version)),
        (json.dumps([2, 17, "Heartbeat", {}]), "-1", rpc(version)),
        (json.dumps([2, "m1", "Heartbeat"]), "m1", rpc(version)),
        (json.dumps([3, "m1b"]), "m1b", rpc(version)),
        (json.dumps([2, "i" * 37, "Heartbeat", {}]), "i" * 36, rpc(version)),
        (json.dumps([3, "m1c", {}, "extra"]), "m1c", rpc(version)),
        (json.dumps([2, "m2", "Heartbeat", []]), "m2", fv(version)),
        (json.dumps([9, "m3", "Heartbeat", {}]), "m3",
         "ProtocolError" if version == "1.6" else "MessageTypeNotSupported"),
        (json.dumps([2, "m4", "FlyToTheMoon", {}]), "m4", "NotImplemented"),
        (json.dumps([2, "m5", "ReserveNow" if version == "1.6" else "NotifyReport", {}]),
         "m5", "NotSupported"),
        (json.dumps([2, "m6", "Authorize", {"idTag": 12} if version == "1.6"
                     else {"idToken": {"idToken": 12, "type": "ISO14443"}}]),
         "m6", "TypeConstraintViolation"),
        (json.dumps([2, "m7", "Authorize", {}]), "m7",
         "OccurenceConstraintViolation" if version == "1.6" else "OccurrenceConstraintViolation"),
        (json.dumps([2, "m8", "Heartbeat", {"pad": "x" * 4000}]), "m8", fv(version)),
    ]
    for frame, uid, code in cases:
        reply = await exchange(ws, frame)
        assert reply[0] == 4 and reply[1] == uid and reply[2] == code, (frame[:60], reply)
        # the connection is still up and serves a good call
        good = await exchange(ws, json.dumps([2, f"hb-{uid[:8]}", "Heartbeat", {}]))
        assert good[0] == 3 and good[1] == f"hb-{uid[:8]}"
    # the other charger never noticed
    assert await ok.heartbeat()
    await ws.close()
    # the config reference (config/schema.json) names the code this version got for m8
    described = ServerSettings.model_fields["max_frame_bytes"].description or ""
    assert f"{fv(version)} in OCPP {version}" in described


async def test_oversize_beyond_hard_cap_closes_only_that_connection(make_gateway: Any) -> None:
    gw = await make_gateway([server(max_frame_bytes=1024), charger("cp-big"), charger("cp-ok")])
    ok = gw.sim("cp-ok")
    await ok.connect()
    await ok.boot()
    ws = await raw_client(gw.url, "cp-big", "1.6")
    await ws.send(json.dumps([2, "x", "Heartbeat", {"pad": "x" * 8000}]))
    with pytest.raises(websockets.ConnectionClosed) as info:
        await ws.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    assert await ok.heartbeat()


async def test_wrong_credentials_get_401_and_a_log_line(
    make_gateway: Any, caplog: pytest.LogCaptureFixture
) -> None:
    gw = await make_gateway([server(), charger("cp-1")])
    caplog.set_level(logging.WARNING, logger="drivers.ocpp.server")
    with pytest.raises(InvalidStatus) as info:
        await raw_client(gw.url, "cp-1", "1.6", password="wrong-password-but-long")
    assert info.value.response.status_code == 401
    assert "WWW-Authenticate" in info.value.response.headers
    assert "cp-1" in caplog.text and "wrong password" in caplog.text
    with pytest.raises(InvalidStatus) as info:
        await websockets.connect(f"{gw.url}/cp-1", subprotocols=["ocpp1.6"])  # type: ignore[list-item]
    assert info.value.response.status_code == 401
    assert "no HTTP Basic credentials" in caplog.text
    # another charger's user name with a valid password is refused too
    with pytest.raises(InvalidStatus):
        await websockets.connect(
            f"{gw.url}/cp-1", subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            additional_headers={"Authorization": basic_auth_header("cp-2", PASSWORD)})


async def test_unknown_charger_refused_unless_recorded(make_gateway: Any) -> None:
    gw = await make_gateway([server(), charger("cp-1")])
    with pytest.raises(InvalidStatus) as info:
        await raw_client(gw.url, "stranger", "1.6")
    assert info.value.response.status_code == 404

    gw2 = await make_gateway([server(admission="record"), charger("cp-1")])
    sim = gw2.sim("stranger", "2.0.1", password=None)
    await sim.connect()
    assert await sim.boot() == "Pending"
    with pytest.raises(Exception, match="SecurityError"):
        await sim.heartbeat()  # Pending chargers may not do anything else
    recorded = dict(await gw2.ctx.kv("ocpp.chargers").items())  # what the hub persisted
    assert recorded["stranger"]["accepted"] is False
    assert [e.body["charger"] for e in gw2.ctx.events
            if e.type == "ocpp_charger_discovered"] == ["stranger"]


async def test_version_not_allowed_is_refused(make_gateway: Any) -> None:
    gw = await make_gateway([server(), charger("cp-1", ocpp_versions=["2.0.1"])])
    with pytest.raises(InvalidStatus) as info:
        await raw_client(gw.url, "cp-1", "1.6")
    assert info.value.response.status_code == 400


async def test_reconnect_replaces_old_connection(make_gateway: Any) -> None:
    gw = await make_gateway([server(), charger("cp-1")])
    first = gw.sim("cp-1")
    await first.connect()
    await first.boot()
    second = gw.sim("cp-1")
    await second.connect()
    assert await second.heartbeat()  # accepted state carried over, no new boot needed
    await first._reader  # type: ignore[misc]
    assert not first.online
    assert gw.driver.hub.sessions["cp-1"].remote  # the new one is registered
    assert len(gw.driver.hub.sessions) == 1


async def test_routine_refusals_log_one_warning_line_and_no_traceback(
    make_gateway: Any, caplog: pytest.LogCaptureFixture
) -> None:
    gw = await make_gateway([server(), charger("cp-1", ocpp_versions=["2.0.1"])])
    caplog.set_level(logging.INFO)
    port = gw.driver.server.port

    def warnings() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.levelno == logging.WARNING]

    async def refused(case: str, action: Any) -> None:
        before = len(warnings())
        await action()
        await wait_until(lambda: len(warnings()) != before, 5, what=f"a warning for {case}")
        new = warnings()[before:]
        assert len(new) == 1, (case, [r.getMessage() for r in new])

    async def bare_connect() -> None:  # a port probe or TCP health check
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        await writer.wait_closed()

    async def wrong_subprotocol() -> None:
        with pytest.raises(InvalidStatus) as info:
            await raw_client(gw.url, "cp-1", "1.6")
        assert info.value.response.status_code == 400

    async def plain_http() -> None:  # right path and credentials, but no websocket upgrade
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        auth = basic_auth_header("cp-1", PASSWORD)
        writer.write(f"GET /ocpp/cp-1 HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n"
                     .encode())
        assert (await reader.readline()).startswith(b"HTTP/1.1 426")
        writer.close()

    await refused("bare TCP connect and close", bare_connect)
    await refused("no shared subprotocol", wrong_subprotocol)
    await refused("plain HTTP", plain_http)
    # a charger that does it right afterwards: by then every refusal above was fully handled
    ok = gw.sim("cp-1", "2.0.1")
    await ok.connect()
    assert await ok.boot() == "Accepted"
    assert [r.getMessage() for r in caplog.records
            if r.levelno >= logging.ERROR or r.exc_info] == []
    messages = [r.getMessage() for r in warnings()]
    assert "127.0.0.1" in messages[0] and "before sending its HTTP request" in messages[0]
    assert "offered subprotocols ['ocpp1.6']" in messages[1] and "HTTP 400" in messages[1]
    assert "127.0.0.1" in messages[2]
