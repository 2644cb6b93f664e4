"""A hostile Modbus TCP server (raw asyncio): garbage, short, late and cut replies.

The driver must mark values bad, never decode a stale reply as fresh, and keep polling.
"""

from __future__ import annotations

import asyncio
import struct

import pytest

from gateway.model import Quality
from tests.support.wait import wait_until

from .support import device, running

POINTS = [{"name": "a", "address": 0, "type": "uint16"}, {"name": "b", "address": 1,
                                                         "type": "uint16"}]


class HostileServer:
    def __init__(self) -> None:
        self.mode = "good"
        self.counter = 0
        self.requests = 0
        self.server: asyncio.Server | None = None
        self.port = 0
        self.pending: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for t in self.pending:
            t.cancel()
        assert self.server is not None
        self.server.close()

    def reply(self, tid: int, unit: int, count: int) -> bytes:
        self.counter += 1
        regs = [self.counter] * count
        pdu = struct.pack(">BB", 3, 2 * count) + struct.pack(f">{count}H", *regs)
        return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readexactly(7)
                tid, _pid, length, unit = struct.unpack(">HHHB", head)
                body = await reader.readexactly(length - 1)
                _fc, _addr, count = struct.unpack(">BHH", body[:5])
                self.requests += 1
                mode = self.mode
                if mode == "good":
                    writer.write(self.reply(tid, unit, count))
                elif mode == "garbage":
                    writer.write(b"\xde\xad\xbe\xef" * 5)
                elif mode == "bad_pdu":  # valid MBAP, nonsense function code
                    writer.write(struct.pack(">HHHB", tid, 0, 3, unit) + b"\x63\x01")
                elif mode == "short":  # one register fewer than asked
                    writer.write(self.reply(tid, unit, count - 1))
                elif mode == "late":
                    data = self.reply(tid, unit, count)
                    self.pending.append(asyncio.create_task(self._later(writer, data)))
                elif mode == "cut":
                    writer.close()
                    return
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    async def _later(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        # Late: only once the client gave up on this request and sent another one.
        asked = self.requests
        await wait_until(lambda: self.requests > asked, 10, what="a newer request")
        writer.write(data)


@pytest.fixture
async def hostile() -> HostileServer:
    server = HostileServer()
    await server.start()
    yield server  # type: ignore[misc]
    await server.stop()


@pytest.mark.parametrize("mode", ["garbage", "bad_pdu", "short", "late", "cut"])
async def test_hostile_reply_marks_bad_and_polling_survives(
    hostile: HostileServer, mode: str
) -> None:
    cfg = device(points=POINTS, port=hostile.port, interval=0.1, timeout=0.25,
                 reconnect_max=0.3)
    async with running([cfg]) as (_drv, ctx):
        await ctx.wait_for(lambda c: len(c.batches) >= 1, 5)
        assert {s.quality for s in ctx.batches[-1]} == {Quality.GOOD}
        hostile.mode = mode
        n = len(ctx.batches)
        if mode == "cut":
            await ctx.wait_for(lambda c: c.status_of("dev") == "offline", 5)
        else:
            await ctx.wait_for(
                lambda c: any(s.quality is Quality.BAD for b in c.batches[n:] for s in b), 5)
        bad = [s for b in ctx.batches[n:] for s in b if s.quality is Quality.BAD]
        assert all(s.value is None for s in bad)
        hostile.mode = "good"
        # let late replies land while good ones flow
        await wait_until(lambda: all(t.done() for t in hostile.pending), 5,
                         what="the late replies sent")
        m = len(ctx.batches)
        await ctx.wait_for(lambda c: len(c.batches) >= m + 3, 5)
        fresh = ctx.batches[-3:]
        for batch in fresh:
            assert {s.quality for s in batch} == {Quality.GOOD}, batch
            # both points of one reply carry the same counter: no half-stale decode
            assert batch[0].value == batch[1].value
        values = [b[0].value for b in fresh]
        assert values == sorted(values) and len(set(values)) == 3  # each cycle a new reply
