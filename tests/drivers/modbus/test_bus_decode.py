"""The bus's reply decoder (drivers/modbus/client.py _quiet_decoder) gives exactly the replies
pymodbus's own decoder gives, without building the debug text pymodbus builds on every reply."""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.pdu import ModbusPDU
from pymodbus.pdu.decoders import DecodePDU

from drivers.modbus.client import make_client

from .support import device

CFG = device(points=[{"name": "p", "address": 0}])


def view(pdu: ModbusPDU | None) -> Any:
    if pdu is None:
        return None
    return (type(pdu), pdu.function_code, pdu.registers, pdu.bits, pdu.address, pdu.count,
            pdu.status, getattr(pdu, "exception_code", None))


def frames() -> Iterator[bytes]:
    for fc in (3, 4):
        for n in (0, 1, 2, 125):
            yield bytes([fc, 2 * n]) + struct.pack(f">{n}H", *range(n))
        yield bytes([fc, 10, 0, 1])  # byte count over the frame: short
        yield bytes([fc, 3, 0, 1, 0])  # odd byte count
        yield bytes([fc])  # no byte count at all
    yield bytes([1, 2, 0b1010_0101, 0b1])  # coils
    yield bytes([2, 1, 0xFF])  # discrete inputs
    yield bytes([5, 0, 7, 0xFF, 0])  # write coil
    yield bytes([6, 0, 7, 0, 42])  # write register
    yield bytes([16, 0, 7, 0, 3])  # write registers
    yield bytes([0x83, 2])  # exception code 2
    yield bytes([0x63, 1, 2])  # unknown function
    yield bytes([8, 0, 0, 0x12, 0x34])  # diagnostics: a sub-function
    yield b""


@pytest.fixture
async def decoders() -> tuple[Any, DecodePDU]:
    client = make_client(CFG)
    return client.ctx.framer.decoder.decode, DecodePDU(False)


async def test_every_kind_of_reply_decodes_as_the_library_decodes(
        decoders: tuple[Any, DecodePDU]) -> None:
    quiet, library = decoders
    for frame in frames():
        try:
            want = view(library.decode(frame))
        except Exception as err:  # the library's own failure must be ours too
            with pytest.raises(type(err)):
                quiet(frame)
            continue
        assert view(quiet(frame)) == want, frame


@settings(deadline=None, max_examples=200)
@given(st.sampled_from([3, 4]), st.lists(st.integers(0, 0xFFFF), max_size=125))
def test_register_replies_decode_as_the_library_decodes(fc: int, regs: list[int]) -> None:
    import asyncio

    async def both() -> tuple[Any, Any]:
        quiet = make_client(CFG).ctx.framer.decoder.decode
        frame = bytes([fc, 2 * len(regs)]) + struct.pack(f">{len(regs)}H", *regs)
        return view(quiet(frame)), view(DecodePDU(False).decode(frame))

    got, want = asyncio.run(both())
    assert got == want
    assert got[2] == regs


async def test_no_debug_text_is_built_unless_pymodbus_debug_logging_is_on(
        monkeypatch: pytest.MonkeyPatch, decoders: tuple[Any, DecodePDU]) -> None:
    quiet, _library = decoders
    built: list[str] = []
    real = ModbusPDU.__str__

    def counting(self: ModbusPDU) -> str:
        built.append(type(self).__name__)
        return real(self)

    monkeypatch.setattr(ModbusPDU, "__str__", counting)
    logger = logging.getLogger("pymodbus.logging")
    frame = bytes([3, 4, 0, 1, 0, 2])
    monkeypatch.setattr(logger, "level", logging.INFO)
    assert quiet(frame).registers == [1, 2]
    assert quiet(bytes([1, 1, 1])).bits[0] is True
    assert built == []
    logger.setLevel(logging.DEBUG)  # someone debugs pymodbus: its own path, debug line and all
    try:
        assert quiet(frame).registers == [1, 2]
    finally:
        logger.setLevel(logging.NOTSET)
    assert built == ["ReadHoldingRegistersResponse"]
