"""The one door to the ``ocpp`` library's internals.

The library wants to own the websocket read loop (``ChargePoint.start``), but it drops a
frame it cannot parse without an answer, so the session reads frames itself (protocol.py) and
hands well-formed CALLs to the library's router and answers to the library's waiting
``call()``. That takes these private members of ``ocpp.charge_point.ChargePoint``, used here
and nowhere else in the driver:

- ``_handle_call(msg)``: validate, run the ``@on`` handler, send its CALLRESULT;
- ``_response_queue``: the queue ``call()`` reads CALLRESULT / CALLERROR answers from;
- ``_response_timeout``: the seconds ``call()`` waits for an answer;
- ``_send(text)``: every frame the library sends goes through it; ``LibraryDoor`` overrides
  it to write the wire log and counts on the library calling it.

It also wraps the payload helpers of ``ocpp.charge_point`` (public names, but not documented
API): ``as_wire_payload`` and ``as_plain_dict``.

``check_library()`` runs when the driver is built and ``tests/drivers/ocpp/test_library.py``
exercises every member over a real websocket, so an upgrade of ``ocpp`` that changes one of
them fails at start-up and in CI, not in the middle of a charging session. Checked against
ocpp 2.1 (pinned ``>=2.1,<2.2`` in pyproject.toml).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from importlib.metadata import version as dist_version
from typing import Any

from ocpp.charge_point import ChargePoint, remove_nones, serialize_as_dict, snake_to_camel_case
from ocpp.messages import Call, CallError, CallResult

wire_log = logging.getLogger("drivers.ocpp.wire")


class LibraryMismatch(RuntimeError):
    """The installed ``ocpp`` library no longer has an internal member the driver relies on."""


class LibraryDoor:
    """Mixed in first (``class Session(SessionBase, v16.ChargePoint)``): the private members
    of the library's ChargePoint, each behind a public name."""

    id: str
    connection: Any

    @property
    def response_timeout(self) -> float:
        return float(self._response_timeout)  # type: ignore[attr-defined]

    async def handle_call(self, msg: Call) -> None:
        """Validate and route one CALL; its handler's CALLRESULT is sent by the library."""
        await self._handle_call(msg)  # type: ignore[attr-defined]

    def deliver_answer(self, msg: CallResult | CallError) -> None:
        """Hand a charger's answer to the ``call()`` waiting for it."""
        self._response_queue.put_nowait(msg)  # type: ignore[attr-defined]

    async def _send(self, message: str) -> None:
        """Overrides the library's sender: every outgoing frame goes through here."""
        wire_log.debug("%s <- %s", self.id, message)
        await self.connection.send(message)

    async def send_frame(self, message: str) -> None:
        await self._send(message)


def as_wire_payload(payload: Any) -> dict[str, Any]:
    """A call payload object -> the camelCase dict the library puts on the wire."""
    return dict(remove_nones(snake_to_camel_case(serialize_as_dict(payload))))


def as_plain_dict(result: Any) -> dict[str, Any]:
    """A call_result object -> a snake_case dict without the unset (None) fields."""
    return dict(remove_nones(serialize_as_dict(result)))


def check_library() -> None:
    """Raise ``LibraryMismatch`` naming what changed if ``ocpp`` lost a member used above."""
    installed = dist_version("ocpp")
    problems: list[str] = []
    handle = getattr(ChargePoint, "_handle_call", None)
    if not inspect.iscoroutinefunction(handle):
        problems.append("ChargePoint._handle_call is not a coroutine method")
    elif list(inspect.signature(handle).parameters) != ["self", "msg"]:
        problems.append(f"ChargePoint._handle_call{inspect.signature(handle)} is not (self, msg)")
    send = getattr(ChargePoint, "_send", None)
    if not inspect.iscoroutinefunction(send):
        problems.append("ChargePoint._send is not a coroutine method")
    probe = ChargePoint("probe", None, response_timeout=7)
    if not isinstance(getattr(probe, "_response_queue", None), asyncio.Queue):
        problems.append("ChargePoint()._response_queue is not an asyncio.Queue")
    if getattr(probe, "_response_timeout", None) != 7:
        problems.append("ChargePoint()._response_timeout does not hold response_timeout")
    if problems:
        raise LibraryMismatch(
            f"the installed ocpp {installed} changed internals the OCPP driver uses: "
            f"{'; '.join(problems)}. Install ocpp>=2.1,<2.2 (pyproject.toml) or update "
            "drivers/ocpp/library.py"
        )
