"""The demo site with an ``http:`` section, run as a real ``fieldgate run`` subprocess, and a
small synchronous client that keeps a cookie jar and the CSRF token like the dashboard does."""

from __future__ import annotations

import http.cookiejar
import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from drivers.ocpp.security import hash_password
from gateway.http.auth import new_token
from tests.support.daemon import spawn
from tests.support.mosquitto import free_port
from tests.support.wait import wait_until_sync

ROOT = Path(__file__).resolve().parents[3]
PASSWORDS = {"olga": "operator-password-1", "vic": "viewer-password-12"}


def wait_until(predicate: Callable[[], Any], timeout: float = 30, interval: float = 0.1,
               what: str = "condition") -> Any:
    """:func:`tests.support.wait.wait_until_sync`, tolerating a daemon that does not answer
    yet (connection refused, a half-started reply) while it polls."""

    def tolerant() -> Any:
        try:
            return predicate()
        except (OSError, urllib.error.URLError, KeyError, IndexError, ValueError):
            return None

    return wait_until_sync(tolerant, timeout, what=what, interval=interval)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Client:
    base: str
    token: str | None = None
    jar: http.cookiejar.CookieJar = field(default_factory=http.cookiejar.CookieJar)
    csrf: str = ""

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None, csrf: bool = True) -> Response:
        data = None if body is None else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json"} if data is not None else {}
        if self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        if csrf and self.csrf and method != "GET":
            hdrs["X-CSRF-Token"] = self.csrf
        hdrs.update(headers or {})
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=hdrs)
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        try:
            with opener.open(req, timeout=30) as resp:
                return Response(resp.status, dict(resp.headers), resp.read())
        except urllib.error.HTTPError as err:
            return Response(err.code, dict(err.headers), err.read())

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def post(self, path: str, body: Any = None, **kw: Any) -> Response:
        return self.request("POST", path, {} if body is None else body, **kw)

    def login(self, user: str) -> Client:
        resp = self.post("/api/v1/login", {"user": user, "password": PASSWORDS[user]})
        assert resp.status == 200, resp.body
        self.csrf = resp.json()["csrf"]
        return self


@dataclass
class Site:
    base: str
    config: Path
    tokens: dict[str, str]
    proc: subprocess.Popen[bytes]
    log: Path

    def client(self, user: str | None = None, token: str | None = None) -> Client:
        c = Client(self.base, token=self.tokens[token] if token else None)
        return c.login(user) if user else c


def site_config(tmp: Path, http_port: int) -> tuple[dict[str, Any], dict[str, str]]:
    """config/demo.yaml on free ports, with users, tokens and an alarm that opens at once."""
    cfg: dict[str, Any] = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    cfg["gateway"]["state_dir"] = str(tmp / "state")
    cfg["uplink"]["embedded_broker"]["port"] = free_port()
    modbus_port = free_port()
    for device in cfg["devices"]:
        if device["type"] == "modbus":
            device["port"] = modbus_port
        elif device["type"] == "opcua":
            device["url"] = f"opc.tcp://127.0.0.1:{free_port()}"
        elif device.get("role") == "server":
            device["server"]["port"] = free_port()
    cfg["rules"]["alarms"].append({
        "name": "pv-producing", "devices": ["pv-roof"], "point": "power_w",
        "condition": {"op": ">", "value": -1}, "for": 0, "severity": "minor",
        "message": "{device} produces {value:.0f} W"})
    tokens = {"robot": new_token(), "ops-robot": new_token()}
    cfg["http"] = {
        "host": "127.0.0.1", "port": http_port,
        "users": [{"name": "olga", "role": "operator",
                   "password_hash": hash_password(PASSWORDS["olga"])},
                  {"name": "vic", "role": "viewer",
                   "password_hash": hash_password(PASSWORDS["vic"])}],
        "tokens": [{"name": "robot", "role": "viewer", "sha256": tokens["robot"][1]},
                   {"name": "ops-robot", "role": "operator", "sha256": tokens["ops-robot"][1]}],
        "login_attempts": 3,
    }
    return cfg, {name: t[0] for name, t in tokens.items()}


@contextmanager
def running_site(tmp: Path, prepare: Callable[[dict[str, Any]], None] | None = None
                 ) -> Iterator[Site]:
    """The HTTP test site as a ``fieldgate run`` subprocess; ``prepare`` may change its config
    (and seed its state directory) before it starts."""
    port = free_port()
    cfg, tokens = site_config(tmp, port)
    if prepare is not None:
        prepare(cfg)
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    log = tmp / "daemon.log"
    proc = spawn(path, log=log)
    site = Site(f"http://127.0.0.1:{port}", path, tokens, proc, log)
    try:
        wait_until(lambda: proc.poll() is None and Client(site.base).get("/readyz").status
                   == 200, timeout=60, what="the daemon answering /readyz")
        yield site
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
