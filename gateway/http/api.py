"""``/api/v1``: JSON reads of the site, the live stream, and commands.

Every read that another transport can also make goes through the one command registry
(``alarm.list``, ``quota.usage``, ``ocpp.sessions``...), so MQTT, the CLI and HTTP answer
the same. A command's error code becomes an HTTP status (:data:`STATUS_OF`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import web

from gateway.http import views
from gateway.http.auth import PRINCIPAL, Principal
from gateway.http.encode import PointsJson, dumpb, dumps, samples_json
from gateway.http.gzipped import Shared, accepts_gzip
from gateway.http.host import Host
from gateway.http.live import LatestValues, Subscriber

log = logging.getLogger(__name__)

STATUS_OF = {
    "bad_arguments": 400, "bad_request": 400, "unknown_command": 404, "unknown_device": 404,
    "unknown_point": 404, "unknown_alarm": 404, "unknown_charger": 404, "unknown_quota": 404,
    "unknown_work_order": 404, "not_found": 404, "not_ready": 503, "timeout": 504,
    "internal": 500,
}
#: Argument names by which a command records who acted: set from the authenticated caller.
ACTOR_FIELDS = ("by", "inspector")
HEARTBEAT_S = 15.0
#: Clients polling the whole site share one answer for this long: polled once a second, a
#: client gets values at most this old, and the site is encoded at most once a second
#: however many clients poll.
CACHE_S = 1.0
#: A stream sends at most once this long: a point sampled at 10 Hz shows its newest value
#: once a second, and a stream's cost follows the points it shows, not the sampling rate.
STREAM_S = 1.0


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=dumps)


def error(status: int, code: str, message: str, details: Any = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error": {"code": code, "message": message}}
    if details is not None:
        body["error"]["details"] = details
    return json_response(body, status)


def principal(request: web.Request) -> Principal:
    who = request[PRINCIPAL]
    return who


class Api:
    def __init__(self, host: Host, latest: LatestValues) -> None:
        self.host = host
        self.latest = latest
        self.streams: set[Subscriber] = set()
        self.points = PointsJson(latest)
        self._shared: Shared | None = None

    def routes(self) -> list[web.RouteDef]:
        g, p = web.get, web.post
        return [
            g("/api/v1/overview", self.overview),
            g("/api/v1/devices", self.devices),
            g("/api/v1/devices/{device}", self.device),
            p("/api/v1/devices/{device}/points/{point}", self.write_point),
            g("/api/v1/alarms", self.alarms),
            p("/api/v1/alarms/{alarm_id}/ack", self.ack_alarm),
            g("/api/v1/quotas", self.read_command("quota.usage")),
            g("/api/v1/chargers", self.chargers),
            p("/api/v1/chargers/{charger}/stop", self.stop_charge),
            p("/api/v1/chargers/{charger}/start", self.start_charge),
            g("/api/v1/buffer", self.buffer),
            g("/api/v1/uplink", self.uplink),
            g("/api/v1/plugins", self.plugins),
            g("/api/v1/channels", self.read_command("channels.stats")),
            g("/api/v1/workorders", self.read_command("workorders.list")),
            g("/api/v1/kpis", self.kpis),
            g("/api/v1/events", self.events),
            g("/api/v1/logs", self.read_command("logs.tail")),
            g("/api/v1/commands", self.commands),
            p("/api/v1/commands/{name}", self.run_command),
            g("/api/v1/stream", self.stream),
        ]

    # -- helpers -------------------------------------------------------------------------

    async def _call(self, name: str, args: Any = None) -> tuple[bool, Any]:
        reply = await self.host.commands.execute(name, args or {})
        if reply.get("ok"):
            return True, reply["result"]
        return False, reply["error"]

    @staticmethod
    def _reply(name: str, ok: bool, value: Any) -> web.Response:
        if ok:
            return json_response({"ok": True, "result": value})
        code = value.get("code", "internal")
        return json_response({"ok": False, "error": value}, STATUS_OF.get(code, 409))

    async def _optional(self, name: str, args: Any = None) -> Any:
        """A read whose command exists only when its component is configured: None if not."""
        if self.host.commands.get(name) is None:
            return None
        ok, value = await self._call(name, args)
        return value if ok else {"error": value}

    def read_command(self, name: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            if self.host.commands.get(name) is None:
                return error(404, "not_configured",
                             f"{name} is not available: its component is not configured here")
            args: dict[str, Any] = dict(request.query)
            if name == "workorders.list" and "limit" in args:
                args["limit"] = int(args["limit"]) if args["limit"].isdigit() else args["limit"]
            ok, value = await self._call(name, args)
            return self._reply(name, ok, value)
        return handler

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any] | web.Response:
        if not request.can_read_body:
            return {}
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error(400, "bad_request", "the request body is not JSON")
        if not isinstance(body, dict):
            return error(400, "bad_request", "the request body must be a JSON object")
        return body

    # -- reads ---------------------------------------------------------------------------

    async def overview(self, request: web.Request) -> web.Response:
        devices = await views.devices(self.host, self.latest, with_points=False)
        by_status: dict[str, int] = {}
        for d in devices:
            by_status[d["status"]] = by_status.get(d["status"], 0) + 1
        stats = await self.host.store.stats()
        now = self.host.clock.now_ms()
        return json_response({
            "gateway": self.host.site.gateway.id, "version": self.host.version,
            "uptime_s": round((now - self.host.started_ms) / 1000, 1),
            "devices": {"total": len(devices), "by_status": by_status,
                        "list": [{k: d[k] for k in ("id", "name", "driver", "status", "reason",
                                                    "since", "last_seen")} for d in devices]},
            "alarms": await self._optional("alarm.list"),
            "chargers": await self._chargers_or_none(),
            "buffer": _buffer(stats.as_dict(), now),
            "uplink": await self._uplink(stats.as_dict(), now),
        })

    async def devices(self, request: web.Request) -> web.Response:
        # Many clients polling the whole site (dashboards, scrapers) share one answer for up
        # to CACHE_S, so its cost does not grow with the number of pollers; past that, only
        # the devices with news since the last answer are encoded again (PointsJson).
        if not _wants_points(request):  # a list of the devices, not their values
            texts = views.devices_json(self.host, self.latest, self.points, with_points=False)
            return _json_bytes(b"[" + b",".join(texts) + b"]")
        now = asyncio.get_running_loop().time()
        shared = self._shared
        if shared is None or now - shared.built > CACHE_S:
            parts = views.devices_parts(self.host, self.latest, self.points)
            shared = self._shared = Shared(now, parts)
        if not accepts_gzip(request.headers.get("Accept-Encoding", "")):
            resp = _json_bytes(shared.body)
        else:
            resp = _json_bytes(shared.gzipped)
            resp.headers["Content-Encoding"] = "gzip"
        resp.headers["Vary"] = "Accept-Encoding"
        return resp

    async def device(self, request: web.Request) -> web.Response:
        # ?points=false: for a page that refreshes the status and poll statistics and has
        # the values from the stream.
        found = views.devices_json(self.host, self.latest, self.points,
                                   only=request.match_info["device"],
                                   with_points=_wants_points(request))
        if not found:
            return error(404, "unknown_device",
                         f"no device {request.match_info['device']!r} on this gateway")
        return _json_bytes(found[0])

    async def alarms(self, request: web.Request) -> web.Response:
        if self.host.commands.get("alarm.list") is None:
            return error(404, "not_configured", "no rules are configured on this gateway")
        ok, value = await self._call("alarm.list", dict(request.query))
        if not ok:
            return self._reply("alarm.list", ok, value)
        recent = [e.to_wire() for e in reversed(self.latest.recent_events)
                  if e.type.startswith("alarm_")]
        return json_response({"ok": True, "result": {"open": value, "recent": recent}})

    async def _chargers_or_none(self) -> Any:
        value = await self._optional("ocpp.sessions")
        return views.add_power(value, self.latest) if isinstance(value, dict) else value

    async def chargers(self, request: web.Request) -> web.Response:
        value = await self._chargers_or_none()
        if value is None:
            return error(404, "not_configured", "no OCPP chargers are configured here")
        return json_response({"ok": True, "result": value})

    async def buffer(self, request: web.Request) -> web.Response:
        stats = await self.host.store.stats()
        return json_response(_buffer(stats.as_dict(), self.host.clock.now_ms()))

    async def _uplink(self, buffer: dict[str, Any], now: int) -> dict[str, Any] | None:
        stats = await self._optional("uplink.stats")
        if stats is None:
            return None
        oldest = buffer.get("oldest_ts_ms")
        return {**stats, "lag_samples": buffer["samples"],
                "lag_s": round((now - oldest) / 1000, 1) if oldest else 0.0}

    async def uplink(self, request: web.Request) -> web.Response:
        stats = await self.host.store.stats()
        value = await self._uplink(stats.as_dict(), self.host.clock.now_ms())
        if value is None:
            return error(404, "not_configured", "no uplink is configured on this gateway")
        return json_response(value)

    async def plugins(self, request: web.Request) -> web.Response:
        listed = await self._optional("plugins.list")
        if listed is None:
            return error(404, "not_configured", "no plugins are configured on this gateway")
        return json_response({"plugins": listed, "stats": await self._optional("plugins.stats")})

    async def kpis(self, request: web.Request) -> web.Response:
        period = request.query.get("period", "today")
        if self.host.commands.get("kpis") is None:
            return error(404, "not_configured", "no plugins are configured on this gateway")
        ok, value = await self._call("kpis", {"period": period})
        return self._reply("kpis", ok, value)

    async def events(self, request: web.Request) -> web.Response:
        device = request.query.get("device")
        return json_response([e.to_wire() for e in reversed(self.latest.recent_events)
                              if device is None or e.device == device])

    async def commands(self, request: web.Request) -> web.Response:
        out = []
        for name in self.host.commands.names():
            cmd = self.host.commands.get(name)
            assert cmd is not None
            out.append({"name": name, "help": cmd.help.strip(),
                        "args": cmd.args_model.model_json_schema()})
        return json_response(out)

    # -- writes (operator only; the middleware checks role and CSRF) ----------------------

    async def run_command(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        name = request.match_info["name"]
        who = principal(request)
        body = self._actor(name, body, who)
        if isinstance(body, web.Response):
            return body
        log.info("http: %s runs command %s", who.name, name)
        ok, value = await self._call(name, body)
        return self._reply(name, ok, value)

    def _actor(self, name: str, body: dict[str, Any],
               who: Principal) -> dict[str, Any] | web.Response:
        """The command's record of who acted (``by``, ``inspector``) is the caller the
        server authenticated (a user's session or an API token's name), not what the body
        says: the field is filled in when left out, and a different name is refused. The
        automatic local session (loopback, no users) knows no one, so there the body's
        name stands."""
        cmd = self.host.commands.get(name)
        if cmd is None or who.kind == "local":
            return body
        fields = cmd.args_model.model_fields
        for field in ACTOR_FIELDS:
            if field not in fields:
                continue
            sent = body.get(field)
            if sent is not None and sent != who.name:
                return error(403, "actor_mismatch",
                             f"{name}: {field} must be the caller, {who.name!r}, not {sent!r}; "
                             f"leave {field} out and the server fills it in")
            body = {**body, field: who.name}
        return body

    async def write_point(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        if "value" not in body:
            return error(400, "bad_arguments", 'send {"value": ...}')
        args = {"device": request.match_info["device"], "point": request.match_info["point"],
                "value": body["value"]}
        log.info("http: %s writes %s/%s", principal(request).name, args["device"], args["point"])
        ok, value = await self._call("write", args)
        return self._reply("write", ok, value)

    async def ack_alarm(self, request: web.Request) -> web.Response:
        ok, value = await self._call("alarm.ack", {"alarm_id": request.match_info["alarm_id"],
                                                    "by": principal(request).name})
        return self._reply("alarm.ack", ok, value)

    async def stop_charge(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        ok, value = await self._call("ocpp.remote_stop", {
            "charger": request.match_info["charger"], **body})
        return self._reply("ocpp.remote_stop", ok, value)

    async def start_charge(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        ok, value = await self._call("ocpp.remote_start", {
            "charger": request.match_info["charger"], **body})
        return self._reply("ocpp.remote_start", ok, value)

    # -- the live stream ----------------------------------------------------------------

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """Server-Sent Events: ``snapshot`` (current values), then ``event`` for each outbox
        event and, at most every STREAM_S, ``samples`` with the newest sample of each point
        that changed. ``?device=a,b`` limits both to those devices.

        Conflating to one sample per point per interval keeps a stream's cost bounded by the
        points it shows, not by the sampling rate: encoding every sample as JSON would cost
        as much again as the store's own encoding."""
        wanted = request.query.get("device")
        devices = frozenset(d for d in wanted.split(",") if d) if wanted else None
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store",
                                           "X-Content-Type-Options": "nosniff",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        sub = self.latest.subscribe(devices)
        self.streams.add(sub)
        try:
            shown = [dev for dev in self.latest.values if devices is None or dev in devices]
            snapshot = b",".join(dumpb(dev) + b":" + self.points.points(dev)[0] for dev in shown)
            for dev in shown:  # what the snapshot showed is not sent again
                sub.show(dev, self.latest.values[dev])
            await resp.write(_sse_bytes("snapshot", b"{" + snapshot + b"}"))
            while await self._stream_once(resp, sub):
                pass
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.latest.unsubscribe(sub)
            self.streams.discard(sub)
        with contextlib.suppress(ConnectionResetError):
            await resp.write_eof()
        return resp

    async def _stream_once(self, resp: web.StreamResponse, sub: Subscriber) -> bool:
        """Wait for news, gather what arrives within STREAM_S, send it; False: stop."""
        try:
            first = await asyncio.wait_for(sub.queue.get(), HEARTBEAT_S)
        except TimeoutError:
            await resp.write(b": keep-alive\n\n")
            return True
        await asyncio.sleep(STREAM_S)
        items = [first]
        while not sub.queue.empty():
            items.append(sub.queue.get_nowait())
        for kind, item in items:
            if kind == "samples":
                pass  # a wake-up: the news is in sub.dirty
            elif kind == "event":
                if sub.wants(item.device):
                    await resp.write(_sse("event", item.to_wire()))
            elif kind == "overflow":
                await resp.write(_sse("overflow", {"message": "too slow; reconnect"}))
                return False
            else:  # "close": the server stops
                return False
        newest = sub.changed(self.latest.values)
        if newest:
            await resp.write(_sse_bytes("samples", samples_json(newest)))
        return True

    def close_streams(self) -> None:
        for sub in list(self.streams):
            with contextlib.suppress(asyncio.QueueFull):
                sub.queue.put_nowait(("close", None))


def _wants_points(request: web.Request) -> bool:
    """``?points=false`` (or 0, no): the devices without their points, with ``point_count``."""
    return request.query.get("points", "true").lower() not in ("false", "0", "no")


def _sse(event: str, data: Any) -> bytes:
    return _sse_bytes(event, dumps(data).encode())


def _sse_bytes(event: str, data: bytes) -> bytes:
    return b"".join((b"event: ", event.encode(), b"\ndata: ", data, b"\n\n"))


def _json_bytes(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json", charset="utf-8")


def _buffer(stats: dict[str, Any], now: int) -> dict[str, Any]:
    oldest = stats.get("oldest_ts_ms")
    return {"rows": stats["chunks"], "samples": stats["samples"],
            "bytes": stats["payload_bytes"], "file_bytes": stats["file_bytes"],
            "oldest_ts": oldest, "age_s": round((now - oldest) / 1000, 1) if oldest else 0.0,
            "dropped": stats["dropped_total"], "events_pending": stats["events_pending"],
            "next_seq": stats["next_seq"], "acked_seq": stats["acked_seq"]}
