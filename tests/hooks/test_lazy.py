"""A site without plugins does not load the plugin manager (idle RSS, issue 11).

Each case runs a real App in a fresh interpreter (this test process has pluggy loaded
already) and reports its ``sys.modules`` at each step: the config load (the plugins'
config-time registration), the start, the plugins' commands, a loop stall. The plugin
manager, pluggy and the dispatchers load with the first plugin: a customer folder that a
reload adds, or an installed entry point. ``tests/gateway/test_idle_imports.py`` checks the
same modules in a real ``fieldgate run`` of a Modbus site.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

#: Loaded only when a site has a plugin.
HEAVY = ("pluggy", "hooks.manager", "hooks.spec", "hooks.base", "hooks.dispatcher",
         "hooks.energy", "hooks.db", "hooks.models", "hooks.threads")

SCRIPT = """
import asyncio, json, sys, time
from pathlib import Path

TMP = Path({tmp!r})
MODE = {mode!r}
HEAVY = {heavy!r}
if MODE == "entry_point":
    sys.path.insert(0, str(TMP / "site"))  # an installed plugin package and its dist-info

from gateway.config.loader import load_config
from gateway.model import Event
from tests.hooks.support import SIM, component, config as plugin_config
from tests.support.app import running_app, write_config
from tests.support.wait import wait_until

out = {{}}


def heavy():
    return sorted(m for m in HEAVY if m in sys.modules)


async def call(app, name, **args):
    reply = await app.commands.execute(name, args)
    assert reply["ok"], reply
    return reply["result"]


async def own_kpis(app):
    kpis = (await call(app, "kpis"))["kpis"]
    return {{k: v for k, v in kpis.items() if not k.startswith("site.")}}


async def main():
    load_config(write_config(TMP, {{"devices": [SIM]}}))
    out["config_loaded"] = heavy()
    async with running_app({{"devices": [SIM]}}, TMP) as app:
        out["started"] = heavy()
        out["list"] = await call(app, "plugins.list")
        stats = await call(app, "plugins.stats")
        out["stats"] = {{k: v for k, v in stats.items() if k != "loop"}}
        out["kpis"] = await own_kpis(app)
        # The loop watch runs without plugins: it counts a stall, naming no plugin.
        time.sleep(0.6)  # blocks the loop on purpose (loop_stall_warn is 0.25 s)
        await wait_until(lambda: component(app).watch.last
                         and component(app).watch.last["duration_s"], 10)
        out["loop"] = (await call(app, "plugins.stats"))["loop"]
        # The hooks cursor still follows the outbox (db.recent_events of a later plugin).
        await app.store.add_events([Event("work_order_created",
                                          {{"order_id": "wo-1", "title": "t"}}, id="lz-1")])

        async def remembered():
            row = await app.store.query_one(
                "SELECT COUNT(*) FROM hooks_recent_events WHERE id = 'lz-1'")
            return row and row[0] == 1

        await wait_until(remembered, 10)
        out["after_commands"] = heavy()
        if MODE == "reload":
            old = component(app)
            write_config(TMP, plugin_config(TMP))  # a customer folder, acme
            reply = await app.commands.execute("reload", {{}})
            assert reply["ok"], reply
            await wait_until(lambda: app.ready.is_set() and old not in app.components
                             and any(c.name == "plugins" for c in app.components), 10)
            out["reloaded"] = heavy()
            out["list_after"] = await call(app, "plugins.list")
            out["kpis_after"] = await own_kpis(app)


asyncio.run(main())
print(json.dumps(out))
"""

ENTRY_POINT_PLUGIN = """
from hooks.spec import hookimpl

@hookimpl
def calculate_custom_kpis(period):
    return {"ep": 1}
"""


def _run(tmp_path: Path, mode: str) -> dict[str, Any]:
    script = SCRIPT.format(tmp=str(tmp_path), mode=mode, heavy=HEAVY)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_site_without_plugins_loads_no_plugin_manager_until_a_reload_adds_one(
        tmp_path: Path) -> None:
    out = _run(tmp_path, "reload")
    assert out["config_loaded"] == [], "loading a plugin-less config loaded the manager"
    assert out["started"] == [], "starting a plugin-less site loaded the manager"
    assert out["after_commands"] == [], "plugins.list/stats, kpis or a stall loaded it"
    # The commands answer as they always did on a site without plugins.
    assert out["list"] == {"loaded": [], "failed": {},
                           "converters": {"names": [], "wired": False}}
    assert out["stats"] == {"plugins": {}, "hung": [], "hooks": {}, "energy": None,
                            "events_delivered": 0}
    assert out["kpis"] == {}
    assert out["loop"]["stalls"] >= 1 and out["loop"]["last"]["plugin"] is None
    assert out["loop"]["last"]["duration_s"] >= 0.25
    # A reload that adds a plugin loads the manager, and the plugin works.
    assert set(HEAVY) <= set(out["reloaded"])
    listed = {p["name"]: p for p in out["list_after"]["loaded"]}
    assert listed["acme"]["source"] == "customer folder"
    assert "calculate_custom_kpis" in listed["acme"]["hooks"]
    assert out["kpis_after"] == {"recorder_period": "today"}


def test_an_installed_entry_point_plugin_loads_the_manager(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "lazy_ep").mkdir(parents=True)
    (site / "lazy_ep" / "__init__.py").write_text(ENTRY_POINT_PLUGIN)
    dist = site / "lazy_ep-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: lazy-ep\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[fieldgate.plugins]\nlazy-ep = lazy_ep\n")
    out = _run(tmp_path, "entry_point")
    assert "pluggy" in out["config_loaded"] and "hooks.manager" in out["config_loaded"]
    assert [p["name"] for p in out["list"]["loaded"]] == ["lazy-ep"]
    assert out["kpis"] == {"ep": 1}
