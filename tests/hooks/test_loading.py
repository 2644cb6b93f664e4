"""Loading plugins three ways, and what happens with broken ones."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from gateway.config.loader import load_config
from hooks.base import CustomerHooks
from hooks.manager import FieldgatePluginManager, PluginLoadError
from tests.hooks.support import SIM, component, config, plugin_observers
from tests.support.app import running_app

ROOT = Path(__file__).resolve().parents[2]

ONLY_ALARMS = '''
from hooks.base import CustomerHooks

class AcmeHooks(CustomerHooks):
    async def on_alarm_created(self, alarm_event, device, rule, db):
        pass

hooks = AcmeHooks()
'''


def _leaf(err: BaseException) -> BaseException:
    while isinstance(err, BaseExceptionGroup):
        err = err.exceptions[0]
    return err


async def test_customer_folder_only_overrides_count(tmp_path: Path) -> None:
    async with running_app(config(tmp_path, ONLY_ALARMS), tmp_path) as app:
        comp = component(app)
        assert comp.report.loaded == {"acme": "customer folder"}
        assert [i.plugin_name for i in comp.runner.implementations("on_alarm_created")] == [
            "acme"]
        # The no-op defaults are not implementations: no per-sample cost.
        assert comp.runner.implementations("on_energy_data_received") == []
        assert comp.energy.feeds == {} and plugin_observers(app) == []
        listed = (await app.commands.execute("plugins.list", {}))["result"]
        assert {"name": "acme", "source": "customer folder",
                "hooks": ["on_alarm_created"]} in listed["loaded"]


async def test_default_customer_dir_and_module_plugin(tmp_path: Path) -> None:
    cfg = {"devices": [SIM], "plugins": {"customer": "example", "entry_points": False,
                                         "modules": ["tests.hooks.plugin_module"]}}
    async with running_app(cfg, tmp_path) as app:
        loaded = component(app).report.loaded
        assert loaded["example"] == "customer folder"
        assert loaded["tests.hooks.plugin_module"] == "module"
        kpis = (await app.commands.execute("kpis", {"period": "year"}))["result"]["kpis"]
        assert kpis["module_kpi"] == "year"


async def test_entry_point_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    (site / "acme_ep").mkdir(parents=True)
    (site / "acme_ep" / "__init__.py").write_text(
        "from hooks.spec import hookimpl\n\n"
        "@hookimpl\ndef calculate_custom_kpis(period):\n    return {'ep': 1}\n")
    dist = site / "acme_ep-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-ep\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[fieldgate.plugins]\nacme-ep = acme_ep\n")
    monkeypatch.syspath_prepend(str(site))
    async with running_app({"devices": [SIM]}, tmp_path) as app:
        assert component(app).report.loaded["acme-ep"] == "entry point"
        kpis = (await app.commands.execute("kpis", {}))["result"]["kpis"]
        assert kpis == {"ep": 1}
    cfg = {"devices": [SIM], "plugins": {"disable": ["acme-ep"]}}
    async with running_app(cfg, tmp_path) as app:
        assert "acme-ep" not in component(app).report.loaded


BROKEN_IMPORT = "import does_not_exist_anywhere\n"
WRONG_SIGNATURE = '''
from hooks.base import CustomerHooks

class Bad(CustomerHooks):
    async def on_alarm_created(self, alarm, device, rule, db):
        pass

hooks = Bad()
'''
TYPO = '''
from hooks.base import CustomerHooks

class Typo(CustomerHooks):
    async def on_alarm_create(self, alarm_event, device, rule, db):
        pass

hooks = Typo()
'''


@pytest.mark.parametrize(("code", "needle"), [
    (BROKEN_IMPORT, "No module named 'does_not_exist_anywhere'"),
    (WRONG_SIGNATURE, "'alarm'"),
    (TYPO, "on_alarm_create is not a fieldgate hook"),
])
async def test_broken_plugin_refuses_start(tmp_path: Path, code: str, needle: str) -> None:
    with pytest.raises(BaseException) as info:
        async with running_app(config(tmp_path, code, name="broken"), tmp_path):
            pass
    err = _leaf(info.value)
    assert isinstance(err, PluginLoadError) and err.plugin == "broken"
    assert needle in str(err) and "plugins.on_error: skip" in err.hint


async def test_broken_plugin_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    cfg = config(tmp_path, WRONG_SIGNATURE, name="broken", on_error="skip")
    async with running_app(cfg, tmp_path) as app:
        listed = (await app.commands.execute("plugins.list", {}))["result"]
        assert "broken" in listed["failed"] and "'alarm'" in listed["failed"]["broken"]
        assert listed["loaded"] == []
    assert "plugin broken failed to load and is skipped" in caplog.text


def test_plain_object_and_class_plugins() -> None:
    class Sub(CustomerHooks):
        async def on_work_order_created(self, order: Any, db: Any) -> None:
            pass

    pm = FieldgatePluginManager()
    pm.register_checked(Sub, "as-class")  # a class is instantiated
    impls = pm.hook.on_work_order_created.get_hookimpls()
    assert [i.plugin_name for i in impls] == ["as-class"]
    assert pm.hook.on_alarm_created.get_hookimpls() == []

    class Unknown:
        from hooks.spec import hookimpl

        @hookimpl
        def on_something_else(self) -> None:
            pass

    with pytest.raises(PluginLoadError, match="unknown hook"):
        pm.register_checked(Unknown(), "unknown")
    assert pm.get_plugin("unknown") is None


async def test_original_layout_in_the_state_dir_with_relative_imports(tmp_path: Path) -> None:
    """``customers/<name>/hooks/__init__.py``, found without ``customer_dir`` under
    ``<state_dir>/customers`` (running_app puts the state dir in tmp_path/state)."""
    folder = tmp_path / "state" / "customers" / "acme" / "hooks"
    folder.mkdir(parents=True)
    (folder.parent / "__init__.py").write_text("")  # the package marker of the old layout
    (folder / "rules.py").write_text("SEVERE = ('critical', 'major')\n")
    (folder / "__init__.py").write_text(
        "from hooks.base import CustomerHooks\nfrom .rules import SEVERE\n\n"
        "class AcmeHooks(CustomerHooks):\n"
        "    async def on_alarm_created(self, alarm_event, device, rule, db):\n"
        "        return alarm_event.severity in SEVERE\n\n"
        "hooks = AcmeHooks()\n")
    cfg = {"devices": [SIM], "plugins": {"customer": "acme", "entry_points": False}}
    async with running_app(cfg, tmp_path) as app:
        comp = component(app)
        assert comp.report.loaded["acme"] == "customer folder"
        (impl,) = comp.runner.implementations("on_alarm_created")
        assert impl.plugin_name == "acme"
        assert impl.function.__code__.co_filename == str(folder / "__init__.py")


def test_missing_customer_folder_says_where_it_looked(tmp_path: Path) -> None:
    from hooks.loader import load_customer

    with pytest.raises(PluginLoadError) as info:
        load_customer("nobody", None, tmp_path / "state")
    message = str(info.value)
    assert "/etc/fieldgate/customers/nobody" in message
    assert str(tmp_path / "state" / "customers" / "nobody") in message
    assert "create /etc/fieldgate/customers/nobody/hooks/__init__.py exporting `hooks`" in (
        message)


def test_settings_for_an_unknown_plugin_name_are_warned_about(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from tests.support.app import write_config

    cfg = config(tmp_path, ONLY_ALARMS)
    cfg["plugins"]["acme"] = {"may_write": ["pv1.power_limit_w"]}
    cfg["plugins"]["acmee"] = {"may_write": ["pv1.*"]}  # a typo of the name
    caplog.set_level(logging.WARNING, logger="hooks.component")
    loaded = load_config(write_config(tmp_path, cfg))
    section: Any = loaded.plugins  # type: ignore[attr-defined]
    assert section.settings("acme").may_write == ["pv1.power_limit_w"]
    assert "plugins: settings for acmee, but no plugin of that name was loaded" in caplog.text
    assert "settings for acme," not in caplog.text
