"""The ``write`` command's reply for Modbus points, through a real gateway and a real
pymodbus server: the shape docs/wire-format.md promises, and ``not_writable``."""

from __future__ import annotations

from pathlib import Path

from drivers.modbus.datatypes import Function
from gateway.control import send_command
from tests.support.app import running_app

from .support import device, serving

POINTS = [
    {"name": "limit", "address": 0, "type": "int16", "scale": 0.1, "writable": True,
     "readback": True},
    {"name": "mode", "address": 1, "type": "uint16", "writable": True},
    {"name": "configured_ro", "address": 2, "type": "uint16"},
    {"name": "energy", "function": "input", "address": 0, "type": "uint32"},
]


async def test_write_replies_written_value_and_readback_as_documented(tmp_path: Path) -> None:
    cfg = device(id="inv", points=POINTS)
    async with serving(cfg) as (sim, [served]):
        site = {"devices": [{**served.model_dump(mode="json", exclude_defaults=True),
                              "type": "modbus"}]}
        async with running_app(site, tmp_path) as app:
            read_back = await send_command(app.state_dir, "write",
                                           {"device": "inv", "point": "limit", "value": -12.3})
            assert read_back["ok"], read_back
            assert read_back["result"] == {"device": "inv", "point": "limit", "written": -12.3,
                                           "readback": -12.3}
            plain = await send_command(app.state_dir, "write",
                                       {"device": "inv", "point": "mode", "value": 3})
            assert plain["result"] == {"device": "inv", "point": "mode", "written": 3}
            assert sim.get_registers(1, Function.HOLDING, 0, 2) == [(-123) & 0xFFFF, 3]
            for point, why in (("energy", "is read-only"),
                               ("configured_ro", "set writable: true")):
                refused = await send_command(app.state_dir, "write",
                                             {"device": "inv", "point": point, "value": 1})
                assert refused["error"]["code"] == "not_writable", refused
                assert why in refused["error"]["message"]
            unknown = await send_command(app.state_dir, "write",
                                         {"device": "inv", "point": "nope", "value": 1})
            assert unknown["error"]["code"] == "unknown_point"
