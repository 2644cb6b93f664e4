"""Secure channels against a real asyncua server that offers only signed/encrypted endpoints
and requires a username: generated client certificates, the trust list, credentials."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from asyncua import ua
from asyncua.crypto import cert_gen, security_policies
from cryptography.x509.oid import ExtendedKeyUsageOID
from opcua_helpers import device, running, values

from drivers.opcua.simulator import InverterSimulator
from gateway.model import DeviceStatus

pytestmark = pytest.mark.asyncio(loop_scope="module")

PASSWORD = "s3cret-Pa55word"
SERVER_URI = "urn:fieldgate:test-server"


async def _pair(folder: Path, name: str, uri: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}_key.pem", folder / f"{name}_cert.der"
    await cert_gen.setup_self_signed_certificate(
        key, cert, uri, socket.gethostname(), [ExtendedKeyUsageOID.SERVER_AUTH], {}
    )
    return cert, key


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def secure(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, object]]:
    folder = tmp_path_factory.mktemp("pki")
    cert, key = await _pair(folder, "server", SERVER_URI)
    rogue_cert, _ = await _pair(folder, "rogue", SERVER_URI)  # same URI, different key
    sim = InverterSimulator(
        period=3600,
        certificate=cert,
        private_key=key,
        application_uri=SERVER_URI,
        users={"operator": PASSWORD},
        policies=[
            ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
            ua.SecurityPolicyType.Basic256Sha256_Sign,
            ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
            ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
        ],
    )
    await sim.start()
    await sim.set("Power", 3.25, ua.VariantType.Double)
    yield {"sim": sim, "cert": cert, "rogue": rogue_cert}
    await sim.stop()


def _gateway_log(caplog: pytest.LogCaptureFixture) -> str:
    """What the gateway side logged (the test server's own DEBUG log is not ours)."""
    return "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith("asyncua.server")
    )


def _secure_device(url: str, trusted: list[Path], password: str = PASSWORD, **sec: object):  # type: ignore[no-untyped-def]
    security = {
        "policy": "Basic256Sha256",
        "mode": "SignAndEncrypt",
        "generate_certificate": True,
        "trusted_server_certificates": [str(p) for p in trusted],
    }
    security.update(sec)
    return device(
        url,
        [{"points": [{"name": "power", "node": "ns=2;s=Inverter.Power"}]}],
        security=security,
        auth={"username": "operator", "password": password},
    )


@pytest.mark.parametrize(
    ("policy", "mode"),
    [
        ("Basic256Sha256", "SignAndEncrypt"),
        ("Basic256Sha256", "Sign"),
        ("Aes256Sha256RsaPss", "SignAndEncrypt"),
        ("Aes128Sha256RsaOaep", "SignAndEncrypt"),
    ],
)
async def test_secure_channel_with_generated_client_certificate(
    secure: dict[str, object],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    policy: str,
    mode: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    sim = secure["sim"]
    assert isinstance(sim, InverterSimulator)
    cfg = _secure_device(sim.url, [secure["cert"]], policy=policy, mode=mode)  # type: ignore[list-item]
    async with running(cfg, state_dir=tmp_path) as (driver, ctx):
        await ctx.wait_for(lambda c: 3.25 in values(c, "power"), 20)
        client = driver.sessions["inv-1"].client
        assert client is not None
        assert (
            client.security_policy.URI == getattr(security_policies, f"SecurityPolicy{policy}").URI
        )
        assert client.security_policy.Mode == getattr(ua.MessageSecurityMode, mode)
    generated = tmp_path / "opcua" / "inv-1"
    assert (generated / "client_cert.der").stat().st_size > 500
    assert (generated / "client_key.pem").stat().st_mode & 0o077 == 0
    assert f"connected to {sim.url} (security {policy}/{mode})" in caplog.text
    assert PASSWORD not in _gateway_log(caplog)


async def test_unknown_server_certificate_is_refused(
    secure: dict[str, object], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="drivers.opcua")
    sim = secure["sim"]
    assert isinstance(sim, InverterSimulator)
    cfg = _secure_device(sim.url, [secure["rogue"]])  # type: ignore[list-item]
    async with running(cfg, state_dir=tmp_path) as (_, ctx):
        await ctx.wait_for(lambda c: c.status_of("inv-1") is DeviceStatus.OFFLINE, 20)
        reason = ctx.statuses[-1][2]
        assert "is not trusted" in reason
        assert "add it to trusted_server_certificates" in reason
    assert ctx.samples == []
    assert DeviceStatus.ONLINE not in [s for _, s, _ in ctx.statuses]
    assert "is not trusted" in caplog.text
    library_errors = [r.getMessage() for r in caplog.records
                      if r.levelno >= logging.ERROR and not r.name.startswith("asyncua.server")]
    assert library_errors == []  # one WARNING of ours, no ERROR from asyncua per attempt


async def test_unknown_certificate_allowed_when_configured(
    secure: dict[str, object], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="drivers.opcua")
    sim = secure["sim"]
    assert isinstance(sim, InverterSimulator)
    cfg = _secure_device(sim.url, [], allow_unknown_server_certificate=True)
    async with running(cfg, state_dir=tmp_path) as (_, ctx):
        await ctx.wait_for(lambda c: 3.25 in values(c, "power"), 20)
    assert "accepting unknown server certificate" in caplog.text
    # the generated pair is kept and reused on the next start, not regenerated
    cert_file = tmp_path / "opcua" / "inv-1" / "client_cert.der"
    first = cert_file.read_bytes()
    async with running(cfg, state_dir=tmp_path) as (_, ctx):
        await ctx.wait_for(lambda c: 3.25 in values(c, "power"), 20)
    assert cert_file.read_bytes() == first


async def test_client_certificate_from_files(secure: dict[str, object], tmp_path: Path) -> None:
    key, cert = tmp_path / "own_key.pem", tmp_path / "own_cert.der"
    await cert_gen.setup_self_signed_certificate(
        key,
        cert,
        "urn:fieldgate:opcua-client",
        socket.gethostname(),
        [ExtendedKeyUsageOID.CLIENT_AUTH],
        {},
    )
    sim = secure["sim"]
    assert isinstance(sim, InverterSimulator)
    cfg = _secure_device(
        sim.url,
        [secure["cert"]],  # type: ignore[list-item]
        generate_certificate=False,
        certificate=str(cert),
        private_key=str(key),
    )
    state = tmp_path / "state"
    async with running(cfg, state_dir=state) as (driver, ctx):
        await ctx.wait_for(lambda c: 3.25 in values(c, "power"), 20)
        client = driver.sessions["inv-1"].client
        assert client is not None and client.security_policy.host_certificate == cert.read_bytes()
    assert not (state / "opcua").exists()  # nothing generated


async def test_wrong_password_is_refused_and_not_logged(
    secure: dict[str, object], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sim = secure["sim"]
    assert isinstance(sim, InverterSimulator)
    cfg = _secure_device(sim.url, [secure["cert"]], password="wrong-Pa55")  # type: ignore[list-item]
    async with running(cfg, state_dir=tmp_path) as (_, ctx):
        await ctx.wait_for(lambda c: c.status_of("inv-1") is DeviceStatus.OFFLINE, 20)
        assert "BadUserAccessDenied" in ctx.statuses[-1][2]
    assert ctx.samples == []
    assert "wrong-Pa55" not in _gateway_log(caplog)
    assert "wrong-Pa55" not in repr(cfg)
