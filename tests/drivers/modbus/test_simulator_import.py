"""The simulator loads pymodbus's server without its HTTP simulator's aiohttp (about 0.24 CPU-s
at the start of a simulated site), and aiohttp still loads afterwards for whoever needs it.
Fresh interpreters: this test process may have loaded aiohttp already."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

CHILD = textwrap.dedent("""
    import asyncio, json, sys
    from drivers.modbus.config import ModbusDeviceConfig
    from drivers.modbus.simulator import ModbusSimulator, unit_of
    out = {"aiohttp_after_simulator": "aiohttp" in sys.modules}
    cfg = ModbusDeviceConfig.model_validate({"id": "m", "type": "modbus", "host": "127.0.0.1",
        "points": [{"name": "p", "address": 3}]})

    async def main():
        from pymodbus.client import AsyncModbusTcpClient
        sim = ModbusSimulator([unit_of(cfg)], port=0)
        port = await sim.start()
        client = AsyncModbusTcpClient("127.0.0.1", port=port)
        await client.connect()
        reply = await client.read_holding_registers(3, count=1, device_id=1)
        client.close()
        await sim.stop()
        return reply.registers

    out["served"] = asyncio.run(main())
    from aiohttp import web  # anyone may still use it
    out["aiohttp_later"] = web.Application.__name__
    print(json.dumps(out))
""")


def test_the_simulator_serves_without_loading_aiohttp() -> None:
    proc = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=True)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["aiohttp_after_simulator"] is False
    assert len(out["served"]) == 1  # a real pymodbus server answered
    assert out["aiohttp_later"] == "Application"


def test_with_aiohttp_loaded_first_the_simulator_imports_as_usual() -> None:
    code = ("import aiohttp, json, sys\nimport drivers.modbus.simulator as s\n"
            "print(json.dumps([s.ModbusTcpServer.__module__, 'pymodbus.server' in sys.modules]))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=True)
    assert json.loads(proc.stdout) == ["pymodbus.server.server", True]
