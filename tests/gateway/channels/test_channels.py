"""Channels against a real local HTTP server that checks each platform's documented format
and signature the way the platform does (and answers like it when they are wrong)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from gateway.config.errors import ConfigError
from gateway.model import Event
from tests.gateway.channels.httpserver import Request, http_server
from tests.hooks.support import SIM, wait_for
from tests.support.app import running_app
from tests.support.wait import stays, wait_until

SECRET = "SEC0123456789abcdef"
ALARM = {"alarm_id": "a-9", "rule": "overvoltage", "kind": "threshold", "severity": "critical",
         "device": "inv-1", "point": "voltage_v", "code": "OV", "message": "voltage high",
         "value": 252.5, "started_ts": 1_700_000_000_000, "count": 1}


def check(req: Request) -> tuple[int, Any]:
    """Verify as the platforms do; answer their success or error shape."""
    now_ms = time.time() * 1000
    if req.path == "/dingtalk":
        ts = req.query["timestamp"]
        expected = base64.b64encode(hmac.new(SECRET.encode(), f"{ts}\n{SECRET}".encode(),
                                             hashlib.sha256).digest()).decode()
        ok = (urllib.parse.unquote_plus(req.query["sign"]) == expected
              and abs(int(ts) - now_ms) < 3_600_000)
        return 200, {"errcode": 0, "errmsg": "ok"} if ok else {"errcode": 310000,
                                                               "errmsg": "sign not match"}
    if req.path == "/lark":
        body = req.json()
        key = f"{body['timestamp']}\n{SECRET}".encode()
        expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
        ok = body["sign"] == expected and abs(int(body["timestamp"]) - now_ms / 1000) < 3600
        return 200, {"code": 0, "msg": "success"} if ok else {"code": 19021,
                                                              "msg": "sign match fail"}
    if req.path == "/wecom":
        ok = req.query.get("key") == "robot-key-1"
        return 200, {"errcode": 0, "errmsg": "ok"} if ok else {"errcode": 93000,
                                                               "errmsg": "invalid key"}
    if req.path == "/webhook":
        digest = hmac.new(SECRET.encode(), req.body, hashlib.sha256).hexdigest()
        ok = req.headers.get("x-fieldgate-signature") == f"sha256={digest}"
        return (200, {"ok": True}) if ok else (401, {"error": "bad signature"})
    if req.path == "/down":
        return 503, {"error": "maintenance"}
    if req.path == "/reject":
        return 400, {"error": "bad request"}
    return 404, {}


def cfg(url: str, targets: dict[str, Any], **extra: Any) -> dict[str, Any]:
    routes = extra.pop("routes", [{"channels": list(targets), "events": ["alarm_created"]}])
    return {"devices": [SIM], "plugins": {"entry_points": False},
            "channels": {"targets": targets, "routes": routes, **extra}}


ALL = {
    "ding": {"type": "dingtalk", "url": "{u}/dingtalk?access_token=tok", "secret": SECRET},
    "lark": {"type": "lark", "url": "{u}/lark", "secret": SECRET, "msgtype": "interactive"},
    "wecom": {"type": "wecom", "url": "{u}/wecom", "key": "robot-key-1", "msgtype": "text"},
    "hook": {"type": "webhook", "url": "{u}/webhook", "secret": SECRET},
}


def _targets(url: str, names: list[str] | None = None, **over: Any) -> dict[str, Any]:
    out = {}
    for name, t in ALL.items():
        if names is None or name in names:
            out[name] = {**t, "url": t["url"].format(u=url), **over.get(name, {})}
    return out


async def _stats(app: Any) -> dict[str, Any]:
    return (await app.commands.execute("channels.stats", {}))["result"]["channels"]


async def test_each_platform_format_and_signature(tmp_path: Path) -> None:
    async with http_server(check) as srv, running_app(cfg(srv.url, _targets(srv.url)),
                                                      tmp_path) as app:
        ev = Event("alarm_created", ALARM, device="inv-1", id="ev-ch-1")
        await app.pipeline.add_event(ev)
        await wait_for(lambda: len(srv.requests) >= 4)
        by = {r.path: r for r in srv.requests}
        ding = by["/dingtalk"]
        assert ding.query["access_token"] == "tok"
        assert ding.json() == {"msgtype": "markdown", "markdown": {
            "title": "[critical] inv-1: voltage high",
            "text": ding.json()["markdown"]["text"]}}
        assert "#### [critical] inv-1: voltage high" in ding.json()["markdown"]["text"]
        assert "voltage_v = 252.5" in ding.json()["markdown"]["text"]
        lark = by["/lark"].json()
        assert lark["msg_type"] == "interactive"
        assert lark["card"]["header"]["title"] == {"tag": "plain_text",
                                                   "content": "[critical] inv-1: voltage high"}
        assert lark["card"]["header"]["template"] == "red"
        assert lark["card"]["elements"][0]["text"]["tag"] == "lark_md"
        assert by["/wecom"].json() == {"msgtype": "text", "text": {
            "content": by["/wecom"].json()["text"]["content"]}}
        assert by["/wecom"].json()["text"]["content"].startswith("[critical] inv-1")
        hook = by["/webhook"]
        body = hook.json()
        assert (body["event_id"], body["type"], body["severity"], body["device"]) == (
            "ev-ch-1", "alarm_created", "critical", "inv-1")
        assert body["event"]["body"]["alarm_id"] == "a-9"
        assert hook.headers["x-fieldgate-delivery"] == "ev-ch-1"
        assert hook.headers["content-type"].startswith("application/json")
        stats = await _stats(app)
        assert {n: s["sent"] for n, s in stats.items()} == {
            "ding": 1, "lark": 1, "wecom": 1, "hook": 1}


async def test_wrong_secret_is_refused_and_retried(tmp_path: Path) -> None:
    async with http_server(check) as srv:
        targets = _targets(srv.url, ["ding", "lark"],
                           ding={"secret": "wrong"}, lark={"secret": "wrong"})
        c = cfg(srv.url, targets, retry_initial=0.05, retry_max=0.05, max_attempts=3)
        async with running_app(c, tmp_path) as app:
            await app.pipeline.add_event(Event("alarm_created", ALARM, id="ev-ch-2"))
            await wait_for(lambda: len(srv.requests) >= 6)
            async def given_up() -> dict[str, Any] | None:
                s = await _stats(app)
                done = s["ding"]["failed"] == 1 and s["lark"]["failed"] == 1 \
                    and s["ding"]["pending"] == 0
                return s if done else None

            s = await wait_until(given_up, 15, what="both channels gave up")
            assert "310000" in s["ding"]["last_error"] and "19021" in s["lark"]["last_error"]
            assert s["ding"]["pending"] == 0


async def test_failing_channel_does_not_block_others(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    async with http_server(check) as srv:
        targets = {"down": {"type": "webhook", "url": srv.url + "/down"},
                   "up": {"type": "webhook", "url": srv.url + "/webhook", "secret": SECRET},
                   "reject": {"type": "webhook", "url": srv.url + "/reject"}}
        c = cfg(srv.url, targets, retry_initial=0.05, retry_max=0.2)
        async with running_app(c, tmp_path) as app:
            for i in range(3):
                await app.pipeline.add_event(Event("alarm_created", {**ALARM, "alarm_id": f"{i}"},
                                                   id=f"ev-ch-3-{i}"))
            await wait_for(lambda: len([r for r in srv.requests if r.path == "/webhook"]) == 3)
            await wait_for(lambda: len([r for r in srv.requests if r.path == "/down"]) >= 3)
            s = await _stats(app)
            assert s["up"]["sent"] == 3 and s["down"]["pending"] == 3
            assert s["down"]["retries"] >= 2
            assert s["reject"]["failed"] == 3  # 400: retrying cannot help
            ups = [r.json()["event_id"] for r in srv.requests if r.path == "/webhook"]
            assert ups == ["ev-ch-3-0", "ev-ch-3-1", "ev-ch-3-2"]  # in order
    assert "channel down: delivery of event ev-ch-3-0 failed" in caplog.text
    assert "Other channels are not affected" in caplog.text


async def test_idempotent_per_event_id_across_restart(tmp_path: Path) -> None:
    async with http_server(check) as srv:
        c = cfg(srv.url, _targets(srv.url, ["hook"]))
        ev = Event("alarm_created", ALARM, id="ev-ch-4")
        async with running_app(c, tmp_path) as app:
            await app.pipeline.add_event(ev)
            await wait_for(lambda: srv.requests)
        async with running_app(c, tmp_path) as app:
            await app.pipeline.add_event(ev)  # the same event again (a producer replaying)
            await app.pipeline.add_event(Event("alarm_created", ALARM, id="ev-ch-5"))
            await wait_for(lambda: len(srv.requests) >= 2)
            # a wrong second delivery would show up within this
            await stays(lambda: len(srv.requests) == 2, 0.5, what="no second delivery")
        assert [r.json()["event_id"] for r in srv.requests] == ["ev-ch-4", "ev-ch-5"]


async def test_routing_by_severity_device_and_template(tmp_path: Path) -> None:
    async with http_server(check) as srv:
        targets = _targets(srv.url, ["hook"])
        routes = [{"channels": ["hook"], "events": ["alarm_created"],
                   "severities": ["critical"], "devices": ["inv-*"], "template": "short"},
                  {"channels": ["hook"], "events": ["charging_order_completed"]}]
        templates = {"short": {"title": "{severity}/{device}", "text": "{message} {nope}"}}
        c = cfg(srv.url, targets, routes=routes, templates=templates)
        async with running_app(c, tmp_path) as app:
            for i, (sev, dev) in enumerate([("minor", "inv-1"), ("critical", "m1"),
                                            ("critical", "inv-2")]):
                await app.pipeline.add_event(Event(
                    "alarm_created", {**ALARM, "severity": sev, "device": dev}, id=f"r{i}"))
            await app.pipeline.add_event(Event("charging_order_completed",
                                               {"order_id": "o1", "charger": "cp"}, id="r3"))
            await wait_for(lambda: len(srv.requests) >= 2)
        got = {r.json()["event_id"]: r.json() for r in srv.requests}
        assert sorted(got) == ["r2", "r3"]
        assert (got["r2"]["title"], got["r2"]["text"]) == ("critical/inv-2",
                                                          "voltage high {nope}")
        assert got["r3"]["title"] == "charging_order_completed "


def test_config_errors(tmp_path: Path) -> None:
    from gateway.config.loader import load_config
    from tests.support.app import write_config

    bad_route = cfg("http://x", {"a": {"type": "webhook", "url": "http://x"}},
                    routes=[{"channels": ["b"]}])
    with pytest.raises(ConfigError, match="names channel 'b'"):
        load_config(write_config(tmp_path, bad_route))
    bad_tpl = cfg("http://x", {"a": {"type": "webhook", "url": "http://x"}},
                  templates={"t": {"title": "{oops", "text": ""}})
    with pytest.raises(ConfigError, match="bad template"):
        load_config(write_config(tmp_path, bad_tpl))


async def test_unknown_type_and_bad_msgtype_refuse_start(tmp_path: Path) -> None:
    for target, needle in (({"type": "telegram", "url": "http://x"}, "unknown channel type"),
                           ({"type": "dingtalk", "url": "http://x", "msgtype": "card"},
                            "msgtype 'card' is not supported by dingtalk")):
        with pytest.raises(BaseException) as info:
            async with running_app(cfg("http://x", {"t": target}), tmp_path):
                pass
        assert needle in repr(info.value.exceptions[0])  # type: ignore[attr-defined]
