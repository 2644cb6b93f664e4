"""Every ocpp.* command against simulated charge points of both versions, the timeout and
offline errors, and the site power shared between active sessions."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.commands import CommandError
from tests.drivers.ocpp.conftest import charger, server
from tests.support.wait import wait_until


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_each_command_reaches_the_charger(make_gateway: Any, version: str) -> None:
    gw = await make_gateway([server(id_tags=[{"id_tag": "T1"}]), charger("cp-1")])
    sim = gw.sim("cp-1", version)
    await sim.connect()
    await sim.boot()
    cmd = gw.command

    assert (await cmd("ocpp.remote_start")(charger="cp-1", id_tag="T1", connector=1)) == \
        {"status": "Accepted"}
    await wait_until(lambda: sim.state[1].transaction_id is not None)
    tx = sim.state[1].transaction_id
    await wait_until(lambda: bool(gw.driver.hub.orders.kv.data))  # type: ignore[attr-defined]
    assert (await cmd("ocpp.remote_stop")(charger="cp-1", transaction_id=tx)) == \
        {"status": "Accepted"}
    await wait_until(lambda: any(e.type == "charging_order_completed" for e in gw.ctx.events))
    assert (await cmd("ocpp.reset")(charger="cp-1", hard=True))["status"] == "Accepted"
    assert (await cmd("ocpp.unlock")(charger="cp-1", connector=1))["status"] == "Unlocked"
    assert (await cmd("ocpp.change_availability")(charger="cp-1", connector=1,
                                                  operative=False))["status"] == "Accepted"
    assert (await cmd("ocpp.trigger")(charger="cp-1", message="Heartbeat"))["status"] == \
        "Accepted"
    assert (await cmd("ocpp.set_config")(charger="cp-1", key="MeterValueSampleInterval",
                                         value="15")) is not None
    assert sim.config["MeterValueSampleInterval"] == "15"
    got = await cmd("ocpp.get_config")(charger="cp-1", keys=["MeterValueSampleInterval"])
    assert "15" in str(got)
    assert (await cmd("ocpp.limit")(scope="charger", charger="cp-1", connector=1,
                                    limit_w=3700))["status"] == "Accepted"
    assert sim.state[1].limit_w == 3700.0
    assert (await cmd("ocpp.limit")(scope="charger", charger="cp-1", connector=1,
                                    limit_w=None))["status"] == "Accepted"
    assert sim.state[1].limit_w is None

    seen = [action for action, _ in sim.received]
    for expected in ("Reset", "UnlockConnector", "ChangeAvailability", "TriggerMessage",
                     "SetChargingProfile", "ClearChargingProfile"):
        assert expected in seen


async def test_id_tag_list_commands_change_authorize(make_gateway: Any) -> None:
    gw = await make_gateway([server(id_tags=[{"id_tag": "CFG"}]), charger("cp-1")])
    sim = gw.sim("cp-1")
    await sim.connect()
    await sim.boot()
    tags = gw.command("ocpp.id_tags")
    assert [t["id_tag"] for t in (await tags())["id_tags"]] == ["CFG"]
    assert await sim.authorize("NEW") == "Invalid"
    await tags(action="add", id_tag="NEW")
    await tags(action="add", id_tag="BAD", status="Blocked")
    assert await sim.authorize("NEW") == "Accepted"
    assert await sim.authorize("BAD") == "Blocked"
    await tags(action="remove", id_tag="CFG")
    assert await sim.authorize("CFG") == "Invalid"
    with pytest.raises(CommandError) as info:
        await tags(action="remove", id_tag="CFG")
    assert info.value.code == "not_found"


async def test_offline_unknown_and_timeout_errors(make_gateway: Any) -> None:
    gw = await make_gateway([server(call_timeout=0.3), charger("cp-1")])
    with pytest.raises(CommandError) as info:
        await gw.command("ocpp.reset")(charger="cp-1")
    assert info.value.code == "offline"
    with pytest.raises(CommandError) as info:
        await gw.command("ocpp.reset")(charger="nope")
    assert info.value.code == "unknown_charger"

    sim = gw.sim("cp-1")
    await sim.connect()
    await sim.boot()
    sim._reader.cancel()  # type: ignore[union-attr]  # the charger stops reading: it hangs
    with pytest.raises(CommandError) as info:
        await gw.command("ocpp.reset")(charger="cp-1")
    assert info.value.code == "timeout"


async def test_site_power_is_shared_between_sessions(make_gateway: Any) -> None:
    gw = await make_gateway([server(max_site_power_w=12000, id_tags=[{"id_tag": "T"}]),
                             charger("cp-a"), charger("cp-b", ocpp_versions=["2.0.1"])])
    a, b = gw.sim("cp-a", "1.6"), gw.sim("cp-b", "2.0.1")
    for sim in (a, b):
        await sim.connect()
        await sim.boot()
    await a.start(1, "T")
    await wait_until(lambda: a.state[1].limit_w == 12000.0)
    await b.start(1, "T")
    await wait_until(lambda: a.state[1].limit_w == 6000.0 and b.state[1].limit_w == 6000.0)
    # the quota action limit_charging: a site-wide limit through ocpp.limit
    result = await gw.command("ocpp.limit")(scope="site", limit_w=4000)
    assert result["site_limit_w"] == 4000
    await wait_until(lambda: a.state[1].limit_w == 2000.0 and b.state[1].limit_w == 2000.0)
    await a.stop(1)
    await wait_until(lambda: b.state[1].limit_w == 4000.0)
    await gw.command("ocpp.limit")(scope="site", limit_w=None)  # back to max_site_power_w
    await wait_until(lambda: b.state[1].limit_w == 12000.0)


# (version, command, arguments, the argument named in the error)
BAD_ARGUMENTS = [
    ("1.6", "ocpp.remote_stop", {"transaction_id": "abc"}, "transaction_id"),
    ("1.6", "ocpp.trigger", {"message": "LogStatusNotification"}, "message"),
    ("1.6", "ocpp.remote_start", {"id_tag": "x" * 21}, "id_tag"),
    ("1.6", "ocpp.set_config", {"key": "k" * 51, "value": "1"}, "key"),
    ("1.6", "ocpp.get_config", {"keys": ["k" * 51]}, "keys"),
    ("2.0.1", "ocpp.trigger", {"message": "DiagnosticsStatusNotification"}, "message"),
    ("2.0.1", "ocpp.remote_stop", {"transaction_id": "x" * 37}, "transaction_id"),
    ("2.0.1", "ocpp.remote_start", {"id_tag": "x" * 37}, "id_tag"),
    ("2.0.1", "ocpp.set_config", {"key": "C" * 51 + ".V", "value": "1"}, "key"),
    ("2.0.1", "ocpp.set_config", {"key": "C.V", "value": "v" * 1001}, "value"),
    ("2.0.1", "ocpp.get_config", {"keys": ["C" * 51 + ".V"]}, "keys"),
]


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_arguments_the_version_cannot_carry_are_bad_arguments_and_nothing_is_sent(
    make_gateway: Any, version: str
) -> None:
    gw = await make_gateway([server(), charger("cp-1")])
    sim = gw.sim("cp-1", version)
    await sim.connect()
    await sim.boot()
    cases = [c for c in BAD_ARGUMENTS if c[0] == version]
    assert cases
    for _, name, args, field in cases:
        with pytest.raises(CommandError) as info:
            await gw.command(name)(charger="cp-1", **args)
        err = info.value
        assert err.code == "bad_arguments", (name, args, err.code, err.message)
        assert err.details["field"] == field, (name, err.details)
        assert f"OCPP {version}" in err.message and "nothing was sent" in err.message
    assert sim.received == []  # the charger never saw any of them


async def test_charger_error_stays_for_what_a_charger_answered(make_gateway: Any) -> None:
    gw = await make_gateway([server(), charger("cp-1")])
    sim = gw.sim("cp-1", "2.0.1")
    await sim.connect()
    await sim.boot()
    del sim.cp.route_map["Reset"]  # the charger answers Reset with a CALLERROR
    with pytest.raises(CommandError) as info:
        await gw.command("ocpp.reset")(charger="cp-1")
    assert info.value.code == "charger_error"
    assert "NotImplemented" in info.value.message


async def test_a_callerror_code_unknown_to_the_library_is_still_a_charger_error(
    make_gateway: Any
) -> None:
    import json

    from tests.drivers.ocpp.test_robustness import BOOT201, exchange, raw_client

    gw = await make_gateway([server(), charger("cp-raw")])
    ws = await raw_client(gw.url, "cp-raw", "2.0.1")
    assert (await exchange(ws, json.dumps([2, "b", "BootNotification", BOOT201])))[0] == 3
    reset = asyncio.create_task(gw.command("ocpp.reset")(charger="cp-raw"))
    frame = json.loads(await ws.recv())
    assert frame[2] == "Reset"
    await ws.send(json.dumps([4, frame[1], "RpcFrameworkError", "not today", {}]))
    with pytest.raises(CommandError) as info:
        await reset
    assert info.value.code == "charger_error" and "RpcFrameworkError" in info.value.message
    await ws.close()
