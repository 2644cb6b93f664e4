"""The websocket side of the central system: handshake (path, credentials, subprotocol),
one session per charger, and replacing a charger's stale connection when it reconnects."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import InvalidHandshake, InvalidMessage, NegotiationError
from websockets.http11 import Request, Response

from drivers.ocpp.config import SUBPROTOCOLS, Admission
from drivers.ocpp.handlers16 import Session16
from drivers.ocpp.handlers201 import Session201
from drivers.ocpp.hub import Hub
from drivers.ocpp.protocol import SessionBase
from drivers.ocpp.security import AuthBusy, parse_basic_auth, peer_common_name, server_ssl_context
from gateway.model import DeviceStatus

log = logging.getLogger(__name__)
library_log = logging.getLogger("drivers.ocpp.library")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_RETRY_AFTER_S = 10
_BUSY_LOG_EVERY_S = 10.0
#: Preferred first when a charger offers both.
_PREFERENCE = ("ocpp2.0.1", "ocpp1.6")


class RoutineRefusals(logging.Filter):
    """websockets logs every failed opening handshake as an ERROR with a 10-20 line
    traceback. A charger offering no shared subprotocol, a port probe that connects and
    closes, or a plain HTTP request are routine: one WARNING line is enough (and none for
    the subprotocol, which ``_select`` already explained). Anything else stays an ERROR."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != "opening handshake failed" or not record.exc_info:
            return True
        err = record.exc_info[1]
        if isinstance(err, NegotiationError):
            return False
        if isinstance(err, InvalidMessage) and isinstance(err.__cause__, EOFError):
            why = "it closed the connection before sending its HTTP request (a port probe " \
                  "or TCP health check?)"
        elif isinstance(err, InvalidHandshake | InvalidMessage):
            why = f"{err}{f' ({err.__cause__})' if err.__cause__ else ''}"
        else:
            return True
        connection = getattr(record, "websocket", None)
        remote = _remote(connection) if connection is not None else "?"
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg = "refused connection from %s: %s; a charger must open a websocket to " \
                     "<path_prefix>/<charger id>"
        record.args = (remote, why)
        record.exc_info, record.exc_text = None, None
        return True


#: websockets' own logger for the server (its level follows "websockets"), with the filter
handshake_log = logging.getLogger("websockets.server").getChild("ocpp")
handshake_log.addFilter(RoutineRefusals())


class OcppServer:
    def __init__(self, hub: Hub, server_device: str | None) -> None:
        self.hub = hub
        self.server_device = server_device
        self.ready = asyncio.Event()
        self.port = 0
        self.settings = hub.settings
        self._busy_logged = -_BUSY_LOG_EVERY_S
        self._busy_refused = 0

    def charger_of(self, path: str) -> str | None:
        prefix = self.settings.path_prefix.rstrip("/") + "/"
        path = path.split("?", 1)[0]
        if not path.startswith(prefix):
            return None
        charger = unquote(path[len(prefix):])
        return charger if _ID.match(charger) else None

    async def run(self) -> None:
        s = self.settings
        async with serve(
            self._handle,
            s.host,
            s.port,
            subprotocols=list(_PREFERENCE),  # type: ignore[arg-type]
            select_subprotocol=self._select,
            process_request=self._process_request,
            logger=handshake_log,
            ssl=server_ssl_context(s),
            max_size=s.max_frame_bytes * 4,
            ping_interval=60,
            ping_timeout=60,
            # zlib state per connection is the biggest per-charger cost; see README "Scale"
            compression="deflate" if s.permessage_deflate else None,
        ) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self.ready.set()
            log.info("OCPP central system listening on %s:%s%s (security profile %s)",
                     s.host, self.port, s.path_prefix, s.security_profile)
            if self.server_device:
                self.hub.ctx.set_status(self.server_device, DeviceStatus.ONLINE, "listening")
            try:
                await asyncio.Future()
            finally:
                self.ready.clear()
                if self.server_device:
                    self.hub.ctx.set_status(self.server_device, DeviceStatus.OFFLINE, "stopped")

    def _deny(self, connection: ServerConnection, status: HTTPStatus, why: str) -> Response:
        response = connection.respond(status, f"{why}\n")
        if status == HTTPStatus.UNAUTHORIZED:
            response.headers["WWW-Authenticate"] = 'Basic realm="fieldgate-ocpp"'
        return response

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        remote = _remote(connection)
        charger = self.charger_of(request.path)
        if charger is None:
            log.warning("refused websocket from %s: path %r is not %s/<charger id>; fix the "
                        "central system URL in the charger", remote, request.path,
                        self.settings.path_prefix)
            return self._deny(connection, HTTPStatus.NOT_FOUND, "unknown path")
        known = charger in self.hub.chargers
        if not known and self.settings.admission is Admission.KNOWN:
            log.warning("refused unknown charger %s from %s (HTTP 404); add a device entry "
                        "with role: charger or set admission: record", charger, remote)
            return self._deny(connection, HTTPStatus.NOT_FOUND, "unknown charger")
        profile = self.settings.security_profile
        if profile == 3:
            cn = peer_common_name(connection.transport)
            if cn != charger:
                log.warning("charger %s from %s: client certificate CN %r does not match its "
                            "id (HTTP 401); issue it a certificate with CN=%s",
                            charger, remote, cn, charger)
                return self._deny(connection, HTTPStatus.UNAUTHORIZED, "certificate mismatch")
        elif profile in (1, 2) and known:
            creds = parse_basic_auth(request.headers.get("Authorization"))
            if creds is None:
                why = "no HTTP Basic credentials"
            elif creds[0] != charger:
                why = f"Basic user {creds[0]!r} is not the charger id"
            else:
                try:
                    ok = await self.hub.check_password(charger, creds[1])
                except AuthBusy as err:
                    self._note_busy(charger, remote, err)
                    response = self._deny(connection, HTTPStatus.SERVICE_UNAVAILABLE,
                                          "busy, retry later")
                    response.headers["Retry-After"] = str(_RETRY_AFTER_S)
                    return response
                why = "" if ok else "wrong password" if self.hub.password_hash(charger) \
                    else "no password_hash configured"
            if why:
                log.warning("charger %s from %s: %s (HTTP 401); set the charger's "
                            "AuthorizationKey to the password behind its password_hash",
                            charger, remote, why)
                return self._deny(connection, HTTPStatus.UNAUTHORIZED, "unauthorized")
        return None

    def _note_busy(self, charger: str, remote: str, err: AuthBusy) -> None:
        """One WARNING per burst, not one per refused charger."""
        self._busy_refused += 1
        now = time.monotonic()
        if now - self._busy_logged >= _BUSY_LOG_EVERY_S:
            log.warning("refused %d charger connection(s) with HTTP 503, latest %s from %s: %s; "
                        "they reconnect by themselves - raise auth_workers if this persists",
                        self._busy_refused, charger, remote, err)
            self._busy_logged, self._busy_refused = now, 0

    def _select(self, connection: ServerConnection, offered: Any) -> Any:
        charger = self.charger_of(connection.request.path) if connection.request else None
        allowed = self.hub.device_for(charger).ocpp_versions if charger else []
        for name in _PREFERENCE:
            if name in offered and SUBPROTOCOLS[name] in allowed:
                return name
        log.warning("charger %s from %s offered subprotocols %s; allowed are %s (HTTP 400); "
                    "set the charger's OCPP version to one of them, or change its "
                    "ocpp_versions", charger, _remote(connection), list(offered),
                    [f"ocpp{v}" for v in allowed])
        raise NegotiationError("no shared OCPP version")

    async def _handle(self, connection: ServerConnection) -> None:
        assert connection.request is not None and connection.subprotocol is not None
        charger = self.charger_of(connection.request.path) or "?"
        version = SUBPROTOCOLS[connection.subprotocol]
        cls: type[SessionBase] = Session16 if version == "1.6" else Session201
        session = cls(charger, connection, self.settings.call_timeout,  # type: ignore[call-arg]
                      library_log)
        session.bind(self.hub, self.hub.device_for(charger), _remote(connection), connection)
        old = self.hub.attach(session)
        if old is not None:
            log.info("charger %s reconnected from %s; closing its previous connection",
                     charger, session.remote)
            await old.connection.close(1000, "replaced by a new connection")
        log.info("charger %s connected from %s speaking OCPP %s", charger, session.remote,
                 version)
        try:
            await session.serve(connection)
        finally:
            self.hub.detach(session)
            log.info("charger %s disconnected (%s)", charger, connection.close_reason or "closed")


def _remote(connection: Any) -> str:
    try:
        host, port = connection.remote_address[:2]
        return f"{host}:{port}"
    except (TypeError, ValueError):
        return "?"
