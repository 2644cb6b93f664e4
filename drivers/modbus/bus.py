"""One Modbus connection (a TCP socket or a serial line) shared by every unit id on it.

This module is the ONE place that talks to pymodbus: every library error is translated here
into a :class:`PollFailed` subclass (``raise ... from err``), so the poller and the write path
reason about four outcomes only: the bus is down, the device did not answer in time, the
device answered with an exception code, or the reply was garbage.

Requests never interleave: a lock is held from sending a request until its reply (or timeout),
so RS-485 devices and serial gateways see one transaction at a time. pymodbus's own retries and
auto-reconnect are turned off; the poller owns both, per device.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import struct
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU

from drivers.base import PollFailed
from drivers.modbus.config import ModbusDeviceConfig
from drivers.modbus.datatypes import Function
from gateway.pollstats import PollStats

log = logging.getLogger(__name__)

#: Slack over the device timeout before we give up on a connect (a guard, not a timeout).
_GUARD = 0.5


class BusDown(PollFailed):
    """The connection itself is gone (refused, closed, serial port missing)."""


class RequestTimeout(PollFailed):
    """The device did not answer in time."""


class ExceptionReply(PollFailed):
    """The device answered with a Modbus exception code (2 = illegal address, ...)."""

    def __init__(self, device: str, message: str, code: int) -> None:
        super().__init__(device, message)
        self.code = code


class BadReply(PollFailed):
    """A reply arrived but does not fit the request (garbage, wrong length, wrong type)."""


def make_client(cfg: ModbusDeviceConfig) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
    """Build the pymodbus client for a bus from the settings of its first device."""
    common: dict[str, Any] = {
        "name": cfg.bus_key,
        "reconnect_delay": 0,  # we reconnect ourselves, with our backoff
        "timeout": cfg.timeout,
        "retries": 0,
    }
    client: AsyncModbusTcpClient | AsyncModbusSerialClient
    if cfg.transport == "rtu":
        assert cfg.serial is not None
        s = cfg.serial
        client = AsyncModbusSerialClient(
            s.port, framer=FramerType.RTU, baudrate=s.baudrate, parity=s.parity,
            stopbits=s.stopbits, bytesize=s.bytesize, **common,
        )
    else:
        assert cfg.host is not None
        framer = FramerType.SOCKET if cfg.transport == "tcp" else FramerType.RTU
        client = AsyncModbusTcpClient(cfg.host, port=cfg.port, framer=framer, **common)
    # Never let pymodbus close a shared connection because one unit id stopped answering.
    client.set_max_no_responses(1 << 30)
    _guard_framer(client)
    _quiet_decoder(client)
    return client


def _guard_framer(client: AsyncModbusTcpClient | AsyncModbusSerialClient) -> None:
    """Turn an undecodable frame into a failed request instead of a dead connection.

    pymodbus raises from ``data_received`` when a frame does not decode, and asyncio then
    aborts the transport: one garbage reply would cost every unit on the bus a reconnect.
    We drop the buffer and fail the pending request, which the poller marks bad.
    """
    tm = client.ctx
    handle = tm.framer.handleFrame

    def guarded(data: bytes, exp_devid: int, exp_tid: int) -> tuple[int, Any]:
        try:
            return handle(data, exp_devid, exp_tid)
        except ModbusException as err:
            future = tm.response_future
            if not future.done():
                future.set_exception(ModbusException(f"undecodable reply ({err})"))
            return len(data), None

    tm.framer.handleFrame = guarded  # type: ignore[method-assign]


def _quiet_decoder(client: AsyncModbusTcpClient | AsyncModbusSerialClient) -> None:
    """Decode replies without the work pymodbus does for a debug line nobody reads.

    pymodbus's ``DecodePDU.decode`` builds ``str(pdu)`` (the whole register list as text) as
    an argument of ``Log.debug`` on every reply, before the log level is checked, and its
    register replies unpack one register per ``struct`` call. This replaces the ``decode``
    of this client's decoder instance only (nothing global): while the ``pymodbus`` logger is
    not enabled for DEBUG, a plain reply (no sub-function) is built as the library builds it
    but without the debug text, and a register reply (function 3 or 4) unpacks in one call.
    Everything else - exception replies, sub-functions, unknown codes, a reply the fast path
    cannot decode, and any reply while pymodbus debug logging is on - goes to the library's
    own ``decode``, so its warnings and debug lines are unchanged.
    ``tests/drivers/modbus/test_bus_decode.py`` checks both paths give equal replies.
    """
    decoder = client.ctx.framer.decoder
    library = decoder.decode
    table, inx = decoder.pdu_table, decoder.pdu_inx
    registers = {3, 4}
    debug_on = functools.partial(_PYMODBUS_LOG.isEnabledFor, logging.DEBUG)

    def decode(frame: bytes) -> ModbusPDU | None:
        if not frame or frame[0] & 0x80 or debug_on():
            return library(frame)
        pdu_class = table.get(frame[0], (None, None))[inx]
        if pdu_class is None:
            return library(frame)
        pdu = pdu_class()
        try:
            if frame[0] in registers:
                size = frame[1]
                if size >= len(frame) - 1:
                    return library(frame)  # short: the library says so (and returns None)
                pdu.registers = list(struct.unpack_from(f">{size // 2}H", frame, 2))
            else:
                pdu.decode(frame[1:])
        except (ModbusException, ValueError, IndexError, struct.error):
            return library(frame)
        if pdu.sub_function_code >= 0:
            return library(frame)
        return pdu

    decoder.decode = decode  # type: ignore[method-assign]


_PYMODBUS_LOG = logging.getLogger("pymodbus.logging")


class Bus:
    """A serialized request channel to the unit ids behind one connection.

    Every request on the wire (each attempt of a retried one, writes too) counts once in the
    poll statistics of its device (:attr:`stats`, by device id; the driver fills it from
    ``ctx.poll_stats``), with its latency from ``monotonic``. A device without stats (the
    CLI) counts nothing.
    """

    def __init__(self, key: str, cfg: ModbusDeviceConfig,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.key = key
        self.cfg = cfg
        self.stats: dict[str, PollStats] = {}
        self._monotonic = monotonic
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self.lock = asyncio.Lock()
        self._connect_lock = asyncio.Lock()
        self.requests = 0
        self._frame_delay = cfg.serial.inter_frame_delay if cfg.serial else 0.0

    @property
    def client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        """Built on first use: pymodbus clients need a running event loop."""
        if self._client is None:
            self._client = make_client(self.cfg)
        return self._client

    @property
    def connected(self) -> bool:
        return self._client is not None and bool(self._client.connected)

    async def connect(self) -> None:
        """Connect unless already connected (the poller and a write may both ask)."""
        async with self._connect_lock:
            if not self.client.connected:
                await self._connect()

    async def _connect(self) -> None:
        try:
            ok = await asyncio.wait_for(self.client.connect(), self.cfg.timeout + _GUARD)
        except Exception as err:  # boundary: socket, pyserial and termios errors all land here
            self.client.close()
            raise BusDown(self.key, f"cannot connect: {type(err).__name__}: {err}") from err
        if not ok:
            raise BusDown(self.key, "cannot connect (refused or no such port)")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Hold the line for several requests (read-modify-write of a bit)."""
        async with self.lock:
            yield

    async def read(
        self, dev: ModbusDeviceConfig, function: Function, address: int, count: int
    ) -> list[int] | list[bool]:
        async with self.lock:
            return await self.read_unlocked(dev, function, address, count)

    async def read_unlocked(
        self, dev: ModbusDeviceConfig, function: Function, address: int, count: int
    ) -> list[int] | list[bool]:
        """Read one block; the caller holds :attr:`lock`."""
        method = {
            Function.HOLDING: self.client.read_holding_registers,
            Function.INPUT: self.client.read_input_registers,
            Function.COIL: self.client.read_coils,
            Function.DISCRETE: self.client.read_discrete_inputs,
        }[function]
        what = f"{function.value} {address}+{count} unit {dev.unit}"
        check = _bits_check if function.is_bit else _registers_check
        reply = await self._call(dev, what, method, address, count=count, device_id=dev.unit,
                                 check=check)
        if function.is_bit:
            return [bool(b) for b in reply.bits[:count]]
        return reply.registers

    async def write_registers_unlocked(
        self, dev: ModbusDeviceConfig, address: int, values: Sequence[int]
    ) -> None:
        what = f"write holding {address}+{len(values)} unit {dev.unit}"
        if len(values) == 1:
            await self._call(dev, what, self.client.write_register, address, values[0],
                             device_id=dev.unit)
        else:
            await self._call(dev, what, self.client.write_registers, address, list(values),
                             device_id=dev.unit)

    async def write_coil_unlocked(self, dev: ModbusDeviceConfig, address: int, value: bool) -> None:
        what = f"write coil {address} unit {dev.unit}"
        await self._call(dev, what, self.client.write_coil, address, value, device_id=dev.unit)

    async def _call(self, dev: ModbusDeviceConfig, what: str, method: Any, *args: Any,
                    check: Callable[[str, str, Any, int], None] | None = None,
                    **kwargs: Any) -> Any:
        """Send one request with the device's timeout and retries; translate every error.

        ``check(device, what, reply, count)`` raises :class:`BadReply` for a reply that does
        not fit (counted as ``bad_reply``, not retried).
        """
        self.client.ctx.comm_params.timeout_connect = dev.timeout
        stats = self.stats.get(dev.id)
        monotonic = self._monotonic
        last: PollFailed | None = None
        for _attempt in range(dev.retries + 1):
            if not self.client.connected:
                if stats is not None:
                    stats.error("connection", f"{what}: not connected")
                raise BusDown(self.key, f"{what}: not connected")
            self.requests += 1
            started = monotonic()
            try:
                # pymodbus bounds the wait itself (``timeout_connect``, set above, is its reply
                # timeout): no second wait_for here, which cost a task, a future and a timer
                # per request. A reply that never comes raises ModbusIOException after it.
                reply = await method(*args, **kwargs)
                latency = monotonic() - started
            except ConnectionException as err:
                down = BusDown(self.key, f"{what}: connection lost: {err}")
                if stats is not None:
                    stats.error("connection", down.message)
                raise down from err
            except (TimeoutError, ModbusIOException) as err:
                if not self.client.connected:
                    if stats is not None:
                        stats.error("connection", f"{what}: connection lost")
                    raise BusDown(self.key, f"{what}: connection lost") from err
                last = RequestTimeout(dev.id, f"{what}: no reply within {dev.timeout:g} s")
                last.__cause__ = err
                if stats is not None:
                    stats.error("timeout", last.message)
                continue
            except (ModbusException, ValueError, IndexError, KeyError, TypeError) as err:
                last = BadReply(dev.id, f"{what}: malformed reply: {err}")
                last.__cause__ = err
                if stats is not None:
                    stats.error("bad_reply", last.message, monotonic() - started)
                continue
            finally:
                if self._frame_delay:
                    await asyncio.sleep(self._frame_delay)
            if reply is None:
                last = BadReply(dev.id, f"{what}: empty reply")
                if stats is not None:
                    stats.error("bad_reply", last.message, latency)
                continue
            if reply.isError():
                code = int(getattr(reply, "exception_code", 0) or 0)
                refused = ExceptionReply(dev.id, f"{what}: exception code {code}", code)
                if stats is not None:
                    stats.error("exception", refused.message, latency)
                raise refused
            if check is not None:
                try:
                    check(dev.id, what, reply, kwargs["count"])
                except BadReply as bad:
                    if stats is not None:
                        stats.error("bad_reply", bad.message, latency)
                    raise
            if stats is not None:
                stats.ok(latency)
            return reply
        assert last is not None
        raise last


def _bits_check(device: str, what: str, reply: Any, count: int) -> None:
    bits = getattr(reply, "bits", None)
    if not isinstance(bits, list) or len(bits) < count:
        raise BadReply(device, f"{what}: reply has {_len(bits)} bits, expected {count}")


def _registers_check(device: str, what: str, reply: Any, count: int) -> None:
    regs = getattr(reply, "registers", None)
    if not isinstance(regs, list) or len(regs) != count:
        raise BadReply(device, f"{what}: reply has {_len(regs)} registers, expected {count}")


def _len(value: object) -> str:
    return str(len(value)) if isinstance(value, list) else "no"
