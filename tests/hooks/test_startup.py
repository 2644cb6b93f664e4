"""Plugins at start: a plugin's driver type validates in the config (its drivers are
registered before the site model is built), and a broken plugin stops the gateway with a
short message and exit code 78, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from gateway.config.loader import load_config
from gateway.errors import StartupError, startup_errors
from gateway.model import DeviceStatus
from hooks.manager import PluginLoadError
from tests.hooks.support import SIM, wait_for, write_customer
from tests.support.app import running_app

ROOT = Path(__file__).resolve().parents[2]

TINY_DRIVER = '''
from typing import Literal

from pydantic import Field

from drivers.base import DeviceConfig, Driver, DriverSpec
from gateway.model import DeviceStatus, Sample
from hooks.base import CustomerHooks

TYPE = "TINY_TYPE"


class TinyDevice(DeviceConfig):
    """A tank level gauge that always reads the configured level."""
    type: Literal["TINY_TYPE"]
    level: float = Field(42.0, description="The level it reports.")


class TinyDriver(Driver):
    def tasks(self):
        for device in self.devices.values():
            yield f"tiny[{device.id}]", lambda device=device: self._run(device)

    async def _run(self, device):
        self.ctx.set_status(device.id, DeviceStatus.ONLINE)
        while True:
            now = self.ctx.clock.now_ms()
            await self.ctx.emit([Sample(device.id, "level", now, device.level)])
            await self.ctx.clock.sleep(0.05)


class Tiny(CustomerHooks):
    def register_drivers(self):
        return [DriverSpec(TYPE, TinyDevice, TinyDriver)]


hooks = Tiny()
'''

BROKEN_IMPORT = "import does_not_exist_anywhere\n"

BAD_COMMANDS = '''
from hooks.base import CustomerHooks


class BadCommands(CustomerHooks):
    def register_commands(self):
        raise RuntimeError("no command table")


hooks = BadCommands()
'''


def _site(tmp_path: Path, name: str, code: str, devices: list[dict[str, Any]],
          **plugins: Any) -> Path:
    cdir = write_customer(tmp_path, name, code)
    cfg = {"gateway": {"id": "gw", "state_dir": str(tmp_path / "state")}, "devices": devices,
           "plugins": {"customer": name, "customer_dir": str(cdir), "entry_points": False,
                       **plugins}}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _fieldgate(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _tiny(tmp_path: Path) -> tuple[str, str]:
    # Driver types are process-global: one type name per test folder.
    type_name = f"tiny-{tmp_path.name}".replace("_", "-")
    return type_name, TINY_DRIVER.replace("TINY_TYPE", type_name)


def test_plugin_driver_type_passes_check_config(tmp_path: Path) -> None:
    type_name, code = _tiny(tmp_path)
    path = _site(tmp_path, "acme", code, [{"id": "tank", "type": type_name, "level": 7.5}])
    proc = _fieldgate("check-config", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "ok (1 device)" in proc.stdout


def test_unknown_type_still_fails_and_lists_plugin_types(tmp_path: Path) -> None:
    type_name, code = _tiny(tmp_path)
    path = _site(tmp_path, "acme", code, [{"id": "tank", "type": "tinyy", "level": 1}])
    proc = _fieldgate("check-config", str(path))
    assert proc.returncode == 78
    assert "unknown device type 'tinyy'" in proc.stderr and type_name in proc.stderr


async def test_plugin_driver_runs(tmp_path: Path) -> None:
    type_name, code = _tiny(tmp_path)
    path = _site(tmp_path, "acme", code, [{"id": "tank", "type": type_name, "level": 7.5}])
    cfg = yaml.safe_load(path.read_text())
    async with running_app(cfg, tmp_path) as app:
        device = app.device("tank")
        assert device is not None and device.type == type_name
        await wait_for(lambda: app.status.current("tank") is DeviceStatus.ONLINE)

        async def stored() -> list[Any]:
            return [r for c in await app.store.read_telemetry(0, 100) for r in c.rows]

        rows = await wait_for(stored, what="the plugin driver's samples")
        assert rows and rows[0][:2] == ["tank", "level"] and rows[0][3] == 7.5


def test_refused_plugin_is_a_startup_error_not_a_traceback(tmp_path: Path) -> None:
    path = _site(tmp_path, "broken", BROKEN_IMPORT, [SIM])
    for args in (["check-config", str(path)], ["run", "-c", str(path)]):
        proc = _fieldgate(*args)
        assert proc.returncode == 78, proc.stderr
        assert "Traceback" not in proc.stderr
        assert "fieldgate: plugin 'broken': import of" in proc.stderr
        assert "No module named 'does_not_exist_anywhere'" in proc.stderr
        assert "set plugins.on_error: skip" in proc.stderr
    assert not (tmp_path / "state").exists()  # refused before anything was created


def test_plugin_failing_at_component_start_exits_78(tmp_path: Path) -> None:
    path = _site(tmp_path, "badcmds", BAD_COMMANDS, [SIM])
    assert _fieldgate("check-config", str(path)).returncode == 0  # loads fine
    proc = _fieldgate("run", "-c", str(path))
    assert proc.returncode == 78, proc.stderr
    assert "Traceback" not in proc.stderr
    assert ("fieldgate: plugin 'badcmds': registration failed: RuntimeError: "
            "no command table") in proc.stderr


def test_skip_starts_without_the_plugin(tmp_path: Path) -> None:
    path = _site(tmp_path, "broken", BROKEN_IMPORT, [SIM], on_error="skip")
    config = load_config(path)  # no exception: the plugin is skipped
    assert config.devices[0].id == "m1"


def test_startup_errors_unwraps_groups() -> None:
    err = PluginLoadError("p", "bad")
    assert isinstance(err, StartupError) and "plugins.on_error" in err.hint
    assert startup_errors(ExceptionGroup("g", [ExceptionGroup("h", [err])])) == [err]
    assert startup_errors(ExceptionGroup("g", [err, KeyError("bug")])) is None
    assert startup_errors(KeyError("bug")) is None


def test_check_config_reports_every_broken_plugin_at_once(tmp_path: Path) -> None:
    path = _site(tmp_path, "broken", BROKEN_IMPORT, [SIM],
                 modules=["no_such_plugin_module", "tests.hooks.plugin_bad_signature"])
    proc = _fieldgate("check-config", str(path))
    assert proc.returncode == 78, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "fieldgate: 3 plugins failed to load:" in proc.stderr
    assert "plugin 'no_such_plugin_module': import of no_such_plugin_module failed" in (
        proc.stderr)
    assert "plugin 'tests.hooks.plugin_bad_signature': wrong hook signature" in proc.stderr
    assert "plugin 'broken': import of" in proc.stderr
    assert "fix or remove these plugins, or set plugins.on_error: skip" in proc.stderr
