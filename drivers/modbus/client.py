"""The pymodbus client of a bus, made and fitted for it: the one other module that talks to
pymodbus (beside :mod:`drivers.modbus.bus`, which sends the requests and translates the
errors).

:func:`make_client` builds the client with pymodbus's retries and reconnects off, and fits it
with three replacements, each on this client's own objects (nothing global): a framer that
fails the pending request on an undecodable reply instead of dropping the connection, a
reply decoder without the debug text nobody reads, and on Modbus TCP a receive path that
takes a plain register reply straight to the waiting request. Anything unusual goes to the
library's own code. ``tests/drivers/modbus/test_bus_decode.py`` and ``test_bus_execute.py``
hold them to the library's outcomes.
"""

from __future__ import annotations

import functools
import logging
import struct
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType
from pymodbus.logging import Log
from pymodbus.pdu import ModbusPDU

from drivers.modbus.config import ModbusDeviceConfig
from drivers.modbus.datatypes import Words


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
    if cfg.transport == "tcp":
        _lean_receive(client)
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
    debug_on = functools.partial(PYMODBUS_LOG.isEnabledFor, logging.DEBUG)

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
                words = pdu.registers = Words(_words(size).unpack_from(frame, 2))
                words.raw = frame[2:2 + size]
            else:
                pdu.decode(frame[1:])
        except (ModbusException, ValueError, IndexError, struct.error):
            return library(frame)
        if pdu.sub_function_code >= 0:
            return library(frame)
        return pdu

    decoder.decode = decode  # type: ignore[method-assign]


PYMODBUS_LOG = logging.getLogger("pymodbus.logging")
_MBAP_REPLY = struct.Struct(">HHHBBB")  # transaction, protocol, length, unit, function, bytes
MBAP_READ = struct.Struct(">HHHBBHH")  # ... unit, function, address, count


@functools.lru_cache(maxsize=256)
def _words(size: int) -> struct.Struct:
    """The unpacker of ``size`` bytes of registers (one per reply size, made once)."""
    return struct.Struct(f">{size // 2}H")


def registers_of(reply: ModbusPDU) -> list[int]:
    """A register reply's registers: the library's list, or, for a reply taken by
    :func:`_lean_receive` (which keeps the bytes as ``raw``), :class:`Words` made from them."""
    raw: bytes | None = getattr(reply, "raw", None)
    if raw is None:
        registers: list[int] = reply.registers  # type: ignore[assignment]
        return registers
    words = Words(_words(len(raw)).unpack_from(raw))
    words.raw = raw
    return words


def _lean_receive(client: AsyncModbusTcpClient | AsyncModbusSerialClient) -> None:
    """Take a Modbus TCP register reply straight to the waiting request.

    pymodbus's receive path for one reply runs ``data_received`` -> ``datagram_received``
    (which appends the frame to a class-level ring of recent frames, ``Log.transport_dump``,
    shown only in pymodbus's own ERROR lines; the daemon logs pymodbus at CRITICAL) ->
    ``callback_data`` -> the framer's ``handleFrame`` and ``decode`` -> the decoder -> the
    reply's future. This replaces ``data_received`` of this client's protocol (its
    TransactionManager; nothing global) with one that takes only the common case itself:
    the receive buffer is empty and the data is exactly one whole frame of protocol 0 that
    answers the pending request (its transaction id and unit, as the library checks them)
    with function 3 or 4 and a byte count that fills the frame, while a request waits. That
    reply is the library's reply class with the registers' bytes kept as ``raw`` (see
    :func:`registers_of`), set on the future, as ``callback_data`` would; the frame goes
    into pymodbus's ring only while its logger is enabled for ERROR (which is what shows
    it). Anything else - a partial or joined frame, another transaction or unit, an
    exception reply, another function, a late reply, pymodbus debug logging on - goes to the
    library's own ``data_received``.
    ``tests/drivers/modbus/test_bus_execute.py`` runs the same reply sequences through the
    library's path and the bus's and requires the same outcomes.
    """
    tm = client.ctx
    library = tm.data_received
    decoder = tm.framer.decoder
    classes = {fc: decoder.pdu_table[fc][decoder.pdu_inx] for fc in (3, 4)}
    unpack_head = _MBAP_REPLY.unpack_from
    log_on = PYMODBUS_LOG.isEnabledFor

    def data_received(data: bytes) -> None:
        size = len(data)
        if size < 9 or tm.recv_buffer:
            return library(data)
        tid, pid, length, unit, function, count = unpack_head(data)
        future = tm.response_future
        if (pid or length + 6 != size or count + 9 != size or count & 1
                or function not in classes or tid != tm.request_transaction_id
                or (unit != tm.request_dev_id and tm.request_dev_id)
                or future.done()):
            return library(data)
        if log_on(logging.ERROR):  # pymodbus's ERROR lines show the recent frames
            if log_on(logging.DEBUG):
                return library(data)  # and its debug lines this one
            Log.transport_dump(Log.RECV_DATA, data, b"")
        reply = classes[function]()
        # The registers stay bytes here (``raw``; ``registers`` is left empty): the bus makes
        # the list only for a caller that wants one (:func:`registers_of`), and a poll's
        # decoder unpacks the bytes itself, once.
        reply.raw = data[9:]  # type: ignore[attr-defined]
        reply.dev_id = unit
        reply.transaction_id = tid
        future.set_result(reply)
        return None

    tm.data_received = data_received  # type: ignore[method-assign]
