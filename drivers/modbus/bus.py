"""One Modbus connection (a TCP socket or a serial line) shared by every unit id on it.

This module is the ONE place that sends requests through pymodbus (its client is made and
fitted in :mod:`drivers.modbus.client`): every library error is translated here into a
:class:`PollFailed` subclass (``raise ... from err``), so the poller and the write path reason
about four outcomes only: the bus is down, the device did not answer in time, the
device answered with an exception code, or the reply was garbage.

Requests never interleave: a lock is held from sending a request until its reply (or timeout),
so RS-485 devices and serial gateways see one transaction at a time. pymodbus's own retries and
auto-reconnect are turned off; the poller owns both, per device.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.logging import Log
from pymodbus.pdu import ModbusPDU
from pymodbus.pdu.bit_message import ReadCoilsRequest, ReadDiscreteInputsRequest
from pymodbus.pdu.register_message import ReadHoldingRegistersRequest, ReadInputRegistersRequest

from drivers.base import PollFailed
from drivers.modbus.client import MBAP_READ, PYMODBUS_LOG, make_client, registers_of
from drivers.modbus.config import ModbusDeviceConfig
from drivers.modbus.datatypes import Function
from gateway.pollstats import PollStats

log = logging.getLogger(__name__)

#: Slack over the device timeout before we give up on a connect (a guard, not a timeout).
_GUARD = 0.5
_NO_KWARGS: dict[str, Any] = {}
#: ``check(device, what, reply, count)``: raises BadReply for a reply that does not fit.
Check = Callable[[ModbusDeviceConfig, "str | tuple[Function, int, int]", Any, int], None]


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
        self._tm: Any = None  # the client's TransactionManager, see _build and _execute
        self._loop: asyncio.AbstractEventLoop | None = None
        self._answered: asyncio.Future[None] | None = None
        self._params: Any = None  # the client's CommParams (its reply timeout), see _build
        self._lean = False
        #: function -> (pymodbus's request class, the reply check, reads bits)
        self._reads: dict[Function, tuple[Any, Check, bool]] = {}
        self.lock = asyncio.Lock()
        self._connect_lock = asyncio.Lock()
        self.requests = 0
        self._frame_delay = cfg.serial.inter_frame_delay if cfg.serial else 0.0

    @property
    def client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        """Built on first use: pymodbus clients need a running event loop."""
        if self._client is None:
            self._client = self._build()
        return self._client

    def _build(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        """Make the client and what every request needs of it, looked up once (the client
        object lives as long as the bus: a reconnect reuses it)."""
        client = make_client(self.cfg)
        self._tm = client.ctx
        self._params = client.ctx.comm_params
        self._loop = asyncio.get_running_loop()  # the client's too (its futures live there)
        self._answered = self._loop.create_future()  # see _execute
        self._answered.set_result(None)
        #: Modbus TCP without local echo: _execute sends reads itself (see there)
        self._lean = self.cfg.transport == "tcp" and not self._params.handle_local_echo
        self._reads = {
            Function.HOLDING: (ReadHoldingRegistersRequest, _registers_check, False),
            Function.INPUT: (ReadInputRegistersRequest, _registers_check, False),
            Function.COIL: (ReadCoilsRequest, _bits_check, True),
            Function.DISCRETE: (ReadDiscreteInputsRequest, _bits_check, True),
        }
        return client

    @property
    def connected(self) -> bool:
        """The client's ``connected`` (its transaction manager has a transport), read
        directly: the poller asks before every request."""
        return self._tm is not None and bool(self._tm.transport)

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
        lock = self.lock  # acquire and release, not ``async with``: two coroutines fewer a read
        await lock.acquire()
        try:
            return await self.read_unlocked(dev, function, address, count)
        finally:
            lock.release()

    async def read_block(
        self, dev: ModbusDeviceConfig, function: Function, address: int, count: int
    ) -> list[int] | list[bool] | bytes:
        """:meth:`read`, but a register reply may come as its bytes (big-endian, as on the
        wire) instead of a list: Modbus TCP's usual reply does (see
        :func:`~drivers.modbus.client.registers_of`). The poller's decoder takes either and
        unpacks the bytes once, into the points' values."""
        lock = self.lock
        await lock.acquire()
        try:
            return await self.read_unlocked(dev, function, address, count, True)
        finally:
            lock.release()

    async def read_unlocked(
        self, dev: ModbusDeviceConfig, function: Function, address: int, count: int,
        as_bytes: bool = False,
    ) -> list[int] | list[bool] | Any:
        """Read one block; the caller holds :attr:`lock`. With ``as_bytes``, a register
        reply whose bytes the bus kept comes as those bytes (see :meth:`read_block`)."""
        if self._client is None:
            self._client = self._build()
        request, check, is_bit = self._reads[function]
        reply = await self._call(dev, (function, address, count), self._execute,
                                 (request, address, count, dev.unit), _NO_KWARGS, check, count)
        if is_bit:
            return [bool(b) for b in reply.bits[:count]]
        if as_bytes:
            raw: bytes | None = getattr(reply, "raw", None)
            if raw is not None:
                return raw
        return registers_of(reply)

    async def write_registers_unlocked(
        self, dev: ModbusDeviceConfig, address: int, values: Sequence[int]
    ) -> None:
        what = f"write holding {address}+{len(values)} unit {dev.unit}"
        unit = {"device_id": dev.unit}
        if len(values) == 1:
            await self._call(dev, what, self.client.write_register, (address, values[0]), unit)
        else:
            await self._call(dev, what, self.client.write_registers, (address, list(values)),
                             unit)

    async def write_coil_unlocked(self, dev: ModbusDeviceConfig, address: int, value: bool) -> None:
        what = f"write coil {address} unit {dev.unit}"
        await self._call(dev, what, self.client.write_coil, (address, value),
                         {"device_id": dev.unit})

    async def _execute(self, request: type[ModbusPDU], address: int, count: int,
                       unit: int) -> ModbusPDU:
        """Send one read (``request``: pymodbus's request class of its function) and wait
        for its reply: pymodbus's ``TransactionManager.execute`` (3.16) for a request of ours,
        with what it does that we do not need left out.

        It uses the library's own request objects, framer, transport and reply routing
        (``pdu_send``, ``callback_data`` filling ``response_future``, the frame checks); left
        out are its lock (:attr:`lock` already serializes the bus), its retry loop (retries
        are 0: ours run in :meth:`_call`), the mixin and client frames, and its
        ``asyncio.wait_for``, which costs a second future and a callback round through the
        loop per reply: a timer here fails the reply's future itself instead. Outcomes are
        the library's: not connected raises ConnectionException, no reply in
        ``timeout_connect`` seconds raises TimeoutError (the library wraps it into the
        ModbusIOException it raises after its retries; :meth:`_call` treats both as a
        timeout), a reply of another unit or transaction raises ModbusIOException.
        On Modbus TCP the request's frame is built and written here, without a request
        object (the library's ``pdu_send`` and ``send`` do the same with more calls), and the
        reply comes through ``_lean_receive`` (:mod:`drivers.modbus.client`).
        ``tests/drivers/modbus/test_bus_execute.py`` holds the two paths to the same
        outcomes, so a pymodbus upgrade that changes the library's path fails there.
        """
        tm = self._tm
        if not tm.transport:
            raise ConnectionException(f"Not connected[{self._client!s}]")
        tm.recv_buffer = b""
        loop = self._loop  # not get_running_loop(): on 3.11 that is a getpid() system call
        assert loop is not None
        reply = tm.response_future = loop.create_future()
        function_code = request.function_code
        if self._lean and not PYMODBUS_LOG.isEnabledFor(logging.DEBUG):
            # Modbus TCP: the frame pymodbus's ``pdu_send`` builds from the request object
            # (``buildFrame``: MBAP header, function, address, count) and sends (``send``),
            # made in one call, without the object.
            tid = tm.next_tid = 1 if tm.next_tid >= 65000 else tm.next_tid + 1  # getNextTID
            tm.request_dev_id = unit
            tm.request_transaction_id = tid
            frame = MBAP_READ.pack(tid, 0, 6, unit, function_code, address, count)
            if PYMODBUS_LOG.isEnabledFor(logging.ERROR):  # see client._lean_receive
                Log.transport_dump(Log.SEND_DATA, frame, None)
            tm.transport.write(frame)
        else:
            pdu = request(address=address, count=count, dev_id=unit)
            tid = pdu.transaction_id = tm.getNextTID()
            tm.pdu_send(pdu)
        expire = loop.call_later(self._params.timeout_connect, _expire, reply)
        try:
            response: ModbusPDU = await reply
        finally:
            expire.cancel()
            # The library keeps the reply (about 4.5 KB at 125 registers) in ``last_pdu`` and
            # in the future until the next request: let it go with the caller's decode. An
            # already-done future makes a late reply "without a corresponding request", as
            # the expired future would.
            tm.response_future = self._answered
            tm.last_pdu = None
        tm.count_until_disconnect = tm.max_until_disconnect
        if unit and response.dev_id != unit:
            raise ModbusIOException(
                f"ERROR: request uses device id={unit} but received "
                f"{response.dev_id}.", function_code=function_code,
                transaction_id=tid, dev_id=unit)
        if response.transaction_id and response.transaction_id != tid:
            raise ModbusIOException(
                f"ERROR: request uses transaction id={tid} but received "
                f"{response.transaction_id}.", function_code=function_code,
                transaction_id=tid, dev_id=unit)
        response.retries = 0
        return response

    async def _call(self, dev: ModbusDeviceConfig, what: str | tuple[Function, int, int],
                    method: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                    check: Check | None = None,
                    count: int = 0) -> Any:
        """Send one request with the device's timeout and retries; translate every error.

        ``what`` names the request in error messages: a text, or ``(function, address,
        count)`` of a read, made into text only when an error needs it (a poll's requests
        mostly succeed, and this runs on each). ``check`` raises :class:`BadReply` for a
        reply that does not fit (counted as ``bad_reply``, not retried).
        """
        tm = self._tm  # the client is built: ``method`` is one of its own, or _execute
        self._params.timeout_connect = dev.timeout  # pymodbus's reply timeout, per device
        stats = self.stats.get(dev.id)
        monotonic = self._monotonic
        last: PollFailed | None = None
        for _attempt in range(dev.retries + 1):
            if not tm.transport:  # the client's ``connected``
                text = _describe(what, dev.unit)
                if stats is not None:
                    stats.error("connection", f"{text}: not connected")
                raise BusDown(self.key, f"{text}: not connected")
            self.requests += 1
            started = monotonic()
            try:
                # pymodbus bounds the wait itself (``timeout_connect``, set above, is its reply
                # timeout): no second wait_for here, which cost a task, a future and a timer
                # per request. A reply that never comes raises ModbusIOException after it.
                reply = await method(*args, **kwargs)
                latency = monotonic() - started
            except ConnectionException as err:
                down = BusDown(self.key, f"{_describe(what, dev.unit)}: connection lost: {err}")
                if stats is not None:
                    stats.error("connection", down.message)
                raise down from err
            except (TimeoutError, ModbusIOException) as err:
                text = _describe(what, dev.unit)
                if not tm.transport:
                    if stats is not None:
                        stats.error("connection", f"{text}: connection lost")
                    raise BusDown(self.key, f"{text}: connection lost") from err
                last = RequestTimeout(dev.id, f"{text}: no reply within {dev.timeout:g} s")
                last.__cause__ = err
                if stats is not None:
                    stats.error("timeout", last.message)
                continue
            except (ModbusException, ValueError, IndexError, KeyError, TypeError) as err:
                last = BadReply(dev.id, f"{_describe(what, dev.unit)}: malformed reply: {err}")
                last.__cause__ = err
                if stats is not None:
                    stats.error("bad_reply", last.message, monotonic() - started)
                continue
            finally:
                if self._frame_delay:
                    await asyncio.sleep(self._frame_delay)
            if reply is None:
                last = BadReply(dev.id, f"{_describe(what, dev.unit)}: empty reply")
                if stats is not None:
                    stats.error("bad_reply", last.message, latency)
                continue
            if reply.isError():
                code = int(getattr(reply, "exception_code", 0) or 0)
                refused = ExceptionReply(
                    dev.id, f"{_describe(what, dev.unit)}: exception code {code}", code)
                if stats is not None:
                    stats.error("exception", refused.message, latency)
                raise refused
            if check is not None:
                try:
                    check(dev, what, reply, count)
                except BadReply as bad:
                    if stats is not None:
                        stats.error("bad_reply", bad.message, latency)
                    raise
            if stats is not None:
                stats.ok(latency)
            return reply
        assert last is not None
        raise last


def _expire(reply: asyncio.Future[Any]) -> None:
    """The reply did not come in time (a request's timer, see ``Bus._execute``)."""
    if not reply.done():
        reply.set_exception(TimeoutError())


def _describe(what: str | tuple[Function, int, int], unit: int) -> str:
    """The request's name in messages: ``holding 0+125 unit 1`` for a read."""
    if isinstance(what, str):
        return what
    function, address, count = what
    return f"{function.value} {address}+{count} unit {unit}"


def _bits_check(dev: ModbusDeviceConfig, what: str | tuple[Function, int, int], reply: Any,
                count: int) -> None:
    bits = getattr(reply, "bits", None)
    if not isinstance(bits, list) or len(bits) < count:
        raise BadReply(dev.id, f"{_describe(what, dev.unit)}: reply has {_len(bits)} bits, "
                       f"expected {count}")


def _registers_check(dev: ModbusDeviceConfig, what: str | tuple[Function, int, int],
                     reply: Any, count: int) -> None:
    raw = getattr(reply, "raw", None)  # a reply that kept its bytes (client.registers_of)
    if type(raw) is bytes:
        if len(raw) == 2 * count:
            return
        raise BadReply(dev.id, f"{_describe(what, dev.unit)}: reply has {len(raw) // 2} "
                       f"registers, expected {count}")
    regs = getattr(reply, "registers", None)
    if not isinstance(regs, list) or len(regs) != count:
        raise BadReply(dev.id, f"{_describe(what, dev.unit)}: reply has {_len(regs)} "
                       f"registers, expected {count}")


def _len(value: object) -> str:
    return str(len(value)) if isinstance(value, list) else "no"
