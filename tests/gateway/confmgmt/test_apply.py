"""config.get / config.apply against a real mosquitto: a good apply over MQTT, validation
errors, an expected_hash conflict, a wrong broker rolled back, a new device that never
comes online (both policies), manual confirmation and config.rollback."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gateway.config.errors import ConfigError
from gateway.config.loader import load_config
from gateway.confmgmt.versions import text_hash
from gateway.model import DeviceStatus
from tests.gateway.confmgmt.helpers import call, dump, error_of, managed_app
from tests.gateway.uplink.helpers import BASE, site
from tests.gateway.uplink.test_downlink import replies, reply_to, send
from tests.gateway.uplink.test_outage import uplink_of
from tests.gateway.uplink.wirecheck import Received, WireRecorder
from tests.support.mosquitto import Mosquitto, free_port
from tests.support.wait import wait_until


def base(mosquitto: Mosquitto, timeout: float = 10, **config: Any) -> dict[str, Any]:
    cfg = site(mosquitto, devices=2, interval=0.1,
               commands={"allow": ["@read", "config.apply", "config.confirm"]})
    cfg["config"] = {"confirm_timeout": timeout, **config}
    return cfg


def events_of(got: Received, kind: str) -> list[dict[str, Any]]:
    return [e["body"] for e in got.events if e["type"] == kind]


async def test_good_apply_over_mqtt(mosquitto: Mosquitto, tmp_path: Path) -> None:
    cfg = base(mosquitto)
    async with (
        WireRecorder(mosquitto.host, mosquitto.port, BASE, keep_rows=True) as rec,
        managed_app(cfg, tmp_path) as app,
        aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="cloud") as cloud,
    ):
        await wait_until(uplink_of(app).connected.is_set, 10)
        await send(cloud, "config.get", {"id": "g1", "args": {}})
        await rec.wait_for(reply_to("g1"), 5, "config.get reply")
        running = replies(rec.got, "g1")[0]["result"]
        assert running["version"] == 1 and running["source"].startswith("bootstrap file")
        assert running["devices"] == ["sim-0", "sim-1"]

        new = copy.deepcopy(cfg)
        new["devices"] = [cfg["devices"][0],
                          {"id": "sim-5", "type": "simulated", "interval": 0.1, "seed": 5},
                          {"id": "sim-6", "type": "simulated", "interval": 0.1, "seed": 6}]
        text = dump(new, tmp_path)
        await send(cloud, "config.apply", {"id": "a1", "args": {
            "yaml": text, "expected_hash": running["hash"]}})
        await rec.wait_for(reply_to("a1"), 10, "config.apply reply")
        reply = replies(rec.got, "a1")[0]
        assert reply["ok"], reply
        assert reply["result"]["diff"]["devices"] == {
            "added": ["sim-5", "sim-6"], "removed": ["sim-1"], "changed": []}
        assert reply["result"]["summary"] == "devices +2 -1 ~0"
        await rec.wait_for(lambda g: events_of(g, "config_confirmed"), 15, "config_confirmed")

        def new_rows(g: Received) -> set[str]:
            return {row[0] for row in g.rows.values()} & {"sim-5", "sim-6"}

        await rec.wait_for(lambda g: new_rows(g) == {"sim-5", "sim-6"}, 10,
                           "telemetry from the new devices")
        [applied] = events_of(rec.got, "config_applied")
        assert applied["version"] == 2 and applied["hash"] == text_hash(text)
        assert applied["source"] == "config.apply via mqtt request a1"
        assert applied["summary"] == "devices +2 -1 ~0"
        now = await call(app, "config.get")
        assert (now["version"], now["hash"]) == (2, text_hash(text))
        assert now["devices"] == ["sim-0", "sim-5", "sim-6"]
        assert sorted(app.device_driver) == ["sim-0", "sim-5", "sim-6"]
        history = await call(app, "config.history")
        assert [v["version"] for v in history["versions"]] == [2, 1]
        assert history["good"] == 2


async def test_validation_errors_change_nothing(mosquitto: Mosquitto, tmp_path: Path) -> None:
    cfg = base(mosquitto)
    cfg["uplink"]["broker"].update(username="test-gw", password="literal-secret")
    async with managed_app(cfg, tmp_path) as app:
        running = await call(app, "config.get")
        bad = copy.deepcopy(cfg)
        bad["devices"] = [{"id": "sim-0", "type": "simulated", "interval": -1},
                          {"id": "x", "type": "no-such-driver"},
                          {"id": "sim-2", "type": "simulated", "colour": "red"}]
        bad["uplink"]["qos"] = 7
        text = dump(bad, tmp_path)
        error = await error_of(app, "config.apply",
                               {"yaml": text, "expected_hash": running["hash"]})
        # exactly what check-config reports for the same text
        file = tmp_path / "candidate.yaml"
        file.write_text(text)
        with pytest.raises(ConfigError) as expected:
            load_config(file)
        assert error["code"] == "bad_config"
        assert error["details"] == [str(i) for i in expected.value.issues]
        assert len(error["details"]) >= 4, error["details"]
        runs = app.started_runs
        after = await call(app, "config.get")
        assert (after["version"], after["hash"]) == (1, running["hash"])
        assert [v["version"] for v in (await call(app, "config.history"))["versions"]] == [1]
        assert app.started_runs == runs and sorted(app.device_driver) == ["sim-0", "sim-1"]
        dry = await call(app, "config.apply", {"yaml": dump(cfg, tmp_path) + "# note\n",
                                               "expected_hash": running["hash"],
                                               "dry_run": True})
        assert dry["valid"] and dry["summary"] == "formatting only"
        shown = await call(app, "config.get")
        assert "<redacted>" in shown["yaml"]  # the literal broker password
        refused = await error_of(app, "config.apply", {"yaml": shown["yaml"],
                                                        "expected_hash": running["hash"]})
        assert refused["code"] == "bad_config" and "${VAR}" in refused["message"]
        moved = dump(cfg, tmp_path).replace(str(tmp_path / "state"), str(tmp_path / "other"))
        refused = await error_of(app, "config.apply", {"yaml": moved,
                                                        "expected_hash": running["hash"]})
        assert "gateway.state_dir cannot change remotely" in refused["message"]
        assert (await call(app, "config.get"))["version"] == 1


async def test_expected_hash_conflict(mosquitto: Mosquitto, tmp_path: Path) -> None:
    cfg = base(mosquitto, timeout=5)
    async with managed_app(cfg, tmp_path) as app:
        seen = (await call(app, "config.get"))["hash"]
        first = copy.deepcopy(cfg)
        first["devices"] = first["devices"][:1]
        await call(app, "config.apply", {"yaml": dump(first, tmp_path), "expected_hash": seen})
        await wait_until(lambda: app.ready.is_set() and app.started_runs == 2, 10)
        second = copy.deepcopy(cfg)
        second["devices"].append({"id": "sim-9", "type": "simulated"})
        error = await error_of(app, "config.apply",  # made from the config read before
                               {"yaml": dump(second, tmp_path), "expected_hash": seen})
        assert error["code"] == "hash_conflict"
        assert error["details"]["version"] == 2
        assert error["details"]["current_hash"] == text_hash(dump(first, tmp_path))
        assert (await call(app, "config.get"))["devices"] == ["sim-0"]


async def test_wrong_broker_is_rolled_back(mosquitto: Mosquitto, tmp_path: Path) -> None:
    cfg = base(mosquitto, timeout=3)
    async with (
        WireRecorder(mosquitto.host, mosquitto.port, BASE) as rec,
        managed_app(cfg, tmp_path) as app,
    ):
        await wait_until(uplink_of(app).connected.is_set, 10)
        running = await call(app, "config.get")
        wrong = copy.deepcopy(cfg)
        wrong["uplink"]["broker"]["port"] = free_port()  # nothing listens there
        reply = await call(app, "config.apply", {"yaml": dump(wrong, tmp_path),
                                                 "expected_hash": running["hash"]})
        assert reply["diff"]["uplink"] == ["broker.port"]
        await wait_until(lambda: app.started_runs == 2, 10, what="the apply's reload")
        await wait_until(lambda: app.started_runs == 3, 3 + 5, what="the rollback's reload")
        await wait_until(uplink_of(app).connected.is_set, 10, what="the uplink back")
        await rec.wait_for(lambda g: events_of(g, "config_rolled_back"), 10, "the event")
        [event] = events_of(rec.got, "config_rolled_back")
        assert (event["version"], event["to_version"]) == (2, 1)
        assert "uplink is not connected" in event["reason"]
        after = await call(app, "config.get")
        assert (after["version"], after["hash"]) == (1, running["hash"])


@pytest.mark.parametrize("policy", ["warn", "rollback"])
async def test_new_device_that_never_comes_online(mosquitto: Mosquitto, tmp_path: Path,
                                                  policy: str) -> None:
    cfg = base(mosquitto, timeout=2, new_devices=policy)
    async with (
        WireRecorder(mosquitto.host, mosquitto.port, BASE) as rec,
        managed_app(cfg, tmp_path) as app,
    ):
        await wait_until(lambda: all(app.status.current(d) == DeviceStatus.ONLINE
                                     for d in ("sim-0", "sim-1")), 10)
        running = await call(app, "config.get")
        new = copy.deepcopy(cfg)
        new["devices"].append({  # a Modbus meter at a port where nothing answers
            "id": "meter-new", "type": "modbus", "host": "127.0.0.1", "port": free_port(),
            "unit": 1, "interval": 0.2, "timeout": 0.2, "retries": 0,
            "points": [{"name": "p", "function": "holding", "address": 0,
                        "type": "uint16"}]})
        await call(app, "config.apply", {"yaml": dump(new, tmp_path),
                                         "expected_hash": running["hash"]})
        kind = "config_confirmed" if policy == "warn" else "config_rolled_back"
        await rec.wait_for(lambda g: events_of(g, kind), 2 + 8, kind)
        [event] = events_of(rec.got, kind)
        after = await call(app, "config.get")
        if policy == "warn":  # the old devices came back online: confirmed, with a warning
            assert event["offline_new_devices"] == ["meter-new"]
            assert after["version"] == 2 and "meter-new" in after["devices"]
        else:
            assert event["reason"] == "new device meter-new is not online"
            await wait_until(lambda: app.started_runs == 3 and app.ready.is_set(), 5,
                             what="the rollback's reload")
            assert "meter-new" not in app.device_driver
            assert (await call(app, "config.get"))["version"] == 1
        assert not events_of(rec.got, "config_rolled_back" if policy == "warn"
                             else "config_confirmed")


async def test_manual_confirm_and_rollback_command(mosquitto: Mosquitto,
                                                   tmp_path: Path) -> None:
    cfg = base(mosquitto, timeout=30)
    async with managed_app(cfg, tmp_path) as app:
        running = await call(app, "config.get")
        new = copy.deepcopy(cfg)
        new["devices"] = new["devices"][:1]
        await call(app, "config.apply", {"yaml": dump(new, tmp_path), "confirm": "manual",
                                         "expected_hash": running["hash"]})
        await wait_until(lambda: app.started_runs == 2 and app.ready.is_set(), 10)
        pending = (await call(app, "config.get"))["pending"]
        assert pending["version"] == 2 and pending["confirm"] == "manual"
        assert (await error_of(app, "config.apply", {
            "yaml": dump(cfg, tmp_path), "expected_hash": text_hash(dump(new, tmp_path))}
        ))["code"] == "apply_pending"
        assert (await call(app, "config.confirm", {"version": 2}))["confirmed"]
        assert (await call(app, "config.history"))["good"] == 2
        back = await call(app, "config.rollback", {"version": 1})
        assert back["diff"]["devices"]["added"] == ["sim-1"]
        await wait_until(lambda: app.started_runs == 3 and app.ready.is_set(), 10)
        await wait_until(lambda: (app.config_path is not None
                                  and sorted(app.device_driver) == ["sim-0", "sim-1"]), 5)
        await wait_until(lambda: app.status.current("sim-1") == DeviceStatus.ONLINE, 5)
        got = await call(app, "config.get")
        assert (got["version"], got["hash"]) == (1, running["hash"])


async def test_a_config_that_fails_to_start_is_rolled_back(mosquitto: Mosquitto,
                                                          tmp_path: Path) -> None:
    cfg = base(mosquitto)
    async with (
        WireRecorder(mosquitto.host, mosquitto.port, BASE) as rec,
        managed_app(cfg, tmp_path) as app,
    ):
        running = await call(app, "config.get")
        broken = copy.deepcopy(cfg)
        broken["control"] = {"group": "no-such-group-fg18"}  # valid, fails at start
        await call(app, "config.apply", {"yaml": dump(broken, tmp_path),
                                         "expected_hash": running["hash"]})
        await rec.wait_for(lambda g: events_of(g, "config_rolled_back"), 15, "the rollback")
        [event] = events_of(rec.got, "config_rolled_back")
        assert event["reason"].startswith("the new config failed to start: ")
        assert "no-such-group-fg18" in event["reason"]
        await wait_until(lambda: app.ready.is_set() and app.started_runs == 3, 10)
        after = await call(app, "config.get")
        assert (after["version"], after["hash"]) == (1, running["hash"])
