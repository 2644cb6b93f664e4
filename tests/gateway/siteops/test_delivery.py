"""Reports and the daily KPIs over the uplink, through a real mosquitto: a small file goes
inline, a large one in chunks that reassemble to the file on disk (sha256 checked); the
day's KPIs go out once, just after local midnight (fake clock), and not before. Every
message validates against its schema in config/wire/."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import jsonschema

from gateway.model import Sample
from gateway.uplink import messages
from tests.gateway.siteops.support import local_ms
from tests.gateway.siteops.test_reports import TZ, StepClock, commit, siteops
from tests.hooks.support import config, wait_for
from tests.support.app import running_app
from tests.support.mosquitto import Mosquitto, mosquitto

__all__ = ["mosquitto"]

ROOT = Path(__file__).resolve().parents[3]
BASE = "fieldgate/test-gw"
INLINE, CHUNK = 512, 256


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ROOT / "config" / "wire" / name).read_text())
    return loaded


@contextlib.asynccontextmanager
async def subscriber(broker: Mosquitto) -> AsyncIterator[list[tuple[str, dict[str, Any]]]]:
    got: list[tuple[str, dict[str, Any]]] = []
    async with aiomqtt.Client(broker.host, broker.port, identifier="cloud") as client:
        await client.subscribe(f"{BASE}/report", qos=1)
        await client.subscribe(f"{BASE}/kpis", qos=1)

        async def read() -> None:
            async for msg in client.messages:
                assert isinstance(msg.payload, bytes)
                got.append((str(msg.topic), json.loads(msg.payload)))

        task = asyncio.create_task(read())
        try:
            yield got
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def reassemble(msgs: list[dict[str, Any]]) -> dict[str, bytes]:
    """file -> bytes, from the chunks of one report (repeats dropped by key), each file's
    length and sha256 checked against what its messages announce."""
    by_key = {m["key"]: m for m in msgs}
    files: dict[str, list[dict[str, Any]]] = {}
    for m in by_key.values():
        files.setdefault(m["file"], []).append(m)
    out = {}
    for name, parts in files.items():
        parts.sort(key=lambda m: m["chunk"])
        assert [m["chunk"] for m in parts] == list(range(parts[0]["chunks"]))
        data = b"".join(base64.b64decode(m["data"]) for m in parts)
        assert len(data) == parts[0]["bytes"]
        assert hashlib.sha256(data).hexdigest() == parts[0]["sha256"]
        out[name] = data
    return out


def site(tmp_path: Path, broker: Mosquitto) -> dict[str, Any]:
    cfg = config(tmp_path)
    cfg["gateway"] = {"timezone": TZ}
    cfg["uplink"] = {"broker": {"host": broker.host, "port": broker.port,
                                "connect_timeout": 3},
                     "backoff_initial": 0.1, "backoff_max": 0.5, "publish_timeout": 3}
    cfg["siteops"] = {
        "history": {"energy": [{"devices": ["meter*"], "energy_point": "energy_wh"}]},
        "kpis": {"pv": ["meter*"]},
        "reports": {"delivery": {"inline_max_bytes": INLINE, "chunk_bytes": CHUNK},
                    "definitions": [{"name": "daily", "period": "daily",
                                     "include": ["energy", "availability"]}]}}
    return cfg


async def test_report_and_daily_kpis_reach_the_cloud(tmp_path: Path,
                                                     mosquitto: Mosquitto) -> None:
    day, nxt = local_ms(TZ, 2026, 3, 29), local_ms(TZ, 2026, 3, 30)
    clock = StepClock(day + 3_600_000)
    async with subscriber(mosquitto) as got, \
            running_app(site(tmp_path, mosquitto), tmp_path, clock=clock) as app:
        comp = siteops(app)
        await commit(app, [Sample("meter1", "energy_wh", ts, 5000 + 100 * (ts - day) / 3.6e6)
                           for ts in range(day - 3_600_000, nxt + 1, 600_000)])
        clock.advance((nxt - clock.now_ms()) / 1000 - 1)  # 23:59:59 on the 29th
        await comp.schedule_once()
        assert not await app.store.query_one(  # the day is not over: no KPIs yet
            "SELECT 1 FROM siteops_kpis_sent WHERE day = '2026-03-29'")
        clock.advance(2)  # 00:00:01 on the 30th
        await comp.schedule_once()
        await comp.schedule_once()  # a second pass queues nothing again

        def report_msgs() -> list[dict[str, Any]]:
            return [m for t, m in got if t == f"{BASE}/report" and m["period"] == "2026-03-29"]

        def complete() -> bool:
            msgs = report_msgs()
            return bool(msgs) and len({m["key"] for m in msgs}) == sum(
                m["chunks"] for m in {m["file"]: m for m in msgs}.values())

        await wait_for(complete, 15, what="every chunk of the report")
        kpi = (await wait_for(lambda: [m for t, m in got if t == f"{BASE}/kpis"
                                        and m["day"] == "2026-03-29"], 15,
                              what="the kpis message of the 29th"))
        await wait_for(lambda: _empty(app), 10, what="the queue to empty")
        paths = [Path(f) for r in await comp.reports.list() if r["period"] == "2026-03-29"
                 for f in r["files"]]
        files = {p.name: await asyncio.to_thread(p.read_bytes) for p in paths}
    msgs = report_msgs()
    assert reassemble(msgs) == files  # csv and html, byte for byte
    by_file = {m["file"]: m["chunks"] for m in msgs}
    for name, data in files.items():  # inline up to INLINE bytes, else chunks of CHUNK
        assert by_file[name] == (1 if len(data) <= INLINE else -(-len(data) // CHUNK)), name
    assert len(files["daily-2026-03-29.csv"]) <= INLINE < len(files["daily-2026-03-29.html"])
    assert len(kpi) == 1
    k = kpi[0]
    assert (k["start_ts"], k["end_ts"], k["timezone"]) == (day, nxt, TZ)
    assert k["kpis"]["site.pv_yield_kwh"] == 2.3  # 23 h of 100 Wh: the DST day
    assert k["kpis"]["recorder_period"] == "yesterday"  # the plugin's own, merged
    for m in msgs:
        jsonschema.validate(m, schema("report.schema.json"))
    for _, m in got:
        if m["type"] == "kpis":
            jsonschema.validate(m, schema("kpis.schema.json"))


async def test_reports_queued_while_the_broker_is_down_arrive_later(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    nxt = local_ms(TZ, 2026, 3, 30)
    clock = StepClock(nxt + 60_000)
    async with subscriber(mosquitto) as got:
        mosquitto.pause()  # the broker hangs: no connect succeeds
        try:
            async with running_app(site(tmp_path, mosquitto), tmp_path, clock=clock) as app:
                comp = siteops(app)
                await comp.schedule_once()  # the 29th's report and KPIs, queued
                queued = await messages.pending(app.store)
                assert queued >= 3  # csv, html chunks, kpis
                (listed,) = await comp.reports.list()  # reports.list shows the backlog
                assert listed["delivery"] == {"uplink_queued": queued - 1, "webhook": []}
                assert not got
                mosquitto.resume()
                await wait_for(lambda: _empty(app), 30, what="the queue to empty")
                (listed,) = await comp.reports.list()
                assert listed["delivery"]["uplink_queued"] == 0
                await wait_for(lambda: len({m["key"] for _, m in got}) >= queued, 10,
                               what="the queued messages after the broker came back")
        finally:
            mosquitto.resume()
    assert {m["type"] for _, m in got} == {"report", "kpis"}


async def _empty(app: Any) -> bool:
    return await messages.pending(app.store) == 0
