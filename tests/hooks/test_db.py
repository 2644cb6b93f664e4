"""``db.open_alarms`` reads the rules engine's open alarms through its public API."""

from __future__ import annotations

from pathlib import Path

import pytest

from hooks.db import HooksDB
from tests.hooks.support import (
    NoonClock,
    alarm_config,
    calls,
    component,
    config,
    curtail,
    wait_for,
)
from tests.support.app import running_app


async def test_open_alarms_come_from_the_rules_engine(tmp_path: Path) -> None:
    async with running_app(alarm_config(tmp_path), tmp_path, clock=NoonClock()) as app:
        (created,) = await wait_for(lambda: calls(app, "on_alarm_created"))
        db = HooksDB(component(app).ctx, "acme")
        listed = (await app.commands.execute("alarm.list", {}))["result"]
        (alarm,) = await db.open_alarms()
        assert alarm["alarm_id"] == created["alarm_event"].alarm_id
        assert (alarm["rule"], alarm["device"], alarm["severity"]) == (
            "pv-high", "pv1", "critical")
        assert [a["alarm_id"] for a in listed] == [alarm["alarm_id"]]
        assert await db.open_alarms(device="pv1", min_severity="critical") != []
        assert await db.open_alarms(device="other") == []
        assert await db.open_alarms(rule="no-such-rule") == []
        with pytest.raises(ValueError, match="unknown severity 'fatal'"):
            await db.open_alarms(min_severity="fatal")
        await curtail(app)
        await wait_for(lambda: calls(app, "on_alarm_resolved"))
        assert await db.open_alarms() == []


async def test_open_alarms_without_rules(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    cfg["rules"] = {"enabled": False}
    async with running_app(cfg, tmp_path) as app:
        assert await HooksDB(component(app).ctx, "acme").open_alarms() == []
