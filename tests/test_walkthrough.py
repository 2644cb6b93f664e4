"""The walk-through of docs/adding-a-component.md and drivers/README.md: a package outside
fieldgate (tests/walkthrough) adds a driver and a component, and a site uses both by naming
the package in its config. No core file knows about either."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.components import unregister_component
from tests.hooks.support import wait_for
from tests.support.app import running_app

ROOT = Path(__file__).resolve().parents[1]
CORE = ("gateway/*.py", "drivers/*.py", "hooks/*.py")  # the code; the docs point at it


@pytest.fixture
def walkthrough() -> Iterator[None]:
    yield
    unregister_component("refill")  # components are process-wide; later tests do not want it


async def test_a_package_adds_a_driver_and_a_component(tmp_path: Path,
                                                       walkthrough: None) -> None:
    cfg = {
        "plugins": {"modules": ["tests.walkthrough.plugin"], "entry_points": False},
        "devices": [{"id": "tank-1", "type": "tank", "drain_pct": 5}],
        "refill": {"enabled": True, "below_pct": 30},
    }
    async with running_app(cfg, tmp_path) as app:
        await app.store.register_consumer("walkthrough")  # keep the outbox's events for us
        assert app.config.refill.below_pct == 30  # its section, validated like a built-in's
        refill = app.running["refill"]
        await wait_for(lambda: refill.requested)
        # emit_event queues the event for the next commit: two commits later it is in.
        commits = app.pipeline.stats.commits
        await wait_for(lambda: app.pipeline.stats.commits >= commits + 2)
        events = [s.event for s in await app.store.read_events("walkthrough", 10_000)
                  if s.event.type == "refill_requested"]
        assert events[0].device == "tank-1" and events[0].body["level"] < 30
        listed = (await app.commands.execute("refill.list", {}))["result"]
        assert listed[0]["device"] == "tank-1"  # its own table, from its own migration
        assert listed[0]["level"] < 30
        assert app.status.current("tank-1").value == "online"  # the driver's report
        order = list(app.running)
    assert order.index("rules") < order.index("refill"), "after=('rules',) is honoured"


def test_no_core_file_names_the_walkthrough() -> None:
    out = subprocess.run(["git", "grep", "-l", "-e", "walkthrough", "-e", "refill",
                          "--", *CORE], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout == "", f"core files mention the walk-through: {out.stdout}"


@pytest.mark.parametrize(("doc", "sources"), [
    ("docs/adding-a-component.md", ["refill.py", "plugin.py"]),
    ("drivers/README.md", ["tank.py", "plugin.py"]),
])
def test_the_pages_quote_the_walkthrough(doc: str, sources: list[str]) -> None:
    """Every line of code on the page is in the package this test runs (comments and
    elided ``...`` lines aside), so the page cannot drift from working code."""
    code = {_strip(line) for name in sources
            for line in (ROOT / "tests" / "walkthrough" / name).read_text().splitlines()}
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / doc).read_text(), re.S)
    assert blocks
    for line in "\n".join(blocks).splitlines():
        if _strip(line) and "..." not in line:
            assert _strip(line) in code, f"{doc}: {line.strip()!r} is not in the walk-through"


def _strip(line: str) -> str:
    return line.split("  #")[0].strip()



async def test_the_tank_refuses_unknown_points_and_non_numbers() -> None:
    from drivers.base import UnknownPoint, WriteFailed
    from drivers.testing import RecordingContext
    from tests.walkthrough.tank import TankDevice, TankDriver

    driver = TankDriver([TankDevice(id="t1", type="tank")], RecordingContext())
    assert await driver.write("t1", "level_pct", 40) == 40.0
    with pytest.raises(WriteFailed):
        await driver.write("t1", "level_pct", "full")
    with pytest.raises(UnknownPoint):
        await driver.write("t1", "volume_l", 10)
