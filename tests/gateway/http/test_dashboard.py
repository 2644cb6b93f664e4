"""The dashboard in a real headless Chromium (Debian's /usr/bin/chromium via Playwright),
against the running demo daemon. Each page is saved as a screenshot under tests/artifacts/."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.http.support import PASSWORDS, Site, wait_until

ARTIFACTS = Path(__file__).resolve().parents[3] / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect
if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):  # .ci/run installs it: missing there is a failure
        raise RuntimeError(f"no chromium at {CHROMIUM}; .ci/run should apt-get install it")
    pytest.skip("no chromium (apt-get install chromium)", allow_module_level=True)


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
