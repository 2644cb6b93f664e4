"""Every endpoint against the running demo daemon (subprocess): reads, 401/403, CSRF, tokens,
commands, the live stream, metrics."""

from __future__ import annotations

import gzip
import http.client
import json
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway.http.support import PASSWORDS, ROOT, Client, Site, wait_until
from tests.support.daemon import fieldgate

READS = ["/api/v1/session", "/api/v1/overview", "/api/v1/devices", "/api/v1/devices/main-meter",
         "/api/v1/alarms", "/api/v1/quotas", "/api/v1/chargers", "/api/v1/buffer",
         "/api/v1/uplink", "/api/v1/plugins", "/api/v1/workorders", "/api/v1/kpis?period=month",
         "/api/v1/events", "/api/v1/logs?lines=5&level=WARNING", "/api/v1/commands",
         "/metrics"]
WRITES = [("/api/v1/commands/ping", {}),
          ("/api/v1/devices/main-meter/points/power_limit_w", {"value": 1000}),
          ("/api/v1/alarms/x/ack", {}),
          ("/api/v1/chargers/charger-1/stop", {"transaction_id": "1"}),
          ("/api/v1/chargers/charger-1/start", {"id_tag": "DEMO-TAG"})]


def test_health_and_readiness_need_no_login(site: Site) -> None:
    anon = Client(site.base)
    assert anon.get("/healthz").json() == {"ok": True, "store": "writable"}
    ready = wait_until(lambda: anon.get("/readyz").json()["uplink_connected"] and
                       anon.get("/readyz"), what="uplink connected")
    assert ready.status == 200
    assert ready.json() == {"ready": True, "drivers_started": True, "uplink_connected": True}


def test_every_read_needs_a_login(site: Site) -> None:
    anon = Client(site.base)
    for path in READS:
        resp = anon.get(path)
        assert resp.status == 401, path
        assert resp.json()["error"]["code"] == "unauthorized"
    assert anon.get("/").status == 200  # the page itself holds no data


def test_viewer_reads_every_endpoint(site: Site) -> None:
    viewer = site.client("vic")
    for path in READS:
        resp = viewer.get(path)
        assert resp.status == 200, (path, resp.body[:300])
        assert path == "/metrics" or resp.headers["Cache-Control"] == "no-store"
    assert viewer.get("/api/v1/channels").json()["error"]["code"] == "not_configured"
    session = viewer.get("/api/v1/session").json()
    assert session["user"] == "vic" and session["role"] == "viewer"
    assert "password" not in json.dumps(session) and "scrypt" not in json.dumps(session)


def test_viewer_is_refused_every_write(site: Site) -> None:
    viewer = site.client("vic")
    for path, body in WRITES:
        resp = viewer.post(path, body)
        assert resp.status == 403, path
        assert resp.json()["error"]["code"] == "forbidden"
    token = site.client(token="robot")
    assert token.post("/api/v1/commands/ping").status == 403


def test_csrf_token_is_required_for_a_cookie_session(site: Site) -> None:
    operator = site.client("olga")
    assert operator.post("/api/v1/commands/ping", csrf=False).json()["error"]["code"] == "csrf"
    wrong = operator.post("/api/v1/commands/ping", csrf=False,
                          headers={"X-CSRF-Token": "not-the-token"})
    assert wrong.status == 403 and wrong.json()["error"]["code"] == "csrf"
    ok = operator.post("/api/v1/commands/ping")
    assert ok.status == 200 and ok.json()["result"]["gateway"] == "demo-gw"


def test_login_cookie_is_httponly_and_strict(site: Site) -> None:
    resp = Client(site.base).post("/api/v1/login", {"user": "olga", "password": PASSWORDS["olga"]})
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert PASSWORDS["olga"] not in resp.body.decode()


def test_login_must_be_json(site: Site) -> None:
    resp = Client(site.base).request("POST", "/api/v1/login", None,
                                     headers={"Content-Type": "text/plain"})
    assert resp.status == 415


def test_logout_ends_the_session(site: Site) -> None:
    operator = site.client("olga")
    assert operator.post("/api/v1/logout").status == 200
    assert operator.get("/api/v1/devices").status == 401


def test_api_tokens(site: Site) -> None:
    assert Client(site.base, token="fgt_wrong").get("/api/v1/devices").status == 401
    assert site.client(token="robot").get("/api/v1/devices").status == 200
    ops = site.client(token="ops-robot")  # a bearer token needs no CSRF token
    assert ops.post("/api/v1/commands/ping").json()["ok"] is True
    # The server's own figures; its CPU meter is off unless the daemon was started with it.
    stats = ops.post("/api/v1/commands/http.stats").json()["result"]
    assert stats["server"] is True and stats["streams"] >= 0
    assert stats["cpu"]["on"] is False and "FIELDGATE_HTTP_CPU=1" in stats["cpu"]["reason"]


def test_devices_have_status_and_last_values(site: Site) -> None:
    viewer = site.client("vic")

    def meter() -> dict | None:
        d = viewer.get("/api/v1/devices/demo-meter").json()
        return d if d["status"] in ("online", "alarm") and d["points"] else None

    d = wait_until(meter, what="demo-meter online with values")
    assert d["driver"] == "modbus" and d["since"] > 0 and d["last_seen"] > 0
    point = next(iter(d["points"].values()))
    assert set(point) == {"value", "quality", "ts"}
    assert viewer.get("/api/v1/devices/nope").status == 404
    # The units the config gives (the SDM630 profile); a simulated device's points have none.
    assert d["units"]["voltage_l1"] == "V" and d["units"]["power_l1"] == "W"
    assert viewer.get("/api/v1/devices/main-meter").json()["units"] == {}
    # ?points=false: the same device without its points, and their number.
    short = viewer.get("/api/v1/devices/demo-meter?points=false").json()
    assert "points" not in short and short["point_count"] == len(d["points"])
    assert set(short) == set(d) - {"points"} | {"point_count"}
    stable = ("id", "name", "driver", "tags", "enabled", "units")
    assert [short[k] for k in stable] == [d[k] for k in stable]
    every = viewer.get("/api/v1/devices?points=false").json()
    assert [x["id"] for x in every] == [x["id"] for x in viewer.get("/api/v1/devices").json()]
    assert all("points" not in x and x["point_count"] >= 0 for x in every)
    assert next(x for x in every if x["id"] == "demo-meter")["units"] == d["units"]
    # The shared answer, gzipped for a client that accepts it, plain for one that does not.
    plain = viewer.get("/api/v1/devices")
    assert "Content-Encoding" not in plain.headers and plain.headers["Vary"] == "Accept-Encoding"
    packed = viewer.request("GET", "/api/v1/devices", headers={"Accept-Encoding": "gzip, br"})
    assert packed.headers["Content-Encoding"] == "gzip" and len(packed.body) < len(plain.body)
    unpacked = json.loads(gzip.decompress(packed.body))
    assert [x["id"] for x in unpacked] == [x["id"] for x in plain.json()]
    assert all(set(x["points"]) for x in unpacked if x["id"] == "demo-meter")
    listed = wait_until(lambda: "soc_pct" in {x["id"]: x for x in viewer.get(
        "/api/v1/devices").json()}["bess-01"]["points"], what="bess-01 soc_pct (OPC-UA)")
    assert listed


def test_commands_described_with_json_schema(site: Site) -> None:
    cmds = {c["name"]: c for c in site.client("vic").get("/api/v1/commands").json()}
    assert {"devices.list", "ocpp.sessions", "write", "alarm.ack"} <= set(cmds)
    write = cmds["write"]["args"]
    assert write["type"] == "object" and set(write["required"]) == {"device", "point", "value"}


def test_command_errors_map_to_http_status(site: Site) -> None:
    ops = site.client(token="ops-robot")
    assert ops.post("/api/v1/commands/nope").status == 404
    bad = ops.post("/api/v1/commands/write", {"device": "main-meter"})
    assert bad.status == 400 and bad.json()["error"]["code"] == "bad_arguments"
    assert ops.request("POST", "/api/v1/commands/ping", None,
                       headers={"Content-Type": "application/json"}).status == 200
    raw = ops.request("POST", "/api/v1/commands/ping", None,
                      headers={"Content-Type": "application/json"})
    assert raw.status == 200
    listed = ops.post("/api/v1/commands/devices.list", {"device": "pv-roof"}).json()["result"]
    assert [d["id"] for d in listed] == ["pv-roof"]


def test_who_acted_is_the_authenticated_caller(site: Site) -> None:
    """``by``/``inspector`` of a command posted with a session or a token is the caller: the
    server fills it in, and refuses another name (403), so no one can act in another's name."""
    operator, robot = site.client("olga"), site.client(token="ops-robot")
    posted = operator.post("/api/v1/commands/workorders.create", {"title": "check fuse F3"})
    assert posted.status == 200, posted.body
    order = posted.json()["result"]
    assert order["created_by"] == "olga"
    same = operator.post("/api/v1/commands/workorders.create", {"title": "t", "by": "olga"})
    assert same.status == 200 and same.json()["result"]["created_by"] == "olga"
    for client, body in ((operator, {"title": "t", "by": "mallory"}),
                         (robot, {"title": "t", "by": "olga"})):
        refused = client.post("/api/v1/commands/workorders.create", body)
        assert refused.status == 403, refused.body
        assert refused.json()["error"]["code"] == "actor_mismatch"
        assert "leave by out" in refused.json()["error"]["message"]
    noted = robot.post("/api/v1/commands/workorders.update",
                       {"order_id": order["order_id"], "note": "fuse ordered"})
    assert noted.status == 200, noted.body
    assert noted.json()["result"]["notes"][-1]["by"] == "ops-robot"
    impostor = operator.post("/api/v1/commands/inspections.complete",
                             {"inspector": "vic", "result": "pass", "device": "main-meter"})
    assert impostor.status == 403 and impostor.json()["error"]["code"] == "actor_mismatch"
    done = operator.post("/api/v1/commands/inspections.complete",
                         {"result": "pass", "device": "main-meter", "findings": "by-olga"})
    assert done.status == 200, done.body
    event = wait_until(lambda: next((e for e in operator.get("/api/v1/events").json()
                                     if e["type"] == "inspection_completed"
                                     and e["body"]["findings"] == "by-olga"), None),
                       what="the inspection_completed event")
    assert event["body"]["inspector"] == "olga"
    orders = operator.get("/api/v1/workorders?limit=50").json()["result"]
    assert "mallory" not in {o["created_by"] for o in orders}


def test_operator_writes_a_point(site: Site) -> None:
    operator = site.client("olga")
    resp = operator.post("/api/v1/devices/main-meter/points/power_limit_w", {"value": 1234})
    assert resp.status == 200, resp.body
    assert resp.json()["result"]["written"] == 1234.0
    refused = operator.post("/api/v1/devices/main-meter/points/voltage_v", {"value": 1})
    assert refused.status == 409 and refused.json()["error"]["code"] == "not_writable"
    unknown = operator.post("/api/v1/devices/main-meter/points/nope", {"value": 1})
    assert unknown.status == 404 and unknown.json()["error"]["code"] == "unknown_point"


def test_alarm_acknowledge(site: Site) -> None:
    operator = site.client("olga")

    def open_alarm() -> dict | None:
        alarms = operator.get("/api/v1/alarms").json()["result"]["open"]
        return next((a for a in alarms if a["rule"] == "pv-producing"), None)

    alarm = wait_until(open_alarm, what="the pv-producing alarm")
    resp = operator.post(f"/api/v1/alarms/{alarm['alarm_id']}/ack")
    assert resp.status == 200 and resp.json()["result"]["alarm"]["acked_by"] == "olga"
    assert operator.post("/api/v1/alarms/nope/ack").status == 404


def test_chargers_sessions_and_remote_stop(site: Site) -> None:
    operator = site.client("olga")

    def session() -> dict | None:
        r = operator.get("/api/v1/chargers").json()["result"]
        c1 = next(c for c in r["chargers"] if c["charger"] == "charger-1")
        return c1["sessions"][0] if c1["connected"] and c1["sessions"] else None

    s = wait_until(session, timeout=60, what="a charging session on charger-1")
    assert s["id_tag"] == "DEMO-TAG" and "energy_wh" in s and "limit_w" in s and "power_w" in s
    resp = operator.post("/api/v1/chargers/charger-1/stop",
                         {"transaction_id": s["transaction_id"]})
    assert resp.status == 200, resp.body
    wait_until(lambda: session() is None, what="the session closed")
    assert operator.post("/api/v1/chargers/nope/stop", {"transaction_id": "1"}).status == 404


def test_stream_filters_by_device(site: Site) -> None:
    conn = http.client.HTTPConnection(site.base.removeprefix("http://"), timeout=20)
    conn.request("GET", "/api/v1/stream?device=main-meter",
                 headers={"Authorization": f"Bearer {site.tokens['robot']}"})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
    seen: dict[str, list] = {}
    event = ""
    while "samples" not in seen:
        line = resp.readline().decode().strip()
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            seen.setdefault(event, []).append(json.loads(line[6:]))
    conn.close()
    assert set(seen["snapshot"][0]) <= {"main-meter"}
    assert {row[0] for rows in seen["samples"] for row in rows} == {"main-meter"}


def documented_metrics() -> set[str]:
    """Every metric family docs/http-api.md lists (counters without ``_total``, as the
    prometheus-client parser names the family)."""
    doc = (ROOT / "docs" / "http-api.md").read_text()
    text = doc.split("Metrics (`fieldgate_` prefix):", 1)[1].split("Series of a part", 1)[0]
    names = set()
    for token in re.findall(r"`([a-z_]+)(?:\{[a-z,]*\})?`", text):
        if token.startswith("_"):
            continue  # the histogram's _bucket, _sum, _count
        name = token if token.startswith("process_") else f"fieldgate_{token}"
        names.add(name.removesuffix("_total"))
    return names


def test_metrics_parse(site: Site) -> None:
    text = site.client(token="robot").get("/metrics").body.decode()
    names = {f.name for f in text_string_to_metric_families(text)}
    documented = documented_metrics()
    assert len(documented) > 30 and "fieldgate_poll_latency_seconds" in documented
    # The demo runs every part (uplink, rules, plugins, OCPP): every documented family is there.
    assert documented <= names, documented - names
    assert not {n for n in names if n.startswith("fieldgate_")} - documented


def test_login_rate_limit(site: Site) -> None:
    """From its own loopback address (127.0.0.2), so other tests' logins are not blocked."""
    host, port = site.base.removeprefix("http://").split(":")

    def login(password: str) -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection(host, int(port), timeout=15,
                                          source_address=("127.0.0.2", 0))
        conn.request("POST", "/api/v1/login", json.dumps({"user": "olga", "password": password}),
                     {"Content-Type": "application/json"})
        return conn.getresponse()

    try:
        first = login("wrong-password-000")
    except OSError as err:  # no 127.0.0.2 on this machine
        pytest.skip(f"cannot bind 127.0.0.2: {err}")
    assert first.status == 401
    assert [login("wrong-password-000").status for _ in range(2)] == [401, 401]
    limited = login(PASSWORDS["olga"])  # even the right password waits now
    assert limited.status == 429 and int(limited.headers["Retry-After"]) > 0
    # Another address is not affected.
    assert site.client("olga").get("/api/v1/session").status == 200




def test_cli_status_and_devices(site: Site) -> None:
    status = fieldgate("status", "-c", str(site.config))
    assert status.returncode == 0, status.stderr
    assert "gateway  demo-gw" in status.stdout and "main-meter" in status.stdout
    assert "buffer" in status.stdout and "charger  charger-1" in status.stdout
    devices = fieldgate("devices", "-c", str(site.config))
    assert devices.returncode == 0, devices.stderr
    assert "voltage_v" in devices.stdout


def test_no_secret_in_the_log(site: Site) -> None:
    Client(site.base).post("/api/v1/login", {"user": "p4ssw0rd-typed-as-user", "password": "x"})
    Client(site.base).post("/api/v1/login", {"user": "olga", "password": "wrong-but-secret"})
    log = wait_until(lambda: "failed login for olga" in site.log.read_text()
                     and site.log.read_text(), what="the failed logins logged")
    assert "(unknown user)" in log
    for secret in ("p4ssw0rd-typed-as-user", "wrong-but-secret", *PASSWORDS.values(),
                   *site.tokens.values()):
        assert secret not in log


def test_reload_brings_the_server_back(site: Site) -> None:
    """Last in this module: a reload logs every session out."""
    operator = site.client("olga")
    assert operator.post("/api/v1/commands/reload").json()["result"]["reloading"] is True
    wait_until(lambda: operator.get("/api/v1/devices").status == 401,
               what="the old session gone after the reload")
    fresh = site.client("olga")
    assert wait_until(lambda: fresh.get("/readyz").status == 200, what="ready again")
    assert fresh.get("/api/v1/devices").status == 200
