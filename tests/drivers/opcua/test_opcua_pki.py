"""Commissioning against an asyncua server with its own PKI for client certificates, as PLCs
have: an unknown client certificate lands in the server's ``rejected`` folder and the client is
refused with BadSecurityChecksFailed until an operator moves it to ``trusted``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from asyncua import ua
from asyncua.common.utils import NotEnoughData
from asyncua.crypto import cert_gen
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID
from opcua_helpers import device, running, values

from drivers.opcua import SPEC
from drivers.opcua.config import SecurityConfig
from drivers.opcua.security import (
    client_credentials,
    load_certificate_file,
    refused_certificate_reason,
)
from drivers.opcua.simulator import InverterSimulator
from gateway.model import DeviceStatus
from tests.support.wait import let_tasks_run

SERVER_URI = "urn:fieldgate:test-plc"


@pytest_asyncio.fixture
async def plc(tmp_path: Path) -> AsyncIterator[InverterSimulator]:
    key, cert = tmp_path / "server_key.pem", tmp_path / "server_cert.der"
    await cert_gen.setup_self_signed_certificate(
        key, cert, SERVER_URI, socket.gethostname(), [ExtendedKeyUsageOID.SERVER_AUTH], {}
    )
    sim = InverterSimulator(
        period=3600, certificate=cert, private_key=key, application_uri=SERVER_URI,
        client_pki=tmp_path / "plc-pki",
        policies=[ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt],
    )
    await sim.start()
    await sim.set("Power", 7.5, ua.VariantType.Double)
    yield sim
    await sim.stop()


def _ours(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    """Records at ``level`` or above, except the test server's own log."""
    return [r for r in caplog.records
            if r.levelno >= level and not r.name.startswith("asyncua.server")]


async def test_untrusted_client_certificate_gives_an_actionable_reason_and_no_error_log(
    plc: InverterSimulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    state = tmp_path / "state"
    cfg = device(
        plc.url, [{"points": [{"name": "power", "node": "ns=2;s=Inverter.Power"}]}],
        security={"policy": "Basic256Sha256", "mode": "SignAndEncrypt",
                  "generate_certificate": True,
                  "trusted_server_certificates": [str(plc.certificate)]},
    )
    ours = state / "opcua" / "inv-1" / "client_cert.der"
    async with running(cfg, state_dir=state) as (_driver, ctx):
        await ctx.wait_for(lambda c: c.status_of("inv-1") is DeviceStatus.OFFLINE, 20)
        rejected = plc.client_pki / "rejected"  # type: ignore[operator]
        await ctx.wait_for(lambda c: len(c.statuses) >= 1 and rejected.is_dir(), 20)
        reason = ctx.statuses[-1][2]
        sha1 = load_certificate_file(ours).fingerprint(hashes.SHA1()).hex()
        assert [f.stem for f in rejected.iterdir()] == [sha1]  # what the PLC's operator sees
        assert reason.startswith("the server refused our certificate (answered "
                                 "BadSecurityChecksFailed): trust "
                                 f"{ours} (SHA-1 thumbprint {sha1}, SHA-256 ")
        assert "on the server" in reason
        # a few more attempts: still one WARNING, and nothing at ERROR from anyone
        await let_tasks_run(1)
        n = len(caplog.records)
        await ctx.wait_for(lambda c: sum("(attempt 3)" in r.getMessage()
                                         for r in caplog.records[n:]) > 0, 20)
        assert _ours(caplog, logging.ERROR) == []
        warnings = [r for r in _ours(caplog, logging.WARNING) if r.name.startswith("drivers")]
        assert len(warnings) == 1 and "trust " in warnings[0].getMessage()

        # the operator trusts it: the device comes online by itself
        shutil.copy(ours, plc.client_pki / "trusted" / "fieldgate.der")  # type: ignore[operator]
        await ctx.wait_for(lambda c: 7.5 in values(c, "power"), 20)
    assert _ours(caplog, logging.ERROR) == []


async def test_browse_with_the_gateways_own_certificate(
    plc: InverterSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sec = SecurityConfig(policy="Basic256Sha256", generate_certificate=True,
                         application_uri="urn:fieldgate:site-7:inv-1",
                         trusted_server_certificates=[plc.certificate])
    creds = await client_credentials(sec, "inv-1", tmp_path / "state")
    assert creds is not None
    parser = argparse.ArgumentParser(prog="fieldgate")
    assert SPEC.cli is not None
    SPEC.cli(parser.add_subparsers(dest="command"))
    argv = ["opcua", "browse", plc.url, "ns=2;s=Inverter", "--depth", "1", "--security",
            f"Basic256Sha256,SignAndEncrypt,{creds.certificate},{creds.private_key}"]

    args = parser.parse_args(argv)  # not trusted yet: one actionable line
    assert await asyncio.to_thread(args.func, args) == 2
    err = capsys.readouterr().err
    assert "the server refused our certificate" in err and f"trust {creds.certificate}" in err
    assert "Traceback" not in err

    shutil.copy(creds.certificate, plc.client_pki / "trusted" / "gw.der")  # type: ignore[operator]
    args = parser.parse_args(argv)
    code = await asyncio.to_thread(args.func, args)
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert "2:Power  [ns=2;s=Inverter.Power]  Variable  Double = 7.5" in out


async def test_a_given_client_certificate_brings_its_own_application_uri(
    plc: InverterSimulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A certificate from the site's CA names its own URI, not our default: the session
    must carry that URI or the server answers BadCertificateUriInvalid."""
    key, cert = tmp_path / "site_key.pem", tmp_path / "site_cert.der"
    await cert_gen.setup_self_signed_certificate(
        key, cert, "urn:site-7:gateway", socket.gethostname(),
        [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": "gateway"})
    (plc.client_pki / "trusted").mkdir(parents=True, exist_ok=True)  # type: ignore[operator]
    shutil.copy(cert, plc.client_pki / "trusted" / "site.der")  # type: ignore[operator]
    cfg = device(
        plc.url, [{"points": [{"name": "power", "node": "ns=2;s=Inverter.Power"}]}],
        security={"policy": "Basic256Sha256", "mode": "SignAndEncrypt",
                  "certificate": str(cert), "private_key": str(key),
                  "trusted_server_certificates": [str(plc.certificate)]},
    )
    assert cfg.security.application_uri != "urn:site-7:gateway"
    async with running(cfg, state_dir=tmp_path / "state") as (_driver, ctx):
        await ctx.wait_for(lambda c: 7.5 in values(c, "power"), 20)


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (ua.UaStatusCodeError(ua.StatusCodes.BadSecurityChecksFailed),
         "the server refused our certificate (answered BadSecurityChecksFailed): trust "),
        (ua.UaStatusCodeError(ua.StatusCodes.BadCertificateUntrusted),
         "the server refused our certificate (answered BadCertificateUntrusted): trust "),
        (AssertionError(), "the server refused our certificate (closed the secure channel "
                           "during the handshake (AssertionError)): trust "),
        (NotEnoughData("Not enough data left in buffer"),
         "the server refused our certificate (closed the secure channel during the handshake "
         "(NotEnoughData)): trust "),
        (ua.UaStatusCodeError(ua.StatusCodes.BadCertificateUriInvalid),
         "the server refused our certificate's application URI (answered "
         "BadCertificateUriInvalid): the certificate "),
        (ua.UaStatusCodeError(ua.StatusCodes.BadTimeout), None),
        (ConnectionRefusedError(), None),
    ],
)
async def test_refusal_kinds_translated(
    tmp_path: Path, err: BaseException, expected: str | None
) -> None:
    """Servers refuse in different ways: a status in an Error message or a ServiceFault, or a
    channel closed half-way, which asyncua surfaces as AssertionError or NotEnoughData."""
    key, cert = tmp_path / "k.pem", tmp_path / "c.der"
    await cert_gen.setup_self_signed_certificate(
        key, cert, "urn:x", socket.gethostname(), [ExtendedKeyUsageOID.CLIENT_AUTH], {})
    reason = refused_certificate_reason(err, cert)
    if expected is None:
        assert reason is None
        return
    assert reason is not None and reason.startswith(expected)
    if "application URI" in expected:
        assert "names 'urn:x'" in reason
    else:
        sha1 = load_certificate_file(cert).fingerprint(hashes.SHA1()).hex()
        assert f"trust {cert} (SHA-1 thumbprint {sha1}, SHA-256 " in reason
        assert "on the server" in reason
