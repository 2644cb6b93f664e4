"""The adapter to the ``ocpp`` library's internals (drivers/ocpp/library.py), exercised member
by member over a real websocket against the library's own charge point, so an upgrade that
renames or reshapes one of them fails here."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
import websockets
from ocpp.charge_point import ChargePoint
from ocpp.messages import Call, CallResult
from ocpp.routing import on
from ocpp.v16 import ChargePoint as Cp16
from ocpp.v16 import call, call_result
from websockets.asyncio.server import ServerConnection, serve

from drivers.ocpp.library import LibraryDoor, LibraryMismatch, check_library


class CentralSide(LibraryDoor, Cp16):
    @on("Heartbeat")
    async def on_heartbeat(self) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time="2024-01-01T00:00:00Z")


class ChargerSide(Cp16):
    @on("Reset")
    async def on_reset(self, type: str) -> call_result.Reset:
        return call_result.Reset(status="Accepted")


def test_check_library_accepts_the_installed_version() -> None:
    check_library()


def test_check_library_names_a_changed_member(monkeypatch: pytest.MonkeyPatch) -> None:
    def handle(self: Any, message: Any) -> None:  # renamed parameter, no longer a coroutine
        pass

    monkeypatch.setattr(ChargePoint, "_handle_call", handle)
    with pytest.raises(LibraryMismatch, match=r"_handle_call is not a coroutine"):
        check_library()


async def test_every_member_works_over_a_real_websocket(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="drivers.ocpp.wire")
    central: list[CentralSide] = []
    reset_answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def handler(connection: ServerConnection) -> None:
        door = CentralSide("cp-lib", connection, response_timeout=3)
        door.connection = connection
        central.append(door)

        async def ask_reset() -> None:
            try:
                reset_answer.set_result(await door.call(call.Reset(type="Soft"), suppress=False))
            except Exception as err:  # surfaces in the test's assertion
                reset_answer.set_exception(err)

        asker: asyncio.Task[None] | None = None
        async for raw in connection:
            kind, unique_id, *rest = json.loads(raw)
            if kind == 2:
                await door.handle_call(Call(unique_id, rest[0], rest[1]))  # _handle_call, _send
                asker = asker or asyncio.create_task(ask_reset())
            elif kind == 3:
                door.deliver_answer(CallResult(unique_id, rest[0]))  # _response_queue

    async with serve(handler, "127.0.0.1", 0, subprotocols=["ocpp1.6"]) as server:  # type: ignore[list-item]
        port = next(iter(server.sockets)).getsockname()[1]
        async with websockets.connect(f"ws://127.0.0.1:{port}/cp-lib",
                                      subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
            charger = ChargerSide("cp-lib", ws, response_timeout=3)
            reader = asyncio.create_task(charger.start())
            try:
                answer = await charger.call(call.Heartbeat(), suppress=False)
                assert answer.current_time == "2024-01-01T00:00:00Z"
                reset = await asyncio.wait_for(reset_answer, 5)
                assert reset.status == "Accepted"
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
    assert central[0].response_timeout == 3  # _response_timeout
    # the library's own sends (the CALLRESULT, the Reset CALL) went through our _send
    sent = [r.getMessage() for r in caplog.records if r.name == "drivers.ocpp.wire"]
    assert any('"currentTime"' in line for line in sent)
    assert any('"Reset"' in line for line in sent)


def test_payload_helpers_give_the_wire_and_the_plain_form() -> None:
    from drivers.ocpp.library import as_plain_dict, as_wire_payload

    payload = call.RemoteStartTransaction(id_tag="T1", connector_id=None)
    assert as_wire_payload(payload) == {"idTag": "T1"}
    assert as_plain_dict(call_result.Reset(status="Accepted")) == {"status": "Accepted"}
