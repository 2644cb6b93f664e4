"""TLS and credentials against a real mosquitto TLS listener (issue 3).

The certificates are made here with ``cryptography``: a trusted CA, a server certificate for
127.0.0.1/localhost and a client certificate signed by it, and a second CA the gateway does
not trust (plus a server certificate from it). Each test starts its own broker on a free
loopback port; the gateway runs in-process with simulated devices.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import logging
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.runtime import App
from gateway.store.db import read_stats
from gateway.uplink.component import Uplink
from tests.gateway.uplink.helpers import BASE, site
from tests.gateway.uplink.wirecheck import KINDS, WireRecorder
from tests.support.app import running_app
from tests.support.mosquitto import Mosquitto, TlsListener
from tests.support.wait import stays, wait_until

USER, PASSWORD, WRONG_PASSWORD = "gw-user", "Corr3ct-h0rse-pw", "Wr0ng-battery-pw"

# -- a small PKI ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Path  # the trusted CA certificate
    server: Issued  # 127.0.0.1 + localhost, signed by ca
    client: Issued  # a client certificate signed by ca
    other_ca: Path  # a CA nobody trusts
    other_client: Issued  # a client certificate signed by other_ca
    misnamed_server: Issued  # signed by ca, but for broker.example only


def _write(path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> Issued:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    return Issued(path.with_suffix(".crt"), path.with_suffix(".key"))


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
          issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool = False,
          server: bool = False, names: tuple[str, ...] = ("127.0.0.1", "localhost"),
          ) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer is not None else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
    )
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False)
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False)
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [_san(n) for n in names]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _authority(directory: Path, name: str) -> tuple[Path, Issued, Issued]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _cert(f"{name} CA", ca_key, None, ca_key, ca=True)
    ca = _write(directory / f"{name}-ca", ca_key, ca_cert).cert
    issued = []
    for subject, server in ((f"{name} broker", True), (f"{name} gateway", False)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(subject, key, ca_cert, ca_key, server=server)
        issued.append(_write(directory / f"{name}-{'server' if server else 'client'}",
                             key, cert))
    return ca, issued[0], issued[1]


def _misnamed(directory: Path, ca: Issued) -> Issued:
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert("misnamed broker", key, ca_cert, ca_key, server=True, names=("broker.example",))
    return _write(directory / "misnamed-server", key, cert)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca, server, client = _authority(directory, "trusted")
    other_ca, _, other_client = _authority(directory, "untrusted")
    misnamed = _misnamed(directory, Issued(ca, directory / "trusted-ca.key"))
    return Pki(ca, server, client, other_ca, other_client, misnamed)


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """Start TLS brokers for one test: ``brokers(tls=..., users=...)``; all stopped after."""
    started: list[Mosquitto] = []

    def start(**kwargs: Any) -> Mosquitto:
        broker = Mosquitto(tmp_path, **kwargs)
        broker.start()
        started.append(broker)
        return broker

    yield start
    for broker in started:
        broker.stop()


def listener(pki: Pki, *, require_certificate: bool = False) -> TlsListener:
    """The broker's TLS: the trusted server certificate; client certificates checked
    against the trusted CA."""
    return TlsListener(pki.ca, pki.server.cert, pki.server.key,
                       require_certificate=require_certificate)


# -- the gateway and a TLS subscriber ---------------------------------------------------------


def tls_site(broker: Mosquitto, tls: dict[str, Any], **broker_extra: Any) -> dict[str, Any]:
    cfg = site(broker, devices=1)
    cfg["uplink"]["broker"] = {"host": broker.host, "port": broker.port, "keepalive": 4,
                               "connect_timeout": 3, "tls": {k: str(v) if isinstance(v, Path)
                                                             else v for k, v in tls.items()},
                               **broker_extra}
    return cfg


def uplink_of(app: App) -> Uplink:
    return next(c for c in app.components if isinstance(c, Uplink))


@contextlib.asynccontextmanager
async def tls_recorder(broker: Mosquitto, pki: Pki, *, client_cert: bool = False,
                       username: str | None = None, password: str | None = None,
                       check_hostname: bool = True) -> AsyncIterator[WireRecorder]:
    """A WireRecorder fed by a subscriber that verifies the broker with the trusted CA."""
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    ctx.check_hostname = check_hostname
    if client_cert:
        ctx.load_cert_chain(str(pki.client.cert), str(pki.client.key))
    rec = WireRecorder(broker.host, broker.port, BASE)
    subscribed = asyncio.Event()

    async def run() -> None:
        async with aiomqtt.Client(broker.host, broker.port, identifier="tls-recorder",
                                  tls_context=ctx, username=username, password=password,
                                  keepalive=5) as client:
            for kind in KINDS:
                await client.subscribe(f"{BASE}/{kind}", qos=1)
            subscribed.set()
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                rec.on_message(str(message.topic), message.payload, bool(message.retain))

    task = asyncio.create_task(run(), name="tls-recorder")
    ready = asyncio.create_task(subscribed.wait())
    await asyncio.wait({task, ready}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if not subscribed.is_set():
        ready.cancel()
        if task.done():
            task.result()  # the subscriber's own connect error
        task.cancel()
        raise AssertionError("the TLS test subscriber did not connect")
    try:
        yield rec
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert not task.done() or task.cancelled(), "the subscriber lost its link"


async def forwards_everything(broker: Mosquitto, cfg: dict[str, Any], tmp_path: Path,
                              pki: Pki, **recorder: Any) -> None:
    """The gateway connects, every row it committed arrives once, in order, valid."""
    async with tls_recorder(broker, pki, **recorder) as rec:
        async with running_app(cfg, tmp_path) as app:
            await rec.wait_for(lambda g: g.high >= 40, 15, "telemetry over TLS")
            await rec.wait_for(lambda g: any(s["state"] == "online" for s in g.status), 5,
                               "birth message")
            assert uplink_of(app).stats.connects == 1
        stats = read_stats(app.store.path)
        await rec.wait_for(lambda g: g.high == stats.next_seq - 1, 5, "every row")
    assert stats.acked_seq == stats.next_seq - 1
    assert not rec.got.gaps and not rec.got.duplicates
    assert sorted(rec.got.rows) == list(range(1, stats.next_seq))
    assert rec.got.status[-1]["state"] == "offline"
    rec.assert_valid()


async def refused(broker: Mosquitto, cfg: dict[str, Any], tmp_path: Path, pki: Pki,
                  caplog: pytest.LogCaptureFixture, **recorder: Any) -> str:
    """The gateway never gets a session: it keeps buffering (seq grows, nothing acked),
    publishes nothing, and says so at WARNING naming the broker. Returns that log text."""
    caplog.set_level(logging.WARNING, logger="gateway")
    async with tls_recorder(broker, pki, **recorder) as rec:
        async with running_app(cfg, tmp_path) as app:
            uplink = uplink_of(app)
            await wait_until(lambda: uplink.stats.disconnects >= 3, 10,  # each one failed
                             what="several connection attempts")
            seq_before = (await app.store.stats()).next_seq - 1

            async def buffering() -> bool:
                return (await app.store.stats()).next_seq - 1 > seq_before > 0

            await wait_until(buffering, 10, what="buffering goes on")
            assert not uplink.connected.is_set()
            assert uplink.stats.connects == 0
            assert uplink.stats.telemetry_messages == uplink.stats.samples == 0
            assert await app.store.acked_seq() == 0
        # Give a message that might have slipped out time to reach the subscriber.
        await stays(lambda: rec.got.messages == 0 and not rec.got.status, 0.3,
                    what="nothing published")
    assert rec.got.messages == 0 and rec.got.status == [] and rec.got.events == []
    assert read_stats(app.store.path).acked_seq == 0
    lines = [r.getMessage() for r in caplog.records
             if r.levelno >= logging.WARNING and r.name.startswith("gateway.uplink")]
    down = [line for line in lines if f"{broker.host}:{broker.port}" in line]
    assert down, f"no warning names the broker: {lines}"
    return "\n".join(down)


# -- the tests --------------------------------------------------------------------------------


async def test_verified_tls_forwards_telemetry(pki: Pki, brokers: Callable[..., Mosquitto],
                                               tmp_path: Path) -> None:
    broker = brokers(tls=listener(pki))
    await forwards_everything(broker, tls_site(broker, {"ca_file": pki.ca}), tmp_path, pki)


async def test_untrusted_broker_certificate_is_refused(
        pki: Pki, brokers: Callable[..., Mosquitto], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    broker = brokers(tls=listener(pki))
    text = await refused(broker, tls_site(broker, {"ca_file": pki.other_ca}), tmp_path, pki,
                         caplog)
    assert "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text, text


async def test_host_name_must_match_the_certificate(
        pki: Pki, brokers: Callable[..., Mosquitto], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """The CA is trusted but the certificate names another host: refused (check_hostname)."""
    broker = brokers(tls=TlsListener(pki.ca, pki.misnamed_server.cert, pki.misnamed_server.key))
    text = await refused(broker, tls_site(broker, {"ca_file": pki.ca}), tmp_path, pki, caplog,
                         check_hostname=False)
    assert "mismatch" in text.lower() or "doesn't match" in text, text


async def test_insecure_skip_verify_connects_to_an_untrusted_broker(
        pki: Pki, brokers: Callable[..., Mosquitto], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gateway")
    broker = brokers(tls=listener(pki))
    cfg = tls_site(broker, {"ca_file": pki.other_ca, "insecure_skip_verify": True})
    await forwards_everything(broker, cfg, tmp_path, pki)
    assert any("verification is OFF" in r.getMessage() for r in caplog.records)


async def test_mutual_tls_with_a_client_certificate(
        pki: Pki, brokers: Callable[..., Mosquitto], tmp_path: Path) -> None:
    broker = brokers(tls=listener(pki, require_certificate=True))
    cfg = tls_site(broker, {"ca_file": pki.ca, "cert_file": pki.client.cert,
                            "key_file": pki.client.key})
    await forwards_everything(broker, cfg, tmp_path, pki, client_cert=True)


async def test_mutual_tls_without_a_client_certificate_is_refused(
        pki: Pki, brokers: Callable[..., Mosquitto], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    broker = brokers(tls=listener(pki, require_certificate=True))
    text = await refused(broker, tls_site(broker, {"ca_file": pki.ca}), tmp_path, pki, caplog,
                         client_cert=True)
    assert "CERTIFICATE_REQUIRED" in text, text


async def test_mutual_tls_with_an_untrusted_client_certificate_is_refused(
        pki: Pki, brokers: Callable[..., Mosquitto], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    broker = brokers(tls=listener(pki, require_certificate=True))
    cfg = tls_site(broker, {"ca_file": pki.ca, "cert_file": pki.other_client.cert,
                            "key_file": pki.other_client.key})
    text = await refused(broker, cfg, tmp_path, pki, caplog, client_cert=True)
    assert "UNKNOWN_CA" in text, text


async def test_password_over_tls(pki: Pki, brokers: Callable[..., Mosquitto],
                                 tmp_path: Path) -> None:
    broker = brokers(tls=listener(pki), users={USER: PASSWORD, "reader": "reader-pw"})
    cfg = tls_site(broker, {"ca_file": pki.ca}, username=USER, password=PASSWORD)
    await forwards_everything(broker, cfg, tmp_path, pki, username="reader",
                              password="reader-pw")


async def test_wrong_password_is_refused_and_never_logged(
        pki: Pki, brokers: Callable[..., Mosquitto], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    broker = brokers(tls=listener(pki), users={USER: PASSWORD, "reader": "reader-pw"})
    cfg = tls_site(broker, {"ca_file": pki.ca}, username=USER, password=WRONG_PASSWORD)
    caplog.set_level(logging.DEBUG)  # every logger, every level: paho's debug lines too
    text = await refused(broker, cfg, tmp_path, pki, caplog, username="reader",
                         password="reader-pw")
    assert "authori" in text.lower() or "password" in text.lower(), text
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert WRONG_PASSWORD not in everything and PASSWORD not in everything
