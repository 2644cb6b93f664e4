"""Listening rules, TLS, and the loopback-without-users mode, on an in-process gateway."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from drivers.ocpp.security import hash_password, verify_password
from gateway.config.errors import ConfigError
from gateway.config.loader import load_config
from tests.support.app import running_app, write_config
from tests.support.daemon import fieldgate
from tests.support.mosquitto import free_port

DEVICES = [{"id": "m1", "type": "simulated", "interval": 0.2}]
USERS = [{"name": "olga", "role": "operator",
          "password_hash": hash_password("operator-password-1")}]


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_lan_address_without_users_is_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"http": {"host": "0.0.0.0"}, "devices": DEVICES})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "http.users" in str(err.value) and "127.0.0.1" in str(err.value)


async def test_lan_without_tls_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = {"http": {"host": "0.0.0.0", "port": free_port(), "users": USERS}, "devices": DEVICES}
    with caplog.at_level(logging.WARNING, logger="gateway.http.server"):
        async with running_app(cfg, tmp_path):
            pass
    assert any("without TLS" in r.getMessage() and "http.tls.cert" in r.getMessage()
               for r in caplog.records)


async def test_tls_from_config_and_secure_cookie(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    port = free_port()
    cfg: dict[str, Any] = {"http": {"port": port, "users": USERS,
                                    "tls": {"cert": str(cert), "key": str(key)}},
                           "devices": DEVICES}
    ctx = ssl.create_default_context(cafile=str(cert))
    async with running_app(cfg, tmp_path), aiohttp.ClientSession() as http:
        async with http.post(f"https://127.0.0.1:{port}/api/v1/login", ssl=ctx,
                             json={"user": "olga", "password": "operator-password-1"}) as r:
            assert r.status == 200
            assert "Secure" in r.headers["Set-Cookie"]
        with pytest.raises(aiohttp.ClientError):  # plain HTTP is not served
            async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                await r.read()


async def test_loopback_without_users(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    jar = aiohttp.CookieJar(unsafe=True)
    async with running_app({"http": {"port": port}, "devices": DEVICES}, tmp_path), \
            aiohttp.ClientSession(cookie_jar=jar) as http:
        async with http.get(f"{base}/api/v1/devices") as r:  # reads need nothing
            assert r.status == 200
        async with http.post(f"{base}/api/v1/commands/ping", json={}) as r:
            assert r.status == 403 and (await r.json())["error"]["code"] == "csrf"
        async with http.get(f"{base}/api/v1/session") as r:
            session = await r.json()
        assert session["user"] == "local" and session["role"] == "operator"
        async with http.post(f"{base}/api/v1/commands/ping", json={},
                             headers={"X-CSRF-Token": session["csrf"]}) as r:
            assert r.status == 200
        # A page on another name that resolves to 127.0.0.1 (DNS rebinding) is refused.
        async with http.get(f"{base}/api/v1/devices", headers={"Host": "evil.example"}) as r:
            assert r.status == 421


def test_hash_password_cli() -> None:
    out = fieldgate("http", "hash-password", "--password", "a-long-dashboard-pass")
    assert out.returncode == 0, out.stderr
    assert verify_password("a-long-dashboard-pass", out.stdout.strip())
    short = fieldgate("http", "hash-password", "--password", "short")
    assert short.returncode == 2 and "at least 16" in short.stderr
    token = fieldgate("http", "new-token")
    assert token.returncode == 0 and "sha256:" in token.stdout
