"""The per-connection session: OCPP-J framing and error answers for both versions.

The ``ocpp`` library routes well-formed CALLs to ``@on`` handlers and validates payloads
against the official schemas, but it drops a frame it cannot parse without answering, and it
answers an unknown action with NotSupported. A central system must instead keep the
connection up and answer every bad frame with a CALLERROR the charger can act on, so this
module owns the framing step and hands only well-formed CALLs to the library:

========================================  ================================================
frame                                     CALLERROR (1.6 name / 2.0.1 name)
========================================  ================================================
not a valid RPC message: binary, not      FormationViolation / RpcFrameworkError (id "-1"
JSON, not an array, a message id that is  when the message id cannot be read; 2.0.1 names
not a string of at most 36 characters, a  RpcFrameworkError for "not a valid RPC request")
CALL without 4 elements
CALL whose payload is not an object       FormationViolation / FormatViolation
bigger than ``max_frame_bytes``           FormationViolation / FormatViolation
unknown message type id                   ProtocolError / MessageTypeNotSupported
action unknown to the version             NotImplemented
action known but not handled here         NotSupported
payload fails the schema                  the code OCPP-J names for the failure (see
                                          schema.py): TypeConstraintViolation,
                                          Occurence/OccurrenceConstraintViolation,
                                          PropertyConstraintViolation, ...
any CALL but BootNotification before the  SecurityError (2.0.1 B02.FR.09; applied to 1.6
charger was ever Accepted                 too)
========================================  ================================================
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ocpp.exceptions import OCPPError, UnknownCallErrorCodeError
from ocpp.messages import Call, CallError, CallResult
from ocpp.v16.enums import Action as Action16
from ocpp.v201.enums import Action as Action201
from websockets.exceptions import ConnectionClosed

from drivers.ocpp.config import OcppDeviceConfig, OcppVersion
from drivers.ocpp.library import LibraryDoor, as_plain_dict, as_wire_payload
from drivers.ocpp.schema import MAX_CAUSE, check_call, spelled
from gateway.commands import CommandError

if TYPE_CHECKING:
    from drivers.ocpp.hub import Hub

log = logging.getLogger(__name__)
wire_log = logging.getLogger("drivers.ocpp.wire")

#: OCPP-J: a message id (UniqueId) is a string of at most 36 characters.
MAX_ID_LEN = 36
_KNOWN_ACTIONS = {
    "1.6": {a.value for a in Action16},
    "2.0.1": {a.value for a in Action201},
}


class Asker:
    """Outbound CALLs for commands: the charger's answer as a plain dict, or CommandError.

    The library checks the payload against the schema of the charger's version before
    anything is sent: an argument the version cannot carry is the caller's error
    (``bad_arguments``), and ``charger_error`` stays for what a charger actually answered.
    """

    id: str
    version: OcppVersion
    response_timeout: float

    async def ask(self, payload: Any, args: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Send one CALL. ``args`` names the command argument behind a payload field (its
        path, or the path's longest prefix listed), so ``bad_arguments`` names what to fix."""
        action = type(payload).__name__
        try:
            result = await self.call(payload, suppress=False)  # type: ignore[attr-defined]
        except UnknownCallErrorCodeError as err:  # a code the library has no class for
            raise CommandError(
                "charger_error", f"charger {self.id} answered {action} with a CALLERROR: {err}"
            ) from None
        except TimeoutError:
            raise CommandError(
                "timeout",
                f"charger {self.id} did not answer {action} within {self.response_timeout:g} s",
            ) from None
        except ConnectionClosed:
            raise CommandError(
                "offline", f"charger {self.id} disconnected during {action}"
            ) from None
        except OCPPError as err:
            # The library validates the CALL before sending it, with the same schema: if the
            # payload fails it, the refusal was ours and nothing went out.
            failure = check_call(action, self.version, as_wire_payload(payload))
            if failure is not None:
                parts = failure.field.split("/")
                named = [(args or {}).get("/".join(parts[:n])) for n in range(len(parts), 0, -1)]
                field = next((name for name in named if name), failure.field)
                raise CommandError(
                    "bad_arguments",
                    f"charger {self.id} speaks OCPP {self.version}, whose {action} cannot "
                    f"carry {field}: {failure.cause}; nothing was sent",
                    {"field": field, "error": failure.cause},
                ) from None
            raise CommandError(
                "charger_error",
                f"charger {self.id} answered {action} with {err.code}: {err.description}",
                err.details,
            ) from None
        return as_plain_dict(result)


class SessionBase(Asker, LibraryDoor):
    """Mixed in before the library's ChargePoint (``class S(SessionBase, v16.ChargePoint)``)."""

    version: OcppVersion
    id: str
    route_map: dict[str, Any]

    def bind(self, hub: Hub, device: OcppDeviceConfig, remote: str, connection: Any) -> None:
        self.connection = connection
        self.hub = hub
        self.device = device
        self.remote = remote
        self.accepted = False
        self.closed = False
        #: connector -> last reported status, for the device status and the power share
        self.connector_status: dict[int, str] = {}

    @property
    def multi(self) -> bool:
        return self.device.connectors > 1

    async def serve(self, connection: Any) -> None:
        """Read frames until the charger goes away; one bad frame never ends the loop."""
        self.accepted = await self.hub.is_accepted(self.id)
        try:
            async for raw in connection:
                await self.route_message(raw)
        except ConnectionClosed:
            pass
        finally:
            self.closed = True

    async def send_error(self, unique_id: str, code: str, description: str, cause: str) -> None:
        code = spelled(code, self.version)
        if len(cause) > MAX_CAUSE:  # never a library's jsonschema dump on the wire
            cause = cause[: MAX_CAUSE - 3] + "..."
        log.info("charger %s: answering %s to frame %s: %s", self.id, code, unique_id, cause)
        await self.send_frame(CallError(unique_id, code, description, {"cause": cause}).to_json())

    async def route_message(self, raw: str | bytes) -> None:
        wire_log.debug("%s -> %s", self.id, raw)
        limit = self.hub.settings.max_frame_bytes
        if isinstance(raw, bytes):
            await self.send_error("-1", "RpcFrameworkError", "Binary frame", "OCPP-J is text")
            return
        if len(raw) > limit:
            await self.send_error(
                _peek_id(raw), "FormatViolation", "Frame too large",
                f"frame of {len(raw)} bytes exceeds the limit of {limit}",
            )
            return
        try:
            data = json.loads(raw)
        except ValueError:
            await self.send_error("-1", "RpcFrameworkError", "Not JSON",
                                  "frame is not valid JSON")
            return
        if not isinstance(data, list) or len(data) < 3 or not isinstance(data[1], str):
            await self.send_error(
                _id_of(data), "RpcFrameworkError", "Not an OCPP-J message",
                "expected [MessageTypeId, UniqueId, ...] with a string UniqueId",
            )
            return
        kind, unique_id = data[0], data[1]
        if len(unique_id) > MAX_ID_LEN:
            await self.send_error(
                unique_id[:MAX_ID_LEN], "RpcFrameworkError", "Message id too long",
                f"a UniqueId has at most {MAX_ID_LEN} characters, this one {len(unique_id)}",
            )
            return
        if kind == 2:
            await self._route_call(data, unique_id)
        elif kind == 3 and len(data) == 3 and isinstance(data[2], dict):
            self.deliver_answer(CallResult(unique_id, data[2]))
        elif kind == 4 and len(data) == 5:
            self.deliver_answer(CallError(*data[1:]))
        elif kind in (3, 4):
            await self.send_error(
                unique_id, "RpcFrameworkError", "Malformed answer", "wrong number of elements"
            )
        else:
            await self.send_error(
                unique_id, "MessageTypeNotSupported", "Unknown MessageTypeId",
                f"MessageTypeId {kind!r} is not 2, 3 or 4",
            )

    async def _route_call(self, data: list[Any], unique_id: str) -> None:
        if len(data) != 4 or not isinstance(data[2], str):
            await self.send_error(
                unique_id, "RpcFrameworkError", "Malformed CALL",
                "a CALL is [2, UniqueId, Action, {payload}]",
            )
            return
        if not isinstance(data[3], dict):
            await self.send_error(unique_id, "FormatViolation", "Payload is not an object",
                                  "a CALL's payload is a JSON object")
            return
        action = data[2]
        if action not in self.route_map:
            if action in _KNOWN_ACTIONS[self.version]:
                await self.send_error(unique_id, "NotSupported", "Action not supported",
                                      f"{action} is not handled by this central system")
            else:
                await self.send_error(unique_id, "NotImplemented", "Unknown action",
                                      f"{action} is not an OCPP {self.version} action")
            return
        if not self.accepted and action != "BootNotification":
            await self.send_error(
                unique_id, "SecurityError", "Not accepted",
                "send BootNotification and wait for Accepted first",
            )
            return
        try:
            await self.handle_call(Call(unique_id, action, data[3]))
        except OCPPError as err:
            # The library validated the payload first (in a worker thread, where it does not
            # hold up the loop) but answers most failures with its default code; say why in
            # the code OCPP-J names. Validating only on failure keeps the good path free.
            failure = check_call(action, self.version, data[3])
            if failure is not None:
                await self.send_error(unique_id, failure.code, failure.description,
                                      failure.cause)
                return
            cause = str((err.details or {}).get("cause", err.description))
            await self.send_error(unique_id, err.code, str(err.description), cause)


def _id_of(data: Any) -> str:
    if isinstance(data, list) and len(data) > 1 and isinstance(data[1], str):
        return data[1]
    return "-1"


def _peek_id(raw: str) -> str:
    """The unique id of an oversize frame, read from its head without parsing it all."""
    head = raw[:200]
    parts = head.split(",", 2)
    if len(parts) >= 2 and parts[1].strip().startswith('"'):
        return parts[1].strip().strip('"')[:36] or "-1"
    return "-1"

