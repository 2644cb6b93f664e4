"""Every data type and byte order, decoded by the driver from a real pymodbus server.

The expected wire words are built here independently of the driver's codec: pack the value
big-endian (bytes A, B, C, ...) and permute the bytes by the order's letters.
"""

from __future__ import annotations

import struct

import pytest

from drivers.modbus import datatypes as dt
from drivers.modbus.datatypes import Function
from gateway.model import Quality

from .support import device, latest, running, serving

CASES = [
    ("int16", "h", -12345),
    ("uint16", "H", 54321),
    ("int32", "i", -123456789),
    ("uint32", "I", 3_000_000_000),
    ("int64", "q", -(1 << 60) + 12345),
    ("uint64", "Q", (1 << 63) + 99),
    ("float32", "f", 1.5),
    ("float64", "d", -2.718281828459045),
]
ORDERS_32 = ["ABCD", "CDAB", "BADC", "DCBA"]
ORDERS_64 = ["ABCD", "CDAB", "BADC", "DCBA", "ABCDEFGH", "GHEFCDAB", "BADCFEHG", "HGFEDCBA"]
LETTERS = "ABCDEFGH"


def wire_words(code: str, value: float | int, order: str) -> list[int]:
    raw = struct.pack(">" + code, value)
    n = len(raw)
    if len(order) == 4 and n == 8:  # 32-bit names applied to 64-bit: words reversed/bytes swapped
        order = {"ABCD": "ABCDEFGH", "CDAB": "GHEFCDAB", "BADC": "BADCFEHG",
                 "DCBA": "HGFEDCBA"}[order]
    if n == 2:
        order = order[:2] if order in ("ABCD", "CDAB") else "BA"
    wire = bytes(raw[LETTERS.index(ch)] for ch in order)
    return [int.from_bytes(wire[i:i + 2], "big") for i in range(0, n, 2)]


def all_points() -> list[dict[str, object]]:
    points: list[dict[str, object]] = []
    addr = 0
    for name, _code, _value in CASES:
        words = dt.register_count(name, None)
        orders = ORDERS_64 if words == 4 else ORDERS_32 if words == 2 else ["ABCD", "BADC"]
        for order in orders:
            points.append({"name": f"{name}_{order}", "function": "holding", "address": addr,
                           "type": name, "order": order})
            addr += words
    return points


def test_wire_words_helper_matches_known_vector() -> None:
    # 1.5f = 0x3FC00000, the classic example in meter manuals
    assert wire_words("f", 1.5, "ABCD") == [0x3FC0, 0x0000]
    assert wire_words("f", 1.5, "CDAB") == [0x0000, 0x3FC0]
    assert wire_words("f", 1.5, "BADC") == [0xC03F, 0x0000]
    assert wire_words("f", 1.5, "DCBA") == [0x0000, 0xC03F]


async def test_every_type_and_order_decodes() -> None:
    extra = [
        {"name": "bit3", "function": "holding", "address": 500, "type": "bool", "bit": 3},
        {"name": "bit15", "function": "input", "address": 7, "type": "bool", "bit": 15},
        {"name": "label", "function": "holding", "address": 510, "type": "string", "length": 4},
        {"name": "label_sw", "function": "holding", "address": 520, "type": "string",
         "length": 3, "order": "BADC"},
        {"name": "coil", "function": "coil", "address": 9, "type": "bool"},
        {"name": "di", "function": "discrete", "address": 1999, "type": "bool"},
        {"name": "scaled", "function": "input", "address": 0, "type": "int16", "scale": 0.1,
         "offset": -40},
    ]
    cfg = device(points=all_points() + extra, max_gap=200)
    async with serving(cfg) as (sim, [cfg]):
        for p in all_points():
            name, order = str(p["name"]).split("_")
            code, value = next((c, v) for n, c, v in CASES if n == name)
            sim.set_registers(1, Function.HOLDING, int(p["address"]),  # type: ignore[call-overload]
                              wire_words(code, value, order))
        sim.set_registers(1, Function.HOLDING, 500, [0b1000])
        sim.set_registers(1, Function.INPUT, 7, [0x8000])
        sim.set_registers(1, Function.HOLDING, 510, [0x4142, 0x4344, 0x4500, 0])  # "ABCDE"
        sim.set_registers(1, Function.HOLDING, 520, [0x4948, 0x2121, 0x0000])  # "HI!!" swapped
        sim.set_registers(1, Function.COIL, 9, [1])
        sim.set_registers(1, Function.DISCRETE, 1999, [1])
        sim.set_registers(1, Function.INPUT, 0, [(-150) & 0xFFFF])
        async with running([cfg]) as (_drv, ctx):
            await ctx.wait_for(lambda c: len(c.batches) >= 1, 5)
        got = {s.point: s for s in ctx.batches[0]}
        assert all(s.quality is Quality.GOOD for s in got.values()), got
        for p in all_points():
            name, _order = str(p["name"]).split("_")
            expected = next(v for n, _c, v in CASES if n == name)
            assert got[str(p["name"])].value == pytest.approx(expected), p
        assert got["bit3"].value is True and got["bit15"].value is True
        assert got["label"].value == "ABCDE"
        assert got["label_sw"].value == "HI!!"
        assert got["coil"].value is True and got["di"].value is True
        assert got["scaled"].value == pytest.approx(-55.0)
        assert latest(ctx, "coil").value is True


@pytest.mark.parametrize("name,code,value", CASES)
def test_encoder_is_decoder_inverse(name: str, code: str, value: float) -> None:
    orders = ORDERS_64 if dt.register_count(name, None) == 4 else ORDERS_32[:1]
    for order in orders:
        words = dt.make_encoder(name, dt.Order(order), length=None)(value)
        assert words == wire_words(code, value, order)
        decode = dt.make_decoder(name, dt.Order(order), bit=None, length=None)
        assert decode(dt.registers_to_bytes(words), 0) == pytest.approx(value)


@pytest.mark.parametrize(
    "point,message",
    [
        ({"type": "float32", "function": "coil"}, "cannot be read from coil"),
        ({"type": "bool", "function": "holding"}, "needs 'bit'"),
        ({"type": "int16", "bit": 2}, "'bit' only applies"),
        ({"type": "string"}, "needs 'length'"),
        ({"type": "int16", "order": "CDAB"}, "single register"),
        ({"type": "float32", "order": "GHEFCDAB"}, "64-bit"),
        ({"type": "string", "length": 2, "scale": 2}, "scale/offset"),
        ({"type": "complex64"}, "unknown data type"),
        ({"type": "uint16", "function": "input", "writable": True}, "read-only"),
        ({"type": "float32", "enum": {1: "x"}}, "integer type"),
    ],
)
def test_table_rejects_bad_points(point: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        device(points=[{"name": "p", "address": 0, **point}])
