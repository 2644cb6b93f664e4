"""Who is calling: sessions (secure cookie + CSRF token), API tokens, login rate limit.

A browser logs in with a user name and password (scrypt hash in the config, the same format
and check as the OCPP charger passwords) and gets a random session id in an ``HttpOnly``,
``SameSite=Strict`` cookie (``Secure`` when TLS is on). Every state-changing request made
with that cookie must carry the session's CSRF token in ``X-CSRF-Token``; a page from another
origin cannot read it. Machines use a separate credential, ``Authorization: Bearer <token>``,
stored in the config as a SHA-256 only, revoked by removing it and reloading; a bearer token
is not sent by a browser on its own, so it needs no CSRF token.

Sessions live in memory: a restart or a reload logs everyone out, which is the safe default
for a credential that can write to plant equipment.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from drivers.ocpp.security import verify_password
from gateway.http.config import HttpSection, Role

COOKIE = "fieldgate_session"
CSRF_HEADER = "X-CSRF-Token"
ANONYMOUS = "local"


@dataclass
class Principal:
    name: str
    role: Role
    kind: str  # "session", "token" or "local" (loopback without users)
    csrf: str = ""
    session_id: str = ""

    @property
    def can_write(self) -> bool:
        return self.role == "operator"

    def public(self) -> dict[str, str]:
        """What the API tells the caller about itself (never the session id)."""
        return {"user": self.name, "role": self.role, "kind": self.kind, "csrf": self.csrf}


#: Where the middleware leaves the caller for the handlers.
PRINCIPAL = web.RequestKey("principal", Principal)


@dataclass
class _Session:
    principal: Principal
    expires: float


@dataclass
class Sessions:
    ttl: float
    now: Callable[[], float] = time.monotonic
    _by_id: dict[str, _Session] = field(default_factory=dict)

    def create(self, name: str, role: Role, kind: str = "session") -> Principal:
        self._expire()
        sid = secrets.token_urlsafe(32)
        principal = Principal(name, role, kind, csrf=secrets.token_urlsafe(24), session_id=sid)
        self._by_id[sid] = _Session(principal, self.now() + self.ttl)
        return principal

    def get(self, sid: str | None) -> Principal | None:
        if not sid:
            return None
        session = self._by_id.get(sid)
        if session is None or session.expires < self.now():
            self._by_id.pop(sid, None)
            return None
        session.expires = self.now() + self.ttl  # sliding expiry
        return session.principal

    def drop(self, sid: str) -> None:
        self._by_id.pop(sid, None)

    def _expire(self) -> None:
        now = self.now()
        for sid in [s for s, v in self._by_id.items() if v.expires < now]:
            del self._by_id[sid]


class RateLimiter:
    """At most ``limit`` failed logins per client address in a sliding minute."""

    def __init__(self, limit: int, window: float = 60.0,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.now = limit, window, now
        self._failures: dict[str, deque[float]] = {}
        self.refused = 0

    def retry_after(self, client: str) -> float:
        """Seconds until ``client`` may try again (0: now)."""
        q = self._failures.get(client)
        if not q:
            return 0.0
        cutoff = self.now() - self.window
        while q and q[0] < cutoff:
            q.popleft()
        if len(q) < self.limit:
            return 0.0
        return max(0.1, q[0] + self.window - self.now())

    def failed(self, client: str) -> None:
        if len(self._failures) > 10_000:  # a scan from many addresses: keep memory bounded
            self._failures.clear()
        self._failures.setdefault(client, deque()).append(self.now())

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)


class Authenticator:
    def __init__(self, section: HttpSection) -> None:
        self.section = section
        self.sessions = Sessions(section.session_ttl)
        self.limiter = RateLimiter(section.login_attempts)
        self._users = {u.name: u for u in section.users}
        self._tokens = {t.sha256: t for t in section.tokens}
        # A check for an unknown user costs the same as for a known one (no user probing).
        self._dummy_hash = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + "A" * 43 + "="

    async def login(self, name: str, password: str) -> Principal | None:
        user = self._users.get(name)
        stored = user.password_hash if user else self._dummy_hash
        ok = await asyncio.to_thread(verify_password, password, stored)
        if not ok or user is None:
            return None
        return self.sessions.create(user.name, user.role)

    def is_user(self, name: str) -> bool:
        return name in self._users

    def bearer(self, token: str) -> Principal | None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        for known, entry in self._tokens.items():
            if hmac.compare_digest(known, digest):
                return Principal(entry.name, entry.role, "token")
        return None

    def local(self) -> Principal:
        """Loopback without users: an automatic operator session (still cookie + CSRF)."""
        return self.sessions.create(ANONYMOUS, "operator", kind="local")


def new_token() -> tuple[str, str]:
    """A fresh API token and the SHA-256 to put in the config."""
    token = "fgt_" + secrets.token_urlsafe(32)
    return token, hashlib.sha256(token.encode()).hexdigest()
