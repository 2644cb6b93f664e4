"""``fieldgate run`` imports the configured drivers before its event loop runs.

Imported in the middle of start-up instead, a driver's protocol library (the OCPP library
builds several hundred dataclasses, pymodbus follows) held the loop for the longest stretch
of the start, while the HTTP server and the embedded broker were already serving.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from gateway import runtime
from tests.support.app import write_config

ROOT = Path(__file__).resolve().parents[2]

#: Runs `fieldgate run` up to the event loop, and says what was imported by then.
AT_THE_LOOP = """
import asyncio, sys
from gateway import cli

def run(self, coro):
    coro.close()
    print(" ".join(m for m in ("drivers.modbus.driver", "pymodbus.client")
                   if m in sys.modules))
    return 0

asyncio.Runner.run = run
sys.exit(cli.main(["run", "-c", sys.argv[1]]))
"""


def test_run_imports_the_configured_driver_before_the_loop_runs(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"devices": [
        {"id": "meter", "type": "modbus", "host": "127.0.0.1", "port": 1502,
         "points": [{"name": "p", "address": 0}]}]})
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(AT_THE_LOOP), str(config)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["drivers.modbus.driver", "pymodbus.client"], out.stderr


def test_a_driver_that_cannot_be_imported_is_left_for_the_start_to_report(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[str] = []

    def get_driver(name: str) -> None:
        asked.append(name)
        raise ImportError(f"no module for {name}")  # the start says so, with its hint

    monkeypatch.setattr(runtime, "get_driver", get_driver)
    devices = [SimpleNamespace(type=t, enabled=e)
               for t, e in (("b", True), ("a", True), ("b", True), ("off", False))]
    runtime.preload_drivers(SimpleNamespace(devices=devices))  # type: ignore[arg-type]
    assert asked == ["a", "b"]  # each enabled type once; a disabled device's type never
