"""Reports posted to a webhook channel, with a real aiohttp server on loopback as the
receiver: the files arrive byte-identical with their checksums and the channel's auth; a
receiver that fails with 503 twice gets them on the third attempt (a Retry-After is
honoured); a 400 is given up at once and a receiver failing past ``give_up_after`` too, each
with a clear error and a ``report_delivery_failed`` event; a gateway restarted while a
delivery is pending resumes it and delivers once; retention keeps a file whose delivery is
pending. Every wait polls a condition."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.channels.http import HttpResponse
from gateway.config.errors import ConfigError
from gateway.config.loader import load_config
from gateway.siteops import webhook
from gateway.siteops.config import ReportsConfig
from tests.gateway.siteops.test_reports import siteops
from tests.hooks.support import SIM
from tests.support.app import running_app, write_config
from tests.support.wait import wait_until

SECRET = "s3cret"
DAY_MS = 86_400_000


def content(path: str) -> bytes:
    return Path(path).read_bytes()


def is_file(path: str) -> bool:
    return Path(path).is_file()


@dataclass
class Got:
    headers: dict[str, str]
    body: bytes
    status: int
    at: float


@dataclass
class Receiver:
    """Answers each POST with the next of ``answers`` ((status, headers)), then 200."""

    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    got: list[Got] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    base: str = ""
    #: When set, a POST is held open until this event is set (counted in ``held``).
    hold: asyncio.Event | None = None
    held: int = 0

    @property
    def url(self) -> str:
        return self.base + "/reports"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.hold is not None:
            self.held += 1
            await self.hold.wait()
            if request.transport is None or request.transport.is_closing():
                # The sender is gone (killed): it never learns whether this one arrived.
                self.got.append(Got(dict(request.headers), body, -1, time.monotonic()))
                return web.Response(status=499)
        status, headers = self.answers.pop(0) if self.answers else (200, {})
        self.got.append(Got(dict(request.headers), body, status, time.monotonic()))
        text = "unknown site: register the gateway first" if status == 400 else "ok"
        return web.Response(status=status, text=text, headers=headers)

    async def alert(self, request: web.Request) -> web.Response:
        self.alerts.append(await request.json())
        return web.Response(text="ok")

    def accepted(self) -> list[Got]:
        return [g for g in self.got if g.status == 200]


@contextlib.asynccontextmanager
async def receiver(answers: list[tuple[int, dict[str, str]]] | None = None,
                   ) -> AsyncIterator[Receiver]:
    rx = Receiver(list(answers or []))
    app = web.Application()
    app.router.add_post("/reports", rx.handle)
    app.router.add_post("/alerts", rx.alert)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    rx.base = f"http://127.0.0.1:{port}"
    try:
        yield rx
    finally:
        await runner.cleanup()


def site(rx: Receiver, **delivery: Any) -> dict[str, Any]:
    """A report posted to channel ``crm``; ``report_delivery_failed`` routed to ``ops``."""
    return {
        "devices": [SIM],
        "channels": {
            "targets": {
                "crm": {"type": "webhook", "url": rx.url, "secret": SECRET,
                        "headers": {"Authorization": "Bearer t0ken"}},
                "ops": {"type": "webhook", "url": rx.base + "/alerts"}},
            "routes": [{"channels": ["ops"], "events": ["report_delivery_failed"]}]},
        "siteops": {"reports": {
            "delivery": {"retry_initial": 0.05, "retry_max": 0.2, **delivery},
            "definitions": [{"name": "daily", "period": "daily",
                             "include": ["alarms", "availability"],
                             "deliver": {"uplink": False, "webhook": "crm"}}]}}}


async def run_report(app: Any) -> dict[str, Any]:
    """The report the scheduler generates at start (yesterday's, a finished period)."""
    async def listed() -> list[dict[str, Any]]:
        reply = await app.commands.execute("reports.list", {})
        assert reply["ok"], reply
        return [r for r in reply["result"] if r["scheduled"]]

    (report,) = await wait_until(listed, 20, what="the scheduled report")
    report["file_path"] = report["files"][0]
    assert report["file_path"].endswith(".csv")
    return report


async def deliveries(app: Any, report_id: str) -> list[dict[str, Any]]:
    reply = await app.commands.execute("reports.list", {})
    assert reply["ok"], reply
    (mine,) = [r for r in reply["result"] if r["report_id"] == report_id]
    out: list[dict[str, Any]] = mine["delivery"]["webhook"]
    return out


async def settled(app: Any, report_id: str, status: str) -> list[dict[str, Any]]:
    """Wait until every webhook delivery of the report has ``status``."""
    async def check() -> list[dict[str, Any]]:
        rows = await deliveries(app, report_id)
        return rows if rows and all(r["status"] == status for r in rows) else []
    return await wait_until(check, 20, what=f"the deliveries to be {status}")


async def test_the_files_arrive_byte_identical_with_their_checksum(tmp_path: Path) -> None:
    async with receiver() as rx, running_app(site(rx), tmp_path) as app:
        report = await run_report(app)
        rows = await settled(app, report["report_id"], "delivered")
        files = {Path(f).name: content(f) for f in report["files"]}
    assert sorted(r["file"] for r in rows) == sorted(report["files"])
    assert report["delivery"]["uplink_queued"] is None  # no uplink configured
    assert all(r["attempts"] == 1 and r["last_error"] is None for r in rows)
    got = {g.headers["Content-Disposition"]: g for g in rx.got}
    assert len(rx.got) == 2 == len(files)  # the CSV and the HTML page, once each
    for name, data in files.items():
        g = got[f'attachment; filename="{name}"']
        assert g.body == data
        digest = hashlib.sha256(data)
        assert g.headers["X-Fieldgate-SHA256"] == digest.hexdigest()
        assert g.headers["Content-Digest"] == \
            f"sha-256=:{base64.b64encode(digest.digest()).decode()}:"
        assert g.headers["X-Fieldgate-Signature"] == \
            "sha256=" + hmac.new(SECRET.encode(), data, hashlib.sha256).hexdigest()
        assert g.headers["Authorization"] == "Bearer t0ken"  # the channel's headers apply
        assert g.headers["Content-Type"].startswith(
            "text/csv" if name.endswith(".csv") else "text/html")
        assert g.headers["X-Fieldgate-Delivery"] == f"{report['report_id']}/{name}"
        assert g.headers["X-Fieldgate-Report"] == "daily"
        assert g.headers["X-Fieldgate-Period"] == report["period"]
        assert g.headers["X-Fieldgate-Attempt"] == "1"


async def test_a_receiver_failing_twice_gets_the_file_on_the_third_attempt(
        tmp_path: Path) -> None:
    answers = [(503, {}), (503, {"Retry-After": "1"})]
    async with receiver(answers) as rx:
        cfg = site(rx, files="csv")
        async with running_app(cfg, tmp_path) as app:
            report = await run_report(app)
            (row,) = await settled(app, report["report_id"], "delivered")
    assert [g.status for g in rx.got] == [503, 503, 200]
    assert [g.headers["X-Fieldgate-Attempt"] for g in rx.got] == ["1", "2", "3"]
    assert len({g.headers["X-Fieldgate-Delivery"] for g in rx.got}) == 1
    assert rx.got[2].body == content(report["file_path"])
    # The second answer said Retry-After: 1; the backoff alone would be at most 0.1 s.
    assert rx.got[2].at - rx.got[1].at >= 0.95
    assert row["attempts"] == 3 and row["last_error"].startswith("HTTP 503")


async def test_a_400_is_given_up_at_once_with_a_clear_error(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="gateway.siteops.webhook")
    async with receiver([(400, {})]) as rx:
        cfg = site(rx, files="csv")
        async with running_app(cfg, tmp_path) as app:
            report = await run_report(app)
            (row,) = await settled(app, report["report_id"], "failed")
            (alert,) = await wait_until(lambda: rx.alerts, what="the failure notice")
            assert is_file(report["file_path"])
    assert len(rx.got) == 1 and row["attempts"] == 1
    assert row["last_error"] == "HTTP 400: unknown site: register the gateway first"
    ev = alert["event"]["body"]
    assert alert["type"] == "report_delivery_failed"
    assert ev["permanent"] is True and ev["channel"] == "crm"
    assert ev["report_id"] == report["report_id"] and ev["name"] == "daily"
    assert ev["file_path"] == report["file_path"] and ev["error"] == row["last_error"]
    (msg,) = [r.getMessage() for r in caplog.records]
    assert "report daily" in msg and "channel crm" in msg and "refused" in msg
    assert "HTTP 400" in msg and "channels.targets.crm" in msg


async def test_a_receiver_still_failing_after_give_up_after_is_given_up(
        tmp_path: Path) -> None:
    async with receiver([(503, {})] * 1000) as rx:
        cfg = site(rx, files="csv", give_up_after=0.5)
        async with running_app(cfg, tmp_path) as app:
            report = await run_report(app)
            (row,) = await settled(app, report["report_id"], "failed")
            (alert,) = await wait_until(lambda: rx.alerts, what="the failure notice")
    assert row["attempts"] >= 2 and len(rx.got) == row["attempts"]
    ev = alert["event"]["body"]
    assert alert["type"] == "report_delivery_failed"
    assert ev["permanent"] is False and ev["attempts"] == row["attempts"]
    assert ev["error"].startswith("HTTP 503")


async def test_a_restart_resumes_a_pending_delivery_and_delivers_once(tmp_path: Path) -> None:
    async with receiver([(503, {})] * 1000) as rx:
        cfg = site(rx, files="csv", retry_initial=0.3, retry_max=0.3)
        async with running_app(cfg, tmp_path) as app:
            report = await run_report(app)
            await wait_until(lambda: rx.got, what="a first attempt")
            (row,) = await deliveries(app, report["report_id"])
            assert row["status"] == "pending"
        # Stopped while pending. The receiver works again; a new gateway picks it up.
        rx.answers.clear()
        tried = len(rx.got)
        async with running_app(cfg, tmp_path) as app:
            (row,) = await settled(app, report["report_id"], "delivered")
        assert len(rx.accepted()) == 1 and len(rx.got) == tried + 1
        assert rx.accepted()[0].body == content(report["file_path"])
        async with running_app(cfg, tmp_path) as app:  # a third start sends nothing again
            assert await app.store.query(
                "SELECT 1 FROM siteops_report_deliveries WHERE status = 'pending'") == []
            (row,) = await deliveries(app, report["report_id"])
            assert row["status"] == "delivered" and row["attempts"] == tried + 1


async def test_retention_keeps_a_file_whose_delivery_is_pending(tmp_path: Path) -> None:
    async with receiver([(503, {})] * 1000) as rx:
        cfg = site(rx, files="csv")
        cfg["siteops"]["reports"]["retention_days"] = 10
        async with running_app(cfg, tmp_path) as app:
            comp = siteops(app)
            report = await run_report(app)
            await wait_until(lambda: rx.got, what="a first attempt")
            later = app.clock.now_ms() + 11 * DAY_MS
            assert await comp.reports.prune(later) == 0
            assert is_file(report["file_path"])
            rx.answers.clear()  # the receiver is back: delivered, then retention applies
            await settled(app, report["report_id"], "delivered")
            assert await comp.reports.prune(later) == 1
            assert not is_file(report["file_path"])
            assert await app.store.query("SELECT 1 FROM siteops_report_deliveries") == []


@pytest.mark.parametrize("channel, message", [
    ("nope", "no channel 'nope' in channels.targets (webhook channels: crm, ops)"),
    ("ding", "channel 'ding' is of type dingtalk; reports are posted only to a channel "
             "of type webhook")])
def test_a_report_names_a_configured_webhook_channel(tmp_path: Path, channel: str,
                                                     message: str) -> None:
    cfg = site(Receiver(base="http://127.0.0.1:9"))
    cfg["channels"]["targets"]["ding"] = {"type": "dingtalk", "url": "http://127.0.0.1:9/d"}
    cfg["siteops"]["reports"]["definitions"][0]["deliver"]["webhook"] = channel
    with pytest.raises(ConfigError) as err:
        load_config(write_config(tmp_path, cfg))
    assert f"siteops.reports.definitions[0].deliver.webhook: {message}" in str(err.value)


def test_retry_after_reads_seconds_and_dates() -> None:
    now = 1_700_000_000_000
    assert webhook.retry_after_s("7", now) == 7.0
    assert webhook.retry_after_s("Tue, 14 Nov 2023 22:13:40 GMT", now) == 20.0
    assert webhook.retry_after_s("soon", now) is None and webhook.retry_after_s(None, now) is None


@pytest.mark.parametrize("status, retryable", [
    (408, True), (429, True), (500, True), (503, True),
    (400, False), (401, False), (403, False), (404, False), (413, False)])
def test_which_answers_are_retried(status: int, retryable: bool) -> None:
    webhook.judge(HttpResponse(204, b""), 0)
    with pytest.raises(webhook.Refused) as err:
        webhook.judge(HttpResponse(status, b"no", {"retry-after": "3"}), 0)
    assert err.value.retryable is retryable and err.value.retry_after == 3.0
    assert str(err.value) == f"HTTP {status}: no"


async def test_a_receiver_that_is_not_listening_is_retried(tmp_path: Path) -> None:
    async with receiver() as rx:
        cfg = site(rx, files="csv")
    # The receiver is gone: connections to its port are refused.
    async with running_app(cfg, tmp_path) as app:
        report = await run_report(app)

        async def retried() -> dict[str, Any] | None:
            (row,) = await deliveries(app, report["report_id"])
            return row if row["attempts"] >= 2 else None

        row = await wait_until(retried, 20, what="two failed attempts")
    assert row["status"] == "pending" and row["next_attempt_ts"] is not None
    assert "Connect" in row["last_error"] and "127.0.0.1" in row["last_error"]


async def test_reports_run_posts_the_report_again_under_a_new_id(tmp_path: Path) -> None:
    async with receiver() as rx, running_app(site(rx, files="csv"), tmp_path) as app:
        first = await run_report(app)
        await settled(app, first["report_id"], "delivered")
        reply = await app.commands.execute("reports.run", {"name": "daily"})
        assert reply["ok"], reply
        again = reply["result"]
        assert again["report_id"] != first["report_id"]
        await settled(app, again["report_id"], "delivered")
    assert [g.headers["X-Fieldgate-Report-Id"] for g in rx.accepted()] == [
        first["report_id"], again["report_id"]]


def test_delivery_webhook_is_every_reports_default_and_deliver_replaces_it() -> None:
    reports = ReportsConfig.model_validate({
        "delivery": {"uplink": True, "webhook": "crm"},
        "definitions": [{"name": "a", "period": "daily"},
                        {"name": "b", "period": "daily", "deliver": {"uplink": True}},
                        {"name": "c", "period": "daily",
                         "deliver": {"uplink": False, "webhook": "bi"}}]})
    assert [(t.uplink, t.webhook) for t in map(reports.delivery.targets,
                                                reports.definitions)] == [
        (True, "crm"), (True, None), (False, "bi")]


async def test_a_file_gone_or_a_channel_removed_is_given_up(tmp_path: Path) -> None:
    async with receiver([(503, {})] * 1000) as rx:
        cfg = site(rx, retry_initial=0.3, retry_max=0.3)
        async with running_app(cfg, tmp_path) as app:
            report = await run_report(app)
            await wait_until(lambda: len(rx.got) >= 2, what="a first attempt per file")
            csv_path, html_path = report["files"]
            await asyncio.to_thread(Path(html_path).unlink)
            rows = await wait_until(lambda: _when(
                lambda: deliveries(app, report["report_id"]),
                lambda rows: [r for r in rows if r["status"] == "failed"]), 20,
                what="the gone file given up")
        assert [(r["file"], r["last_error"]) for r in rows] == [
            (html_path, f"cannot read {html_path} (No such file or directory)")]
        # The next config drops the channel (and the report's webhook).
        del cfg["channels"]["targets"]["crm"]
        del cfg["siteops"]["reports"]["definitions"][0]["deliver"]
        async with running_app(cfg, tmp_path) as app:
            rows = await settled(app, report["report_id"], "failed")
    assert [r["file"] for r in rows] == [csv_path, html_path]
    assert rows[0]["last_error"] == ("channel 'crm' is no longer configured (or has no url) "
                                     "in channels.targets")


async def _when(get: Any, cond: Any) -> Any:
    return cond(await get())
