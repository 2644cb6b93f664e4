"""The bus's own request path (``Bus._execute``) against pymodbus's (``client.read_*``).

``Bus.read_unlocked`` sends a read through ``Bus._execute``, a lean copy of pymodbus 3.16's
``TransactionManager.execute`` (no second lock, no ``wait_for``). Each test here sends the
same requests to the same raw server reply by reply, once through the library's path and once
through ours, both inside ``Bus._call`` (which turns the outcome into a reply or one of the
bus's errors), and requires the same outcomes: values, error kinds and messages, and the
counted statistics. A pymodbus upgrade that changes what its path does fails here.
"""

from __future__ import annotations

import asyncio
import copy
import struct
from typing import Any

import pymodbus
import pytest

from drivers.base import PollFailed
from drivers.modbus.bus import BadReply, Bus, _registers_check
from drivers.modbus.datatypes import Function, Words, registers_to_bytes
from gateway.pollstats import PollStats

from .support import device

UNIT = 3


class Server:
    """Answers reads of holding registers as told by ``modes``, one mode per request."""

    def __init__(self, modes: list[str]) -> None:
        self.modes = modes
        self.counter = 0
        self.server: asyncio.Server | None = None
        self.port = 0
        self.held: list[bytes] = []

    async def __aenter__(self) -> Server:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    def reply(self, tid: int, unit: int, count: int, fc: int = 3) -> bytes:
        self.counter += 1
        pdu = struct.pack(">BB", fc, 2 * count) + struct.pack(f">{count}H",
                                                              *[self.counter] * count)
        return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readexactly(7)
                tid, _pid, length, unit = struct.unpack(">HHHB", head)
                body = await reader.readexactly(length - 1)
                _fc, _addr, count = struct.unpack(">BHH", body[:5])
                mode = self.modes.pop(0) if self.modes else "good"
                for late in self.held:  # a reply held back from the request before
                    writer.write(late)
                self.held.clear()
                if mode == "good":
                    writer.write(self.reply(tid, unit, count))
                elif mode == "silent":
                    pass
                elif mode == "late":  # answered only after the next request came
                    self.held.append(self.reply(tid, unit, count))
                elif mode == "exception":
                    writer.write(struct.pack(">HHHBBB", tid, 0, 3, unit, 0x83, 2))
                elif mode == "other_unit":
                    writer.write(self.reply(tid, unit + 1, count))
                elif mode == "other_tid":
                    writer.write(self.reply((tid + 7) % 65000, unit, count))
                elif mode == "short":
                    writer.write(self.reply(tid, unit, count - 1))
                elif mode == "garbage":
                    writer.write(b"\xde\xad\xbe\xef" * 5)
                elif mode == "bad_pdu":
                    writer.write(struct.pack(">HHHB", tid, 0, 3, unit) + b"\x63\x01")
                elif mode == "wrong_function":  # a reply of input registers to a holding read
                    writer.write(self.reply(tid, unit, count, fc=4))
                elif mode == "split":  # the reply in two segments: the buffer joins them
                    whole = self.reply(tid, unit, count)
                    writer.write(whole[:5])
                    await writer.drain()
                    await asyncio.sleep(0.01)
                    writer.write(whole[5:])
                elif mode == "cut":
                    writer.close()
                    return
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass


async def outcomes(modes: list[str], library: bool) -> tuple[list[Any], dict[str, Any]]:
    """The outcome of each request (one per mode) and the device's statistics."""
    async with Server(list(modes)) as server:
        dev = device(port=server.port, unit=UNIT, timeout=0.15, retries=0,
                     points=[{"name": "a", "address": 0, "type": "uint16"}])
        bus = Bus("test", dev)
        stats = bus.stats[dev.id] = PollStats(dev.id, lambda: 0)
        if library:  # the library's receive path too, not the bus's (_lean_receive)
            del bus.client.ctx.data_received
        await bus.connect()
        out: list[Any] = []
        try:
            for _ in modes:
                try:
                    if library:
                        reply = await bus._call(
                            dev, (Function.HOLDING, 0, 2), bus.client.read_holding_registers,
                            (0,), {"count": 2, "device_id": UNIT}, _registers_check, 2)
                        out.append(("ok", reply.registers))
                    else:
                        out.append(("ok", await bus.read_unlocked(dev, Function.HOLDING, 0, 2)))
                except PollFailed as err:
                    out.append((type(err).__name__, err.message))
                    if not bus.connected:
                        await bus.connect()
        finally:
            bus.close()
        snap = stats.snapshot()
        return out, {"requests": snap["requests"], "errors": snap["errors"]}


def test_the_bus_path_is_a_copy_of_this_pymodbus_release() -> None:
    """``Bus._execute`` copies ``TransactionManager.execute`` of pymodbus 3.16 (pyproject pins
    ``>=3.16,<3.17``). On another release, compare the two again, then update this pin."""
    assert pymodbus.__version__.startswith("3.16."), pymodbus.__version__


SEQUENCES = [
    ["good", "good"],
    ["silent", "good"],
    ["late", "good", "good"],
    ["exception", "good"],
    ["other_unit", "good"],
    ["other_tid", "good"],
    ["short", "good"],
    ["garbage", "good"],
    ["bad_pdu", "good"],
    ["wrong_function", "good"],
    ["cut", "good"],
    ["split", "good"],
]


@pytest.mark.parametrize("modes", SEQUENCES, ids=["-".join(m) for m in SEQUENCES])
async def test_the_bus_path_gives_the_library_paths_outcomes(modes: list[str]) -> None:
    ours, ours_stats = await outcomes(modes, library=False)
    theirs, their_stats = await outcomes(modes, library=True)
    assert ours == theirs
    assert ours_stats == their_stats
    assert ours[-1][0] == "ok"  # and the bus reads on after it


async def test_a_reply_that_comes_late_is_never_taken_for_the_next_one() -> None:
    ours, _ = await outcomes(["late", "good", "good"], library=False)
    assert ours[0][0] == "RequestTimeout"
    # the held reply (counter 1) arrives before the second request's (counter 2)
    assert ours[1:] == [("ok", [2, 2]), ("ok", [3, 3])]


async def test_the_bus_keeps_no_reply_after_a_read() -> None:
    """pymodbus keeps the last reply (``last_pdu``, and the reply's future) until the next
    request: about 4.5 KB a device at 125 registers. The bus lets it go."""
    async with Server([]) as server:
        dev = device(port=server.port, unit=UNIT, timeout=0.5,
                     points=[{"name": "a", "address": 0, "type": "uint16"}])
        bus = Bus("test", dev)
        await bus.connect()
        try:
            assert await bus.read(dev, Function.HOLDING, 0, 125) == [1] * 125
            tm = bus.client.ctx
            assert tm.last_pdu is None
            assert tm.response_future.done() and tm.response_future.result() is None
        finally:
            bus.close()


async def test_a_tcp_reply_keeps_its_bytes_for_the_decoder() -> None:
    """A register reply comes as :class:`Words`: the registers, and the reply's bytes, which
    ``registers_to_bytes`` hands on instead of packing the list again; a plain list packs."""
    async with Server(["good", "split"]) as server:
        dev = device(port=server.port, unit=UNIT, timeout=0.5,
                     points=[{"name": "a", "address": 0, "type": "uint16"}])
        bus = Bus("test", dev)
        await bus.connect()
        try:
            for counter in (1, 2):  # one frame (the bus's receive), two segments (pymodbus's)
                words = await bus.read(dev, Function.HOLDING, 0, 125)
                assert type(words) is Words and words == [counter] * 125
                assert registers_to_bytes(words) is words.raw
                assert words.raw == struct.pack(">125H", *[counter] * 125)
        finally:
            bus.close()
    assert registers_to_bytes([1, 65535]) == b"\x00\x01\xff\xff"
    copied = copy.copy(words)  # a copy without the reply's bytes, and a list grown after
    assert type(copied) is Words and registers_to_bytes(copied) == words.raw
    words.append(7)
    assert registers_to_bytes(words) == struct.pack(">126H", *[2] * 125, 7)


async def test_a_poll_reads_a_tcp_reply_as_its_bytes() -> None:
    """``read_block`` (the poller's read) hands a one-frame reply's bytes on as they came, no
    register list made; a reply the library took (two segments) comes as its list, whose
    bytes the decoder gets the same."""
    async with Server(["good", "split", "short"]) as server:
        dev = device(port=server.port, unit=UNIT, timeout=0.5, retries=0,
                     points=[{"name": "a", "address": 0, "type": "uint16"}])
        bus = Bus("test", dev)
        await bus.connect()
        try:
            raw = await bus.read_block(dev, Function.HOLDING, 0, 125)
            assert type(raw) is bytes and raw == struct.pack(">125H", *[1] * 125)
            words = await bus.read_block(dev, Function.HOLDING, 0, 125)
            assert type(words) is Words and words == [2] * 125
            assert registers_to_bytes(raw) is raw
            with pytest.raises(BadReply, match="reply has 124 registers, expected 125"):
                await bus.read_block(dev, Function.HOLDING, 0, 125)
        finally:
            bus.close()
