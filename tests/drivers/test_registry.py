"""Lazy drivers: a driver's library loads only when a configured device or a command needs it.

Each check runs in a fresh interpreter, since this test process has imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from drivers.registry import BUILTIN_DRIVERS, LazyDriver, config_model, get_driver, names

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("asyncua", "ocpp", "pymodbus", "websockets", "cryptography", "pydantic", "aiosqlite")


def loaded_after(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter; return which heavy libraries it imported
    (pydantic and aiosqlite too: the CLI must not pay for them before it parses)."""
    probe = textwrap.dedent(code) + textwrap.dedent(f"""
        import json, sys
        print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
    """)
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True)
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


@pytest.mark.parametrize("arg", ["--help", "--version"])
def test_cli_parse_imports_no_driver_library(arg: str) -> None:
    code = f"""
        import contextlib, io
        from gateway.cli import main
        with contextlib.redirect_stdout(io.StringIO()) as out:
            try:
                main([{arg!r}])
            except SystemExit:
                pass
        assert "fieldgate" in out.getvalue()
        if {arg!r} == "--help":  # the drivers' commands are still listed
            assert all(name in out.getvalue() for name in ("modbus", "opcua", "ocpp"))
    """
    assert loaded_after(code) == []


def test_modbus_only_config_imports_only_pymodbus(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("gateway: {id: gw, state_dir: ./var}\n"
                    "devices:\n  - {id: m1, type: modbus, host: 127.0.0.1, unit: 1,\n"
                    "     profile: eastron-sdm630}\n")
    code = f"""
        from drivers.registry import get_driver
        from gateway.config.loader import load_config
        config = load_config({str(site)!r})
        assert [d.type for d in config.devices] == ["modbus"]
        get_driver("modbus")  # what the runtime does to build the driver
    """
    assert loaded_after(code) == ["aiosqlite", "pydantic", "pymodbus"]


def test_unknown_type_still_names_every_registered_type(tmp_path: Path) -> None:
    from gateway.config.errors import ConfigError
    from gateway.config.loader import load_config

    site = tmp_path / "site.yaml"
    site.write_text("gateway: {id: gw, state_dir: ./var}\n"
                    "devices:\n  - {id: m1, type: modbsu, host: 127.0.0.1}\n")
    with pytest.raises(ConfigError) as err:
        load_config(site)
    text = str(err.value)
    assert "unknown device type 'modbsu'" in text
    assert all(name in text for name in BUILTIN_DRIVERS)


def test_lazy_entries_resolve_to_the_named_objects() -> None:
    from drivers.simulated.driver import SimulatedDevice, SimulatedDriver

    assert set(BUILTIN_DRIVERS) <= set(names())
    spec = get_driver("simulated")
    assert spec.config_model is SimulatedDevice and spec.factory is SimulatedDriver
    assert config_model("simulated") is SimulatedDevice
    with pytest.raises(KeyError, match=r"unknown driver type 'nope'; known: .*modbus"):
        get_driver("nope")


def test_a_lazy_driver_with_a_bad_reference_fails_when_used_not_when_registered() -> None:
    from drivers.registry import _REGISTRY, register_driver

    entry = LazyDriver("broken-test", "drivers.no_such_module:Config", "drivers.x:Driver")
    register_driver(entry)
    try:
        assert "broken-test" in names()
        with pytest.raises(ModuleNotFoundError, match=r"drivers\.no_such_module"):
            config_model("broken-test")
    finally:
        _REGISTRY.pop("broken-test")
