"""`fieldgate modbus read` and `fieldgate modbus scan` against a real simulator."""

from __future__ import annotations

import argparse
import asyncio
import struct

import pytest

from drivers.modbus.cli import install_cli
from drivers.modbus.datatypes import Function
from drivers.modbus.simulator import ModbusSimulator, SimUnit

from .support import device


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fieldgate")
    install_cli(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


async def run(argv: list[str]) -> int:
    args = parse(argv)
    return int(await asyncio.to_thread(args.func, args))


@pytest.fixture
async def sim() -> ModbusSimulator:
    points = device(points=[{"name": "p", "address": 0}, {"name": "q", "address": 9}]).points
    simulator = ModbusSimulator([SimUnit(3, list(points), animate=False),
                                 SimUnit(7, list(points), animate=False)])
    await simulator.start()
    yield simulator  # type: ignore[misc]
    await simulator.stop()


async def test_read_decodes_floats_in_word_swapped_order(
    sim: ModbusSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    words = struct.unpack(">4H", struct.pack(">2f", 1.5, -230.25))
    swapped = [words[1], words[0], words[3], words[2]]
    sim.set_registers(3, Function.HOLDING, 2, swapped)
    code = await run(["modbus", "read", "--host", "127.0.0.1", "--port", str(sim.port),
                      "--unit", "3", "--address", "2", "--count", "2", "--type", "float32",
                      "--order", "CDAB"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out == ["2\t0000 3fc0\t1.5", "4\t4000 c366\t-230.25"]


async def test_read_reports_exception_and_missing_connection(
    sim: ModbusSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await run(["modbus", "read", "--host", "127.0.0.1", "--port", str(sim.port),
                      "--unit", "3", "--address", "500"])
    assert code == 1 and "exception code 2" in capsys.readouterr().err
    assert await run(["modbus", "read", "--address", "0"]) == 2
    assert "give --host" in capsys.readouterr().err


async def test_scan_finds_the_answering_units(
    sim: ModbusSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await run(["modbus", "scan", "--host", "127.0.0.1", "--port", str(sim.port),
                      "--units", "1-9", "--timeout", "0.3"])
    out = capsys.readouterr().out
    assert code == 0
    assert "unit 3: answers" in out and "unit 7: answers" in out
    assert "2 unit(s) answered" in out and "unit 1:" not in out
