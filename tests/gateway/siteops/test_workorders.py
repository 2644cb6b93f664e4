"""Work orders: a rule opens exactly one while its alarm is open and completes it on
resolve; the lifecycle by command; every hook fires once per transition; an inspection
plan comes due and an out-of-range answer opens a work order."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from gateway.model import Event
from gateway.siteops import SiteOpsComponent
from tests.gateway.siteops.test_reports import StepClock
from tests.hooks.support import (
    INVERTER,
    PV_HIGH,
    NoonClock,
    calls,
    config,
    curtail,
    wait_for,
)
from tests.support.app import running_app


def siteops(app: Any) -> SiteOpsComponent:
    return next(c for c in app.components if isinstance(c, SiteOpsComponent))


async def orders(app: Any, **args: Any) -> list[dict[str, Any]]:
    reply = await app.commands.execute("workorders.list", args)
    assert reply["ok"], reply
    result: list[dict[str, Any]] = reply["result"]
    return result


async def test_a_rule_opens_one_work_order_and_completes_it_on_resolve(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    cfg["devices"] = [INVERTER]
    cfg["rules"] = {"alarms": [{**PV_HIGH, "work_order": {"priority": "urgent",
                                                          "assignee": "li"}}]}
    async with running_app(cfg, tmp_path, clock=NoonClock()) as app:
        (created,) = await wait_for(lambda: calls(app, "on_work_order_created"), timeout=10)
        order = created["order"]
        assert (order.priority, order.assignee, order.device, order.created_by) == (
            "urgent", "li", "pv1", "rules")
        assert order.title.startswith("pv1 produces")
        # Another alarm of the same rule on the same device while the order is open (as
        # after a flap): no second order.
        comp = siteops(app)
        body = {"alarm_id": "other", "rule": "pv-high", "device": "pv1", "severity": "critical",
                "message": "again"}
        await comp.on_event(Event("alarm_created", body, device="pv1", id="x1"))
        assert [o["order_id"] for o in await orders(app, status="active")] == [order.order_id]
        await curtail(app)
        (done,) = await wait_for(lambda: calls(app, "on_work_order_completed"), timeout=10)
        assert (done["order"].order_id, done["order"].status) == (order.order_id, "done")
        assert done["order"].resolution == "alarm resolved"
        assert len(calls(app, "on_work_order_created")) == 1
        assert await orders(app, status="active") == []


async def test_the_lifecycle_by_command_fires_each_hook_once(tmp_path: Path) -> None:
    async with running_app(config(tmp_path), tmp_path) as app:
        run = app.commands.execute
        oid = (await run("workorders.create", {"title": "fuse", "device": "m1"}))["result"][
            "order_id"]
        ack = await run("workorders.ack", {"order_id": oid, "by": "li"})
        assert ack["result"]["status"] == "acknowledged" and ack["result"]["acknowledged_ts"]
        assert (await run("workorders.ack", {"order_id": oid}))["ok"]  # idempotent
        upd = await run("workorders.update", {"order_id": oid, "assignee": "bo",
                                              "note": "bring a 16 A fuse", "by": "li"})
        assert upd["result"]["assignee"] == "bo"
        assert upd["result"]["notes"][0]["text"] == "bring a 16 A fuse"
        started = await run("workorders.start", {"order_id": oid, "by": "bo"})
        assert started["result"]["status"] == "in_progress"
        back = await run("workorders.ack", {"order_id": oid})
        assert back["error"]["code"] == "bad_transition"
        assert "in_progress" in back["error"]["message"]
        done = await run("workorders.complete", {"order_id": oid, "resolution": "replaced"})
        assert done["result"]["status"] == "done" and done["result"]["completed_ts"]
        assert (await run("workorders.cancel", {"order_id": oid}))["error"]["code"] == (
            "bad_transition")
        await wait_for(lambda: calls(app, "on_work_order_completed"))
        assert len(calls(app, "on_work_order_created")) == 1
        assert len(calls(app, "on_work_order_completed")) == 1
        got = (await run("workorders.get", {"order_id": oid}))["result"]
        assert [n["text"] for n in got["notes"]] == ["bring a 16 A fuse", "replaced"]
        assert await orders(app, status="done") == [got]


async def test_an_inspection_comes_due_and_an_out_of_range_answer_opens_a_work_order(
        tmp_path: Path) -> None:
    cfg = config(tmp_path)
    cfg["siteops"] = {"inspections": [{
        "name": "monthly-meter", "devices": ["m1"], "every_days": 30, "priority": "high",
        "checklist": [{"id": "seal", "question": "Seal intact?", "expect": True},
                      {"id": "temp", "question": "Terminal temperature (C)", "max": 60}]}]}
    clock = StepClock(1_780_000_000_000)
    async with running_app(cfg, tmp_path, clock=clock) as app:
        comp = siteops(app)
        await comp.schedule_once()
        (due,) = (await app.commands.execute("inspections.due", {}))["result"]
        assert (due["plan"], due["device"], due["due"]) == ("monthly-meter", "m1", True)
        assert await comp.inspections.check_due(app.clock.now_ms()) == 0  # announced once
        reply = await app.commands.execute("inspections.complete", {
            "plan": "monthly-meter", "device": "m1", "inspector": "li",
            "answers": {"seal": True, "temp": 71.5}, "findings": "hot terminal"})
        assert reply["ok"], reply
        record = reply["result"]
        assert (record["result"], record["out_of_range"]) == ("fail", ["temp"])
        (kw,) = await wait_for(lambda: calls(app, "on_inspection_completed"))
        assert kw["record"].record_id == record["record_id"]
        (order,) = await orders(app, status="open")
        assert order["order_id"] == record["work_order_id"] and order["priority"] == "high"
        assert "temp: Terminal temperature (C) -> 71.5" in order["description"]
        (after,) = (await app.commands.execute("inspections.due", {}))["result"]
        assert after["due"] is False
        assert after["due_ts"] == after["last_completed_ts"] + 30 * 86_400_000
        bad = await app.commands.execute("inspections.complete", {
            "plan": "monthly-meter", "device": "m1", "inspector": "li",
            "answers": {"colour": "red"}})
        assert bad["error"]["code"] == "unknown_item"
        # 30 days later it is due again, announced once.
        clock.advance(30 * 86_400 - 1)
        assert await comp.inspections.check_due(clock.now_ms()) == 0
        clock.advance(1)
        assert await comp.inspections.check_due(clock.now_ms()) == 1
        assert await comp.inspections.check_due(clock.now_ms()) == 0


#: The plugins' table of a store made before siteops (plugins migration 1 created it then).
LEGACY = ("CREATE TABLE work_orders (id TEXT PRIMARY KEY, title TEXT, description TEXT, "
          "device TEXT, alarm_id TEXT, priority TEXT, status TEXT, created_by TEXT, "
          "created_ts INTEGER, completed_ts INTEGER, resolution TEXT)")


async def test_orders_of_the_plugins_old_table_are_moved_once(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    async with running_app(cfg, tmp_path):
        pass  # a store with every table of today
    db = tmp_path / "state" / "buffer.sqlite3"
    with sqlite3.connect(db) as conn:
        assert not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'work_orders'"
                                ).fetchall()  # a new store has no legacy table
        conn.execute(LEGACY)
        conn.executemany("INSERT INTO work_orders VALUES (?,?,'',?,NULL,'high',?,'acme',?,?,?)",
                         [("w1", "check fuse", "m1", "open", 1000, None, ""),
                          ("w2", "clean panel", None, "completed", 2000, 3000, "cleaned")])
    for _ in range(2):  # the second start finds nothing left to move
        async with running_app(cfg, tmp_path) as app:
            got = {o["order_id"]: (o["status"], o["title"], o["completed_ts"])
                   for o in await orders(app)}
            assert got == {"w1": ("open", "check fuse", None),
                           "w2": ("done", "clean panel", 3000)}
    with sqlite3.connect(db) as conn:
        assert not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'work_orders'"
                                ).fetchall()
