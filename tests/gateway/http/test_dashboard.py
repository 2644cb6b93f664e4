"""The dashboard in a real headless Chromium (Debian's /usr/bin/chromium via Playwright),
against the running demo daemon. Each page is saved as a screenshot under tests/artifacts/.

The site is the demo of tests/gateway/http/support.py plus an inspection plan, and its buffer
holds six hours of the main meter's power before the daemon starts: the history component
folds them in at start (its crash catch-up), so the 24 h chart has data at once."""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from gateway.model import Sample
from gateway.store import Store
from tests.gateway.http.support import PASSWORDS, Client, Site, running_site, wait_until

ARTIFACTS = Path(__file__).resolve().parents[3] / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect
if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):  # .ci/run installs it: missing there is a failure
        raise RuntimeError(f"no chromium at {CHROMIUM}; .ci/run should apt-get install it")
    pytest.skip("no chromium (apt-get install chromium)", allow_module_level=True)


SEEDED_MINUTES = 6 * 60
PLAN = {"name": "meter-cabinet", "devices": ["main-meter"], "every_days": 30,
        "checklist": [{"id": "seal", "question": "Seal intact?", "expect": True},
                      {"id": "cabinet_c", "question": "Cabinet temperature", "min": 0,
                       "max": 40}]}


def seed_power_history(state_dir: Path, now_ms: int) -> None:
    """Six hours of main-meter power_w, one sample a minute, committed to the buffer the
    daemon will open (as if they had been polled before a restart)."""
    async def main() -> None:
        store = Store(state_dir / "buffer.sqlite3")
        await store.open()
        try:
            await store.append_samples([
                Sample("main-meter", "power_w", now_ms - (SEEDED_MINUTES - i) * 60_000,
                       round(9000 + 4000 * math.sin(i / 40), 1))
                for i in range(SEEDED_MINUTES)])
        finally:
            await store.close()
    state_dir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API holds this thread's loop
        pool.submit(asyncio.run, main()).result()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    def prepare(cfg: dict[str, Any]) -> None:
        cfg.setdefault("siteops", {})["inspections"] = [PLAN]
        seed_power_history(Path(cfg["gateway"]["state_dir"]), int(time.time() * 1000))

    with running_site(tmp_path_factory.mktemp("dash"), prepare) as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def page_for(browser: object, site: Site, user: str, bypass_csp: bool = False) -> object:
    # The pages run under their own Content-Security-Policy; only the test that injects a
    # fetch() of its own (page.evaluate) needs the browser to let that script run.
    context = browser.new_context(  # type: ignore[attr-defined]
        viewport={"width": 1200, "height": 800}, bypass_csp=bypass_csp)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(site.base + "/")
    page.fill("input[name=user]", user)
    page.fill("input[name=password]", PASSWORDS[user])
    page.click("#login button[type=submit]")
    page.wait_for_selector("#devices")
    return page


def shot(page: object, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)  # type: ignore[attr-defined]


def test_login_is_required(browser: object, site: Site) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(site.base + "/")
    page.wait_for_selector("#login")
    page.fill("input[name=user]", "olga")
    page.fill("input[name=password]", "not-the-password")
    page.click("#login button[type=submit]")
    expect(page.locator("#msg")).to_contain_text("wrong")
    shot(page, "login")
    page.close()


def test_operator_sees_live_values_and_writes(browser: object, site: Site) -> None:
    page = page_for(browser, site, "olga")
    page.wait_for_selector("#devices td.online, #devices td.alarm")
    # The example plugin's calculate_custom_kpis, called when the dashboard loads.
    expect(page.locator("#kpis")).to_contain_text("example.charged_kwh")
    shot(page, "overview")
    page.click("a[href='#/device/main-meter']")
    cell = page.locator("tr[data-point='voltage_v'] td.v")
    cell.wait_for()
    first = cell.text_content()
    # The simulated meter changes every second: the page must show it without a reload.
    expect(cell).not_to_have_text(first or "")
    shot(page, "device")
    form = page.locator("#write-any")
    form.locator("input[name=point]").fill("power_limit_w")
    form.locator("input[name=value]").fill("2500")
    form.locator("button").click()
    expect(page.locator("#msg")).to_contain_text("Wrote power_limit_w = 2500")
    page.close()


def test_operator_acknowledges_an_alarm(browser: object, site: Site) -> None:
    page = page_for(browser, site, "olga")

    def alarm_row() -> bool:
        page.goto(site.base + "/#/alarms")
        page.wait_for_selector("#open-alarms")
        return page.locator("button.ack").count() > 0

    wait_until(alarm_row, what="an open alarm on the alarms page", interval=1)
    shot(page, "alarms")
    page.locator("button.ack").first.click()
    page.wait_for_selector("td.ack:has-text('by olga')")
    page.close()


def test_viewer_is_refused(browser: object, site: Site) -> None:
    page = page_for(browser, site, "vic", bypass_csp=True)
    page.goto(site.base + "/#/device/main-meter")
    page.wait_for_selector("tr[data-point='voltage_v']")
    # No write form for a viewer...
    assert page.locator("form.w").count() == 0 and page.locator("#write-any").count() == 0
    status = page.evaluate("""async () => {           // ...and the server says 403 anyway
        const me = await (await fetch('/api/v1/session')).json();
        const r = await fetch('/api/v1/devices/main-meter/points/power_limit_w', {
            method: 'POST', body: JSON.stringify({value: 1}),
            headers: {'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf}});
        return r.status; }""")
    assert status == 403
    page.close()


def test_operator_stops_a_charging_session(browser: object, site: Site) -> None:
    page = page_for(browser, site, "olga")

    def stop_button() -> bool:
        page.goto(site.base + "/#/chargers")
        page.wait_for_selector("#chargers")
        return page.locator("button.stop[data-c='charger-1']").count() > 0

    wait_until(stop_button, timeout=60, what="a session on charger-1", interval=1)
    shot(page, "chargers")
    page.locator("button.stop[data-c='charger-1']").click()
    expect(page.locator("#msg")).to_contain_text("Stop sent")
    wait_until(lambda: not stop_button(), what="the session gone", interval=1)
    page.close()


def test_log_view_filters_by_level(browser: object, site: Site) -> None:
    page = page_for(browser, site, "vic")
    page.goto(site.base + "/#/logs/INFO")
    expect(page.locator("#log")).to_contain_text("vic logged in")
    shot(page, "logs")
    page.select_option("#level", "WARNING")
    page.wait_for_url("**/#/logs/WARNING")
    expect(page.locator("#log")).not_to_contain_text("logged in")
    page.close()


def sessions_on(client: Client, charger: str) -> list[dict[str, Any]]:
    chargers = client.get("/api/v1/chargers").json()["result"]["chargers"]
    return next(c for c in chargers if c["charger"] == charger)["sessions"]


def test_operator_starts_a_charge(browser: object, site: Site) -> None:
    ops = site.client("olga")
    wait_until(lambda: any(c["charger"] == "charger-1" and c["connected"] for c in
                           ops.get("/api/v1/chargers").json()["result"]["chargers"]),
               timeout=60, what="charger-1 connected")
    for s in sessions_on(ops, "charger-1"):  # a free connector first
        ops.post("/api/v1/chargers/charger-1/stop", {"transaction_id": s["transaction_id"]})
    wait_until(lambda: sessions_on(ops, "charger-1") == [], what="charger-1 idle", interval=0.5)
    page = page_for(browser, site, "olga")
    page.goto(site.base + "/#/chargers")
    form = page.locator("form.start[data-c='charger-1']")
    form.locator("input[name=id_tag]").fill("DEMO-TAG")
    form.locator("select[name=connector]").select_option("1")
    form.locator("button").click()
    expect(page.locator("#msg")).to_contain_text("Start sent to charger-1")

    def session_row() -> bool:
        page.goto(site.base + "/#/chargers")
        page.wait_for_selector("#chargers")
        return page.locator("tr:has(button.stop[data-c='charger-1'])").count() > 0

    wait_until(session_row, timeout=60, what="a session started on charger-1", interval=1)
    expect(page.locator("tr:has(button.stop[data-c='charger-1'])")).to_contain_text("tag DEMO-TAG")
    assert [s["id_tag"] for s in sessions_on(ops, "charger-1")] == ["DEMO-TAG"]
    shot(page, "chargers-started")
    page.close()


def test_operator_creates_and_completes_a_work_order(browser: object, site: Site) -> None:
    page = page_for(browser, site, "olga")
    page.goto(site.base + "/#/work")
    title = f"Replace fuse F3 {uuid.uuid4().hex[:6]}"
    form = page.locator("#wo-create")
    form.locator("input[name=title]").fill(title)
    form.locator("select[name=device]").select_option("main-meter")
    form.locator("select[name=priority]").select_option("high")
    form.locator("input[name=assignee]").fill("tom")
    form.locator("button").click()
    expect(page.locator("#msg")).to_contain_text("Work order created")
    row = page.locator(f"#orders tr:has-text('{title}')")
    expect(row.locator("td.status")).to_have_text("open")
    order_id = row.get_attribute("data-order")
    row.locator("input[name=resolution]").fill("fuse replaced")
    row.locator("button").click()
    expect(page.locator("#msg")).to_contain_text("Work order completed")
    expect(page.locator(f"#orders tr[data-order='{order_id}'] td.status")).to_have_text("done")
    shot(page, "work-orders")
    page.close()
    got = site.client("olga").post("/api/v1/commands/workorders.get", {"order_id": order_id})
    order = got.json()["result"]
    assert (order["status"], order["device"], order["priority"], order["assignee"],
            order["created_by"], order["resolution"]) == (
        "done", "main-meter", "high", "tom", "olga", "fuse replaced")


def test_operator_completes_an_inspection(browser: object, site: Site) -> None:
    page = page_for(browser, site, "olga")
    page.goto(site.base + "/#/work")
    form = page.locator("#insp")
    form.locator("select[name=which]").select_option(label="meter-cabinet — main-meter (due)")
    form.locator("input[data-id=seal]").fill("true")
    form.locator("input[data-id=cabinet_c]").fill("55")  # above max 40: fails, opens an order
    form.locator("input[name=findings]").fill("fan blocked")
    form.locator("button").click()
    expect(page.locator("#msg")).to_contain_text("Inspection recorded: fail, work order")
    row = page.locator("#inspections tr:has-text('fan blocked')")
    expect(row).to_contain_text("meter-cabinet")
    expect(row).to_contain_text("fail (cabinet_c)")
    shot(page, "inspections")
    # A free-form inspection (no plan): pass or fail, recorded as an event.
    form.locator("select[name=which]").select_option(label="free-form (no plan)")
    form.locator("select[name=device]").select_option("pv-roof")
    form.locator("select[name=result]").select_option("pass")
    form.locator("input[name=findings]").fill("panels clean")
    form.locator("button").click()
    expect(page.locator("#msg")).to_contain_text("Inspection recorded: pass")
    page.close()
    viewer = site.client("vic")

    def free_form_event() -> dict[str, Any] | None:
        events = viewer.get("/api/v1/events?device=pv-roof").json()
        return next((e for e in events if e["type"] == "inspection_completed"), None)

    event = wait_until(free_form_event, what="the free-form inspection_completed event",
                       interval=0.5)
    assert (event["body"]["findings"], event["body"]["result"], event["body"]["inspector"]) \
        == ("panels clean", "pass", "olga")
    recent = site.client("vic").get("/api/v1/inspections").json()["result"]["recent"]
    mine = [r for r in recent if r["findings"] == "fan blocked"]
    assert len(mine) == 1 and mine[0]["inspector"] == "olga"
    assert mine[0]["answers"] == {"seal": True, "cabinet_c": 55}
    order = site.client("olga").post("/api/v1/commands/workorders.get",
                                     {"order_id": mine[0]["work_order_id"]}).json()["result"]
    assert order["device"] == "main-meter" and order["status"] == "open"


def test_viewer_sees_the_forms_disabled_and_the_server_refuses_them(
        browser: object, site: Site) -> None:
    page = page_for(browser, site, "vic", bypass_csp=True)
    page.goto(site.base + "/#/work")
    page.wait_for_selector("#orders")
    for form in ("#wo-create", "#insp"):
        expect(page.locator(f"{form} button")).to_be_disabled()  # its fieldset is disabled
        expect(page.locator(form)).to_contain_text("operator only")
    assert page.locator("form.complete fieldset:not([disabled])").count() == 0
    shot(page, "work-orders-viewer")
    page.goto(site.base + "/#/chargers")
    page.wait_for_selector("form.start")
    assert page.locator("form.start fieldset:not([disabled])").count() == 0
    assert page.locator("button.stop").count() == 0
    statuses = page.evaluate("""async () => {
        const me = await (await fetch('/api/v1/session')).json();
        const post = (path, body) => fetch(path, {method: 'POST', body: JSON.stringify(body),
            headers: {'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf}})
            .then((r) => r.status);
        return [await post('/api/v1/commands/workorders.create', {title: 'by a viewer'}),
                await post('/api/v1/commands/workorders.complete', {order_id: 'x'}),
                await post('/api/v1/commands/inspections.complete',
                           {inspector: 'vic', result: 'pass'}),
                await post('/api/v1/chargers/charger-1/start', {id_tag: 'DEMO-TAG'}),
                (await fetch('/api/v1/history?device=main-meter&point=power_w')).status]; }""")
    assert statuses == [403, 403, 403, 403, 200]  # refused every write; reads are allowed
    page.close()
    titles = [o["title"] for o in site.client("vic").get("/api/v1/workorders").json()["result"]]
    assert "by a viewer" not in titles


def test_overview_shows_builtin_and_plugin_kpis_and_energy_per_day(
        browser: object, site: Site) -> None:
    page = page_for(browser, site, "vic")
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    kpis = page.locator("#kpis")
    expect(kpis.locator("tr[data-kpi='site.availability_pct']")).to_contain_text("built-in")
    expect(kpis.locator("tr[data-kpi='example.charged_kwh']")).to_contain_text("plugin")

    def energy_bar() -> bool:
        page.goto(site.base + "/#/")
        expect(page.locator("#energy")).not_to_have_text("…")  # asked and answered
        if page.locator("#e-dev option", has_text="main-meter").count() == 0:
            return False
        page.select_option("#e-dev", "main-meter")
        page.wait_for_selector("#energy svg")
        return page.locator("#energy svg.bars rect.bar").count() > 0

    wait_until(energy_bar, timeout=60, what="today's energy bar of main-meter", interval=1)
    chart = page.locator("#energy svg.chart")
    expect(chart.locator("text.unit")).to_have_text("kWh")
    chart.locator("rect.hover").hover(position={"x": 300, "y": 50})  # today: the last bar
    expect(page.locator("#energy .readout")).to_contain_text("kWh")
    shot(page, "overview")
    page.close()
    assert errors == []


def path_points(d: str) -> int:
    return d.count("L") + d.count("M")


def test_device_page_plots_24_h_of_history_and_poll_statistics(
        browser: object, site: Site) -> None:
    page = page_for(browser, site, "vic")
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(site.base + "/#/device/main-meter")
    figure = page.locator("figure[data-chart='power_w']")
    line = figure.locator("path.line")
    line.wait_for()
    # The six seeded hours (one bucket a minute) plus what was polled since the start.
    assert path_points(line.get_attribute("d") or "") >= SEEDED_MINUTES
    assert page.locator("#charts figure").first.get_attribute("data-chart") == "power_w"
    expect(figure.locator("text.unit")).to_have_text("W")
    figure.locator("rect.hover").hover(position={"x": 300, "y": 40})  # 1.5 h ago: seeded
    expect(figure.locator(".readout")).to_contain_text(" W")
    # Every numeric point has its chart with data.
    numeric = page.locator("#charts figure").count()
    assert numeric >= 5
    expect(page.locator("#charts svg.chart")).to_have_count(numeric)
    poll = site.client("vic").get("/api/v1/devices/main-meter").json()["poll"]
    if poll is None:
        expect(page.locator("#poll")).to_have_text("Poll statistics: —")
    else:
        expect(page.locator("#poll td.requests")).not_to_have_text("")
    shot(page, "device-history")
    page.close()
    assert errors == []


def test_device_page_renders_a_poll_statistics_snapshot(browser: object, site: Site) -> None:
    """PollStats.snapshot() as the device view carries it (the drivers fill it on another
    branch): the page shows requests, errors by kind, p50/p99 and the last error."""
    page = page_for(browser, site, "vic")
    real = site.client("vic").get("/api/v1/devices/main-meter").json()
    real["poll"] = {"requests": 1234, "errors": {"timeout": 3, "exception": 1},
                    "error_total": 4, "latency_ms": {"p50": 4.2, "p99": None},
                    "last_error": {"kind": "timeout", "message": "no answer from unit 1 "
                                   "within 1.0 s", "ts_ms": 1764583200000}}
    # The page reads the device, then refreshes it every 5 s with ?points=false: both.
    page.route("**/api/v1/devices/main-meter*", lambda route: route.fulfill(
        status=200, content_type="application/json", body=json.dumps(real)))
    page.goto(site.base + "/#/device/main-meter")
    poll = page.locator("#poll")
    expect(poll.locator("td.requests")).to_have_text("1234")
    expect(poll.locator("td.errors")).to_have_text("4")
    expect(poll.locator("td.kinds")).to_have_text("timeout 3, exception 1")
    expect(poll.locator("td.p50")).to_have_text("4.2 ms")
    expect(poll.locator("td.p99")).to_have_text("—")
    expect(poll.locator("td.last")).to_contain_text("timeout: no answer from unit 1 within 1.0 s")
    page.close()


def test_history_routes_answer_viewers_and_refuse_bad_windows(site: Site) -> None:
    """The reads behind the charts (gateway/http/history_api.py), without a browser."""
    assert Client(site.base).get("/api/v1/history?device=main-meter&point=power_w").status \
        == 401
    vic = site.client("vic")
    got = vic.get("/api/v1/history?device=main-meter&point=power_w&hours=24&resolution=1m")
    rows = got.json()["result"]["rows"]
    assert got.status == 200 and len(rows) >= SEEDED_MINUTES
    assert all(r["min"] <= r["avg"] <= r["max"] for r in rows)
    end = rows[SEEDED_MINUTES // 2]["ts"]
    older = vic.get(f"/api/v1/history?device=main-meter&point=power_w&end={end}&hours=1"
                    "&resolution=1m").json()["result"]["rows"]
    assert [r["ts"] for r in older] == [r["ts"] for r in rows if end - 3_600_000 <= r["ts"] < end]
    for query, word in (("hours=-1", "hours='-1'"), ("hours=x", "hours='x'"),
                        ("start=yesterday", "start='yesterday'")):
        bad = vic.get(f"/api/v1/history?device=main-meter&point=power_w&{query}")
        assert bad.status == 400 and word in bad.json()["error"]["message"], bad.body
    assert vic.get("/api/v1/history?device=main-meter&point=power_w&resolution=2m").status \
        == 400
    energy = vic.get("/api/v1/history/energy?days=1&devices=main-meter").json()["result"]
    assert list(energy["devices"]) == ["main-meter"] and energy["resolution"] == "1d"
    assert vic.get("/api/v1/history/energy?days=500").status == 400
    insp = vic.get("/api/v1/inspections").json()["result"]
    assert [p["name"] for p in insp["plans"]] == ["meter-cabinet"]
    assert [i["id"] for i in insp["plans"][0]["checklist"]] == ["seal", "cabinet_c"]
    assert {(d["plan"], d["device"]) for d in insp["due"]} == {("meter-cabinet", "main-meter")}


def test_charts_load_as_they_come_near_the_screen(browser: object, site: Site) -> None:
    """demo-meter has 27 numeric points: the page asks for the charts in view, not all 27."""
    page = page_for(browser, site, "vic")
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/api/v1/history?" in r.url else None)
    page.goto(site.base + "/#/device/demo-meter")
    page.locator("#charts svg.chart").first.wait_for()
    figures = page.locator("#charts figure")
    total = figures.count()
    assert total >= 20 and 0 < len(asked) < total
    # The axis names the unit the point's config gives (the SDM630 profile), not a guess
    # from its name: "apparent_power_l1" (first: power first) says nothing of VA.
    units = site.client("vic").get("/api/v1/devices/demo-meter?points=false").json()["units"]
    first = figures.first
    assert first.get_attribute("data-chart") == "apparent_power_l1"
    assert units["apparent_power_l1"] == "VA"
    expect(first.locator("text.unit")).to_have_text("VA")
    last = figures.last
    last.scroll_into_view_if_needed()
    last.locator("svg.chart").wait_for()
    assert len(asked) <= total  # each chart asked for once
    page.close()
