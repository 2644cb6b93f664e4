"""docs/operations.md: every config sample validates, and every command it names exists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from gateway.config.loader import load_config
from tests.support.app import running_app, write_config

DOC = Path(__file__).resolve().parents[3] / "docs" / "operations.md"


def samples() -> list[dict[str, object]]:
    return [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)]


def test_every_config_sample_validates(tmp_path: Path, monkeypatch: Any) -> None:
    for name in ("CRM_SECRET", "CRM_TOKEN"):  # the webhook sample's ${...} secrets
        monkeypatch.setenv(name, "x")
    blocks = samples()
    assert len(blocks) == 7
    for i, block in enumerate(blocks):
        cfg = load_config(write_config(tmp_path, block, name=f"sample{i}.yaml"))
        for key in block:
            assert getattr(cfg, key) is not None
    merged = load_config(write_config(tmp_path, {
        "channels": {k: v for b in blocks for k, v in b.get("channels", {}).items()},
        "siteops": {k: v for b in blocks for k, v in b.get("siteops", {}).items()}}))
    siteops = merged.siteops  # type: ignore[attr-defined]
    assert siteops.history.minute_days == 7 and siteops.history.days == 400
    assert [p.name for p in siteops.inspections] == ["monthly-meter", "yearly-site"]
    assert siteops.tariff.periods[0].price_per_kwh == 0.45
    reports = siteops.reports
    assert [reports.delivery.targets(d).webhook for d in reports.definitions] == ["crm", "crm"]
    assert reports.delivery.give_up_after == 172800


async def test_every_command_named_exists(tmp_path: Path) -> None:
    text = DOC.read_text()
    names = set(re.findall(r"`((?:history|workorders|inspections|reports)\.[a-z_]+|history|"
                           r"kpis)[ `]", text)) - {"history.days", "history.minute_days"}
    assert {"history", "kpis", "workorders.create", "reports.run"} <= names
    async with running_app({}, tmp_path) as app:
        missing = sorted(n for n in names if app.commands.get(n) is None)
    assert missing == []


async def test_siteops_enabled_false_turns_it_all_off(tmp_path: Path) -> None:
    from tests.hooks.support import config

    cfg = config(tmp_path)
    cfg["siteops"] = {"enabled": False}
    async with running_app(cfg, tmp_path) as app:
        assert app.commands.get("workorders.create") is None
        assert app.commands.get("history") is None
        reply = await app.commands.execute("kpis", {"period": "today"})  # the plugins' own
        assert reply["ok"] and reply["result"]["kpis"] == {"recorder_period": "today"}
