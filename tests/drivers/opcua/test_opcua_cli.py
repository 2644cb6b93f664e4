"""``fieldgate opcua browse`` through the CLI installer the driver registers, against a real
server."""

from __future__ import annotations

import argparse
import asyncio

import pytest

from drivers.opcua import SPEC
from drivers.opcua.simulator import InverterSimulator, free_port

pytestmark = pytest.mark.asyncio(loop_scope="module")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fieldgate")
    assert SPEC.cli is not None
    SPEC.cli(parser.add_subparsers(dest="command"))
    return parser


async def test_browse_prints_tree_with_ids_and_types(
    sim: InverterSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _parser().parse_args(["opcua", "browse", sim.url, "ns=2;s=Inverter", "--depth", "2"])
    code = await asyncio.to_thread(args.func, args)
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("2:Inverter  [ns=2;s=Inverter]  Object")
    assert "  2:Power  [ns=2;s=Inverter.Power]  Variable  Double = " in out
    assert "  2:MaxCurrent  [ns=2;s=Inverter.MaxCurrent]  Variable  Int32 = 200" in out
    assert "    0:EURange  [ns=2;s=Inverter.SoC.EURange]  Variable" in out  # depth 2


async def test_browse_unreachable_server_exits_nonzero(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"opc.tcp://127.0.0.1:{free_port()}"
    args = _parser().parse_args(["opcua", "browse", url, "--timeout", "1"])
    code = await asyncio.to_thread(args.func, args)
    err = capsys.readouterr().err
    assert code == 2
    assert f"cannot browse {url}" in err and "Check the url" in err


async def test_browse_bad_node_id(
    sim: InverterSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _parser().parse_args(["opcua", "browse", sim.url, "Inverter"])
    code = await asyncio.to_thread(args.func, args)
    assert code == 2
    assert "is not a node id" in capsys.readouterr().err
