"""Reads of the site-operations component for the dashboard: a point's local history, energy
per device per bucket, and the inspections (due, recent, and each plan's checklist).

They are GETs so a viewer can read them (every POST needs the operator role); each runs the
``siteops`` command of the same name through the one command registry, so the answer is the
one MQTT and the CLI give. Without the ``siteops`` component they answer 404
``not_configured``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.http.api import STATUS_OF, error, json_response
from gateway.http.host import Host

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


class HistoryApi:
    def __init__(self, host: Host) -> None:
        self.host = host

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v1/history", self.history),
            web.get("/api/v1/history/energy", self.energy),
            web.get("/api/v1/inspections", self.inspections),
        ]

    async def _run(self, name: str, args: dict[str, Any]) -> tuple[bool, Any]:
        reply = await self.host.commands.execute(name, args)
        return (True, reply["result"]) if reply.get("ok") else (False, reply["error"])

    def _missing(self, name: str) -> web.Response | None:
        if self.host.commands.get(name) is None:
            return error(404, "not_configured", f"{name} is not available: the siteops "
                         "component is off on this gateway (siteops.enabled: false)")
        return None

    def _window(self, query: Any, span_key: str, span_ms: int,
                limit: float) -> dict[str, int] | web.Response:
        """``start``/``end`` in UTC ms, or ``hours``/``days`` back from now."""
        out: dict[str, int] = {}
        for key in ("start", "end"):
            raw = query.get(key)
            if raw is not None:
                if not raw.lstrip("-").isdigit():
                    return error(400, "bad_arguments", f"{key}={raw!r} is not a time in UTC "
                                 "milliseconds")
                out[key] = int(raw)
        if "start" not in out:
            raw = query.get(span_key, "")
            try:
                span = float(raw) if raw else 1.0
            except ValueError:
                span = -1.0
            if not 0 < span <= limit:
                return error(400, "bad_arguments", f"{span_key}={raw!r}: give a number of "
                             f"{span_key} between 0 and {limit:g}, or start (UTC ms)")
            out["start"] = out.get("end", self.host.clock.now_ms()) - int(span * span_ms)
        return out

    @staticmethod
    def _reply(ok: bool, value: Any) -> web.Response:
        if ok:
            return json_response({"ok": True, "result": value})
        return json_response({"ok": False, "error": value},
                             STATUS_OF.get(value.get("code", "internal"), 409))

    async def history(self, request: web.Request) -> web.Response:
        """``history``: ?device=&point=&hours=24 (or start/end) [&resolution=auto]."""
        missing = self._missing("history")
        if missing is not None:
            return missing
        q = request.query
        window = self._window(q, "hours", HOUR_MS, 24 * 400)
        if isinstance(window, web.Response):
            return window
        args: dict[str, Any] = {"device": q.get("device", ""), "point": q.get("point", ""),
                                "resolution": q.get("resolution", "auto"), **window}
        return self._reply(*await self._run("history", args))

    async def energy(self, request: web.Request) -> web.Response:
        """``history.energy``: ?days=7 (or start/end) [&devices=a,b] [&resolution=1d]."""
        missing = self._missing("history.energy")
        if missing is not None:
            return missing
        q = request.query
        window = self._window(q, "days", DAY_MS, 400)
        if isinstance(window, web.Response):
            return window
        args: dict[str, Any] = {"resolution": q.get("resolution", "1d"), **window}
        if q.get("devices"):
            args["devices"] = [d for d in q["devices"].split(",") if d]
        return self._reply(*await self._run("history.energy", args))

    async def inspections(self, request: web.Request) -> web.Response:
        """``inspections.due`` and ``inspections.list``, with each plan's checklist so a
        form can ask its questions."""
        missing = self._missing("inspections.due")
        if missing is not None:
            return missing
        ok, due = await self._run("inspections.due", {})
        if not ok:
            return self._reply(ok, due)
        ok, recent = await self._run("inspections.list", {"limit": 20})
        if not ok:
            return self._reply(ok, recent)
        section = getattr(self.host.site, "siteops", None)
        plans = [{"name": p.name, "checklist": [
            {"id": i.id, "question": i.question, "expect": i.expect, "min": i.min,
             "max": i.max} for i in p.checklist]}
            for p in getattr(section, "inspections", [])]
        return json_response({"ok": True, "result": {"due": due, "recent": recent,
                                                     "plans": plans}})
