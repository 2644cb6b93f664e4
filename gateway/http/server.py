"""The aiohttp application: security middleware, health, metrics, pages and the API.

Order of checks on each request: host header (loopback without users only: a DNS-rebinding
page cannot reach us), who is calling (bearer token, session cookie, or the automatic local
session when no users are configured), CSRF token on every state-changing request made with
a cookie, then the role (viewers get 403 on every write).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import ssl
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web

from gateway.commands import request_source
from gateway.http.api import Api, error, json_response
from gateway.http.auth import COOKIE, CSRF_HEADER, PRINCIPAL, Authenticator, Principal
from gateway.http.config import HttpSection
from gateway.http.history_api import HistoryApi
from gateway.http.host import Host
from gateway.http.live import LatestValues
from gateway.http.metrics import Metrics
from gateway.net import is_loopback

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC = ("/healthz", "/readyz", "/api/v1/login", "/static/")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
STATIC = resources.files("gateway.http") / "static"
_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html",
                 ".svg": "image/svg+xml"}
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]", "::1")


class HttpServer:
    def __init__(self, host: Host, section: HttpSection, latest: LatestValues) -> None:
        self.host = host
        self.section = section
        self.latest = latest
        self.auth = Authenticator(section)
        self.api = Api(host, latest)
        self.metrics = Metrics(host, latest)
        self.runner: web.AppRunner | None = None
        self.port: int | None = None
        self.tls = section.tls is not None

    # -- lifecycle -----------------------------------------------------------------------

    def build(self) -> web.Application:
        app = web.Application(middlewares=[self._security], client_max_size=1 << 20)
        app.add_routes([
            web.get("/", self._page), web.get("/static/{name}", self._static),
            web.get("/healthz", self._healthz), web.get("/readyz", self._readyz),
            web.get("/metrics", self._metrics),
            web.post("/api/v1/login", self._login), web.post("/api/v1/logout", self._logout),
            web.get("/api/v1/session", self._session),
            *self.api.routes(), *HistoryApi(self.host).routes(),
        ])
        return app

    async def start(self) -> None:
        s = self.section
        context = None
        if s.tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(s.tls.cert, s.tls.key)
        elif not is_loopback(s.host):
            log.warning(
                "http: listening on %s:%s without TLS: passwords and session cookies cross "
                "the network in clear text; set http.tls.cert and http.tls.key (or listen "
                "on 127.0.0.1 and use an SSH tunnel)", s.host, s.port)
        self.runner = web.AppRunner(self.build(), access_log=None, shutdown_timeout=2.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, s.host, s.port, ssl_context=context)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else s.port
        scheme = "https" if context else "http"
        log.info("dashboard and API on %s://%s:%s/", scheme, s.host, self.port)

    async def stop(self) -> None:
        self.api.close_streams()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    # -- middleware ----------------------------------------------------------------------

    @web.middleware
    async def _security(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        resp = await self._check(request, handler)
        if resp.prepared:  # a stream: its headers are sent already
            return resp
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        resp.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
        if request.path.startswith("/api/"):
            resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    async def _check(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        open_access = self.section.open_access
        if open_access and request.host.rsplit(":", 1)[0] not in LOOPBACK_HOSTS \
                and request.host not in LOOPBACK_HOSTS:
            return error(421, "bad_host", "this gateway answers on localhost only; open "
                         f"http://127.0.0.1:{self.port}/")
        path = request.path
        if path == "/" or path.startswith(PUBLIC):
            return await handler(request)
        who, new_cookie = self._identify(request)
        if who is None:
            return error(401, "unauthorized", "log in (POST /api/v1/login) or send "
                         "Authorization: Bearer <token>")
        request[PRINCIPAL] = who
        request_source.set(f"http {who.kind} {who.name}")  # this request's task
        if request.method not in SAFE_METHODS and path != "/api/v1/logout":
            if who.kind != "token":
                sent = request.headers.get(CSRF_HEADER, "")
                if not sent or not hmac.compare_digest(sent, who.csrf):
                    return error(403, "csrf", f"missing or wrong {CSRF_HEADER} header; read "
                                 "it from GET /api/v1/session")
            if not who.can_write:
                return error(403, "forbidden", f"user {who.name!r} is a viewer; writes and "
                             "commands need the operator role")
        resp = await handler(request)
        if new_cookie and not resp.prepared:
            self._set_cookie(resp, who)
        return resp

    def _identify(self, request: web.Request) -> tuple[Principal | None, bool]:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            return self.auth.bearer(header[7:].strip()), False
        who = self.auth.sessions.get(request.cookies.get(COOKIE))
        if who is not None:
            return who, False
        if self.section.open_access:
            if request.path == "/api/v1/session":  # the page asks once: a CSRF-bearing session
                return self.auth.local(), True
            # Reads (a curl, a Prometheus scrape) need no session; a write without one fails
            # the CSRF check below.
            return Principal("local", "operator", "local"), False
        return None, False

    def _set_cookie(self, resp: web.StreamResponse, who: Principal) -> None:
        resp.set_cookie(COOKIE, who.session_id, httponly=True, samesite="Strict",
                        secure=self.tls, path="/", max_age=int(self.section.session_ttl))

    # -- auth endpoints ------------------------------------------------------------------

    async def _login(self, request: web.Request) -> web.Response:
        client = request.remote or "?"
        wait = self.auth.limiter.retry_after(client)
        if wait:
            self.auth.limiter.refused += 1
            resp = error(429, "too_many_attempts",
                         f"too many failed logins from {client}; retry in {wait:.0f} s")
            resp.headers["Retry-After"] = str(int(wait) + 1)
            return resp
        if request.content_type != "application/json":
            # A cross-site form cannot send JSON without a CORS preflight we never allow.
            return error(415, "bad_request", "send the login as application/json")
        try:
            body = await request.json()
            name, password = str(body["user"]), str(body["password"])
        except (ValueError, KeyError, TypeError):
            return error(400, "bad_request", 'send {"user": ..., "password": ...}')
        who = await self.auth.login(name, password)
        if who is None:
            self.auth.limiter.failed(client)
            # The name only when it is a configured user: a password typed into the user
            # field must not end up in the log.
            known = name if self.auth.is_user(name) else "(unknown user)"
            log.warning("http: failed login for %s from %s", known, client)
            return error(401, "bad_credentials", "wrong user name or password")
        self.auth.limiter.succeeded(client)
        log.info("http: %s logged in from %s (%s)", who.name, client, who.role)
        resp = json_response(who.public())
        self._set_cookie(resp, who)
        return resp

    async def _logout(self, request: web.Request) -> web.Response:
        sid = request.cookies.get(COOKIE)
        if sid:
            self.auth.sessions.drop(sid)
        resp = json_response({"ok": True})
        resp.del_cookie(COOKIE, path="/")
        return resp

    async def _session(self, request: web.Request) -> web.Response:
        who = request[PRINCIPAL]
        return json_response({**who.public(), "gateway": self.host.site.gateway.id})

    # -- health and metrics --------------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(5):
                async with self.host.store.transaction() as tx:
                    await tx.execute("SELECT 1")
        except Exception as err:
            log.error("healthz: the store is not writable: %s", err)
            return json_response({"ok": False, "store": f"not writable: {err}"}, 503)
        return json_response({"ok": True, "store": "writable"})

    async def _readyz(self, request: web.Request) -> web.Response:
        drivers = self.host.drivers_started()
        uplink = await self.host.uplink_connected()
        ready = drivers and uplink is not False
        body: dict[str, Any] = {"ready": ready, "drivers_started": drivers,
                                "uplink_connected": uplink}
        return json_response(body, 200 if ready else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        body = await self.metrics.render()
        return web.Response(body=body, headers={
            "Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    # -- pages ---------------------------------------------------------------------------

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(body=(STATIC / "index.html").read_bytes(),
                            content_type="text/html", charset="utf-8")

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
        if "/" in name or name.startswith(".") or suffix not in _STATIC_TYPES:
            raise web.HTTPNotFound()
        asset = STATIC / name
        if not asset.is_file():
            raise web.HTTPNotFound()
        return web.Response(body=asset.read_bytes(), content_type=_STATIC_TYPES[suffix],
                            headers={"Cache-Control": "max-age=300"})
