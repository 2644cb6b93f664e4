"""`fieldgate modbus read` and `fieldgate modbus scan` against a real simulator."""

from __future__ import annotations

import argparse
import asyncio
import struct
import sys

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


async def test_read_scales_as_the_driver_does(
    sim: ModbusSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.set_registers(3, Function.HOLDING, 2, [2301, 7])
    code = await run(["modbus", "read", "--host", "127.0.0.1", "--port", str(sim.port),
                      "--unit", "3", "--address", "2", "--count", "2", "--scale", "0.1"])
    assert code == 0
    assert capsys.readouterr().out.splitlines() == ["2\t08fd\t230.1", "3\t0007\t0.7"]


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


async def test_read_splits_a_long_read_into_requests_the_protocol_allows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = device(points=[{"name": "first", "address": 0}, {"name": "last", "address": 139}])
    sim = ModbusSimulator([SimUnit(1, list(cfg.points), animate=False)])
    await sim.start()
    try:
        sim.set_registers(1, Function.HOLDING, 0, list(range(1000, 1140)))
        code = await run(["modbus", "read", "--host", "127.0.0.1", "--port", str(sim.port),
                          "--address", "0", "--count", "130"])
        lines = capsys.readouterr().out.splitlines()
        assert code == 0
        assert [line.split("\t")[2] for line in lines] == [str(v) for v in range(1000, 1130)]
        assert [fc for kind, _u, fc in sim.log if kind == "recv"] == [3, 3]  # 125 + 5
        code = await run(["modbus", "read", "--host", "127.0.0.1", "--port", str(sim.port),
                          "--address", "0", "--count", "65", "--type", "uint32"])
        assert code == 0 and len(capsys.readouterr().out.splitlines()) == 65
    finally:
        await sim.stop()


async def test_read_coils_without_type_and_one_line_for_a_wrong_type(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = device(points=[{"name": "c", "function": "coil", "address": 0, "type": "bool"},
                         {"name": "d", "function": "coil", "address": 7, "type": "bool"}])
    sim = ModbusSimulator([SimUnit(1, list(cfg.points), animate=False)])
    await sim.start()
    try:
        sim.set_registers(1, Function.COIL, 0, [1, 0, 1])
        base = ["modbus", "read", "--host", "127.0.0.1", "--port", str(sim.port),
                "--function", "coil", "--address", "0"]
        assert await run([*base, "--count", "3"]) == 0
        assert capsys.readouterr().out.splitlines() == ["0\t1\tTrue", "1\t0\tFalse",
                                                        "2\t1\tTrue"]
        assert await run([*base, "--type", "float32"]) == 2
        err = capsys.readouterr().err.splitlines()
        assert err == ["modbus read: coil values are single bits: use --type bool (or leave "
                       "--type out), not --type float32"]
    finally:
        await sim.stop()


async def test_read_by_profile_decodes_every_point_and_names_the_unreadable_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from drivers.modbus.config import AddressRange

    cfg = device(profile="eastron-sdm630")
    points = list(cfg.all_points().values())
    hole = next(p for p in points if p.name == "current_l2")
    sim = ModbusSimulator([SimUnit(1, points, [AddressRange(
        function=hole.function, start=hole.address, end=hole.address)])])
    await sim.start()
    try:
        sim.set_point(1, "voltage_l1", 231.5)
        code = await run(["modbus", "read", "--host", "127.0.0.1", "--port", str(sim.port),
                          "--profile", "eastron-sdm630"])
        captured = capsys.readouterr()
        rows = {line.split("\t")[0]: line.split("\t")[1:] for line in captured.out.splitlines()}
        assert code == 1  # one point could not be read
        assert set(rows) == {p.name for p in points}
        assert rows["voltage_l1"] == ["231.5", "V"]
        assert rows["current_l2"] == ["-", f"input {hole.address}: unreadable (the device "
                                      "refused it)"]
        assert all(v[0] != "-" for name, v in rows.items() if name != "current_l2")
        assert "1 of 27 point(s) of profile eastron-sdm630 could not be read" in captured.err
    finally:
        await sim.stop()


def test_every_option_has_a_help_text() -> None:
    parser = argparse.ArgumentParser(prog="fieldgate")
    install_cli(parser.add_subparsers(dest="command"))
    modbus = parser._subparsers._group_actions[0].choices["modbus"]  # type: ignore[union-attr]
    commands = modbus._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(commands) == {"read", "scan"}
    for name, sub in commands.items():
        assert sub.description and sub.epilog and "examples:" in sub.epilog, name
        for action in sub._actions:
            assert action.help, f"modbus {name} {action.option_strings} has no help"
    assert "--profile" in commands["read"].format_help()


async def test_library_internals_stay_off_stderr() -> None:
    """A unit that never answers: one line of ours, none of pymodbus's frame dumps."""
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async def cli(*argv: str) -> tuple[int, list[str]]:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway", "modbus", *argv, "--host", "127.0.0.1",
                "--port", str(port), "--timeout", "0.2",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            _out, err = await proc.communicate()
            return int(proc.returncode or 0), err.decode().splitlines()

        code, err = await cli("read", "--address", "0")
        assert code == 1
        assert err == [f"modbus read: tcp://127.0.0.1:{port} unit 1: holding 0+1 unit 1: "
                       "no reply within 0.2 s"]
        code, err = await cli("scan", "--units", "1-3", "--rtu-over-tcp")
        assert code == 1 and err == []
    finally:
        server.close()


async def test_read_by_the_sunspec_profile_discovers_the_models(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from drivers.modbus.simulator import unit_of

    sim = ModbusSimulator([unit_of(device(profile="sunspec"))])
    await sim.start()
    try:
        code = await run(["modbus", "read", "--host", "127.0.0.1", "--port", str(sim.port),
                          "--profile", "sunspec"])
        rows = dict(line.split("\t", 1) for line in capsys.readouterr().out.splitlines())
        assert code == 0
        assert rows["1.Mn"] == "'fieldgate'" and "103.W" in rows
    finally:
        await sim.stop()
