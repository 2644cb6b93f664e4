"""The webhook channel's TLS options (a private CA, a client certificate) apply to report
files and to notices alike, against a real https aiohttp receiver that demands a client
certificate."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.channels.base import ChannelTarget, DeliveryError, Message
from gateway.channels.builtin import WebhookChannel
from tests.gateway.http.test_security import _self_signed as self_signed
from tests.gateway.siteops.test_report_webhook import Receiver, site
from tests.support.app import running_app
from tests.support.wait import wait_until


@contextlib.asynccontextmanager
async def tls_receiver(tmp_path: Path) -> AsyncIterator[tuple[Receiver, Path, Path]]:
    """An https receiver with a private CA that demands a client certificate."""
    cert, key = self_signed(tmp_path)  # its own CA, for server and client
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    server_tls.verify_mode = ssl.CERT_REQUIRED
    server_tls.load_verify_locations(cert)
    rx = Receiver()
    app = web.Application()
    app.router.add_post("/reports", rx.handle)
    app.router.add_post("/alerts", rx.alert)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls).start()
    rx.base = f"https://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield rx, cert, key
    finally:
        await runner.cleanup()


async def test_the_channels_tls_options_apply(tmp_path: Path) -> None:
    """The channel with ca_file, cert_file and key_file delivers to the https receiver; one
    without them is refused by TLS and retried (a network error)."""
    async with tls_receiver(tmp_path) as (rx, cert, key):
        cfg = site(rx, files="csv")
        targets = cfg["channels"]["targets"]
        targets["crm"].update(ca_file=str(cert), cert_file=str(cert), key_file=str(key))
        targets["bare"] = {"type": "webhook", "url": rx.url}
        reports = cfg["siteops"]["reports"]["definitions"]
        reports.append({"name": "weekly", "period": "weekly", "include": ["alarms"],
                        "deliver": {"uplink": False, "webhook": "bare"}})
        async with running_app(cfg, tmp_path) as gw:
            async def listed() -> dict[str, dict[str, Any]]:
                reply = await gw.commands.execute("reports.list", {})
                return {r["name"]: r["delivery"]["webhook"][0] for r in reply["result"]}

            await wait_until(lambda: _when(listed, lambda d: set(d) == {"daily", "weekly"}
                                           and d["daily"]["status"] == "delivered"
                                           and d["weekly"]["attempts"] >= 1
                                           and d["weekly"]["last_error"]), 20,
                             what="daily delivered, weekly refused by TLS")
            state = await listed()
    assert [g.headers["X-Fieldgate-Report"] for g in rx.got] == ["daily"]
    assert state["weekly"]["status"] == "pending"
    assert "certificate" in state["weekly"]["last_error"].lower()


async def test_a_notice_uses_the_channels_tls_options_too(tmp_path: Path) -> None:
    async with tls_receiver(tmp_path) as (rx, cert, key):
        target = ChannelTarget(type="webhook", url=rx.base + "/alerts", ca_file=cert,
                               cert_file=cert, key_file=key)
        await WebhookChannel("ops", target).send(Message("e1", "custom", "t", "x"), 0)
        bare = ChannelTarget(type="webhook", url=rx.base + "/alerts")
        with pytest.raises(DeliveryError, match=r"(?i)certificate") as err:
            await WebhookChannel("ops", bare).send(Message("e2", "custom", "t", "x"), 0)
    assert err.value.retryable
    assert [a["event_id"] for a in rx.alerts] == ["e1"]


async def _when(get: Any, cond: Any) -> bool:
    return bool(cond(await get()))
