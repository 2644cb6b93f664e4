"""Security profiles 2 (TLS + Basic) and 3 (mutual TLS, CN = charger id) with real
certificates, and the in-process demo simulator started through the driver's tasks."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.exceptions import InvalidMessage, InvalidStatus

from drivers.ocpp.simulator import SimCharger
from gateway.model import DeviceStatus
from tests.drivers.ocpp.conftest import PASSWORD, charger, server


def _cert(cn: str, issuer_key: Any, issuer: x509.Name | None, ca: bool,
          san: bool = False) -> tuple[Any, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
    return key, builder.sign(issuer_key or key, hashes.SHA256())


def _write(path: Path, key: Any, cert: x509.Certificate) -> tuple[Path, Path]:
    crt, pem = path.with_suffix(".crt"), path.with_suffix(".key")
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return crt, pem


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    ca_key, ca = _cert("fieldgate test CA", None, None, ca=True)
    files = {"ca": _write(d / "ca", ca_key, ca)[0]}
    for cn in ("localhost", "cp-1", "cp-2"):
        key, cert = _cert(cn, ca_key, ca.subject, ca=False, san=cn == "localhost")
        files[cn], files[cn + ".key"] = _write(d / cn, key, cert)
    return files


def client_ctx(pki: dict[str, Path], cn: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=pki["ca"])
    if cn:
        ctx.load_cert_chain(pki[cn], pki[cn + ".key"])
    return ctx


async def test_profile2_tls_with_basic_auth(make_gateway: Any, pki: dict[str, Path]) -> None:
    tls = {"certfile": str(pki["localhost"]), "keyfile": str(pki["localhost.key"])}
    gw = await make_gateway([server(security_profile=2, tls=tls), charger("cp-1")])
    url = f"wss://localhost:{gw.driver.server.port}/ocpp"
    sim = SimCharger("cp-1", "1.6", url, password=PASSWORD, ssl_context=client_ctx(pki, None))
    gw.sims.append(sim)
    await sim.connect()
    assert await sim.boot() == "Accepted"
    bad = SimCharger("cp-1", "1.6", url, password="not-the-password!", ssl_context=client_ctx(
        pki, None))
    with pytest.raises(InvalidStatus) as info:
        await bad.connect()
    assert info.value.response.status_code == 401


async def test_profile3_mutual_tls_checks_cn(make_gateway: Any, pki: dict[str, Path]) -> None:
    tls = {"certfile": str(pki["localhost"]), "keyfile": str(pki["localhost.key"]),
           "cafile": str(pki["ca"])}
    gw = await make_gateway([server(security_profile=3, tls=tls), charger("cp-1"),
                             charger("cp-2")])
    url = f"wss://localhost:{gw.driver.server.port}/ocpp"
    good = SimCharger("cp-1", "2.0.1", url, ssl_context=client_ctx(pki, "cp-1"))
    gw.sims.append(good)
    await good.connect()
    assert await good.boot() == "Accepted"
    # cp-2's certificate presented for cp-1's id
    thief = SimCharger("cp-1", "2.0.1", url, ssl_context=client_ctx(pki, "cp-2"))
    with pytest.raises(InvalidStatus) as info:
        await thief.connect()
    assert info.value.response.status_code == 401
    # no client certificate: the server aborts the TLS handshake (with TLS 1.3 the client
    # notices when it reads the HTTP answer that never comes)
    anon = SimCharger("cp-2", "2.0.1", url, ssl_context=client_ctx(pki, None))
    with pytest.raises((ssl.SSLError, ConnectionError, InvalidMessage)):
        await anon.connect()
    assert "cp-2" not in gw.driver.hub.sessions


async def test_demo_simulator_runs_as_driver_task(make_gateway: Any) -> None:
    from drivers.ocpp.config import OcppDeviceConfig

    demo = [server(id_tags=[{"id_tag": "DEMO-TAG"}]),
            OcppDeviceConfig(id="sim-16", type="ocpp", simulate="1.6"),
            OcppDeviceConfig(id="sim-201", type="ocpp", simulate="2.0.1")]
    gw = await make_gateway(demo)
    tasks = [asyncio.create_task(factory(), name=name) for name, factory in gw.driver.tasks()
             if name.startswith("ocpp-sim")]
    assert len(tasks) == 2
    try:
        await gw.ctx.wait_for(lambda c: {e.device for e in c.events
                                         if e.type == "charging_order_created"}
                              == {"sim-16", "sim-201"}, timeout=10)
        assert gw.ctx.status_of("sim-16") is DeviceStatus.ONLINE
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
