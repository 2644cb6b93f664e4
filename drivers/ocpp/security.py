"""Charger authentication: OCPP security profiles 1-3.

Passwords are stored as scrypt hashes (stdlib ``hashlib.scrypt``) so a leaked config does not
leak charger credentials. The format is self-describing, ``scrypt$<n>$<r>$<p>$<salt>$<hash>``
(base64), so cost parameters can be raised later without breaking stored hashes.

One check at n=2**14, r=8 costs ~35 ms of CPU and 16 MiB of memory (128 * r * n bytes), so a
site power cut that brings 1,000 chargers back at once is a storm: ``PasswordChecker`` runs
the checks on a small dedicated pool (bounded CPU and memory, the event loop keeps serving
connected chargers) and remembers verified pairs so each charger costs one check.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import os
import secrets
import ssl
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from drivers.ocpp.config import ServerSettings

MIN_PASSWORD_LEN = 16
_N, _R, _P = 2**14, 8, 1


class PasswordError(ValueError):
    """The clear password does not meet the OCPP security profile rules."""


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """Hash a charger password. OCPP asks for 16-40 characters; we enforce the minimum."""
    if len(password) < MIN_PASSWORD_LEN:
        raise PasswordError(
            f"password has {len(password)} characters; OCPP security profiles need at least "
            f"{MIN_PASSWORD_LEN}"
        )
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of a clear password against a stored hash; False on any garbage."""
    try:
        scheme, n, r, p, salt_b64, hash_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(hash_b64)
        digest = hashlib.scrypt(
            password.encode(), salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(digest, expected)


class AuthBusy(Exception):
    """Too many password checks are queued; the charger should retry later (HTTP 503)."""


class PasswordChecker:
    """Verifies HTTP Basic passwords off the event loop, at most ``workers`` at a time.

    Why a dedicated pool and not ``asyncio.to_thread``: the default executor runs up to
    cpu_count + 4 checks at once, each holding 16 MiB, and glibc keeps that memory in each
    thread's arena after the storm (measured: ~100 MB of the gateway's RSS at 1,000 chargers).
    Two workers use two cores' worth of CPU at most and keep at most 32 MiB.

    A check runs to completion even if the charger's handshake times out meanwhile, and
    concurrent checks of the same credentials share one run, so a retrying charger finds its
    result cached instead of queueing again. More than ``max_pending`` distinct checks in the
    queue (a flood of wrong passwords) raise ``AuthBusy`` instead of growing the queue.
    """

    def __init__(self, workers: int = 2, max_pending: int = 1024) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ocpp-scrypt")
        self.max_pending = max_pending
        self._verified: set[str] = set()
        self._pending: dict[str, asyncio.Task[bool]] = {}
        #: scrypt runs so far (for tests and diagnostics)
        self.runs = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def check(self, user: str, password: str, stored: str) -> bool:
        # the cache key never holds the clear password, only a digest bound to the stored hash
        key = hashlib.sha256(f"{user}\0{stored}\0{password}".encode()).hexdigest()
        if key in self._verified:
            return True
        task = self._pending.get(key)
        if task is None:
            if len(self._pending) >= self.max_pending:
                raise AuthBusy(f"{len(self._pending)} password checks queued")
            task = asyncio.get_running_loop().create_task(self._verify(key, password, stored))
            self._pending[key] = task
        return await asyncio.shield(task)

    async def _verify(self, key: str, password: str, stored: str) -> bool:
        loop = asyncio.get_running_loop()
        try:
            ok = await loop.run_in_executor(self._pool, verify_password, password, stored)
        finally:
            self._pending.pop(key, None)
        self.runs += 1
        if ok:
            self._verified.add(key)
        return ok

    def close(self) -> None:
        for task in self._pending.values():
            task.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)


def random_password() -> str:
    """A password for an in-process simulated charger (never written anywhere)."""
    return secrets.token_urlsafe(24)


def parse_basic_auth(header: str | None) -> tuple[str, str] | None:
    """``Authorization: Basic ...`` -> (user, password), or None if absent or malformed."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def basic_auth_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def server_ssl_context(settings: ServerSettings) -> ssl.SSLContext | None:
    """TLS context for profiles 2 and 3; profile 3 requires a client certificate."""
    if settings.security_profile < 2 or settings.tls is None:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(settings.tls.certfile, settings.tls.keyfile)
    if settings.security_profile == 3 and settings.tls.cafile is not None:
        ctx.load_verify_locations(cafile=settings.tls.cafile)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def peer_common_name(transport: Any) -> str | None:
    """CN of the verified client certificate on a TLS transport, or None."""
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None
