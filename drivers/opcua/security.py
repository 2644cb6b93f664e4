"""Client-side OPC-UA security: the client certificate (from files, or self-signed on first
start and kept in the state directory) and the trust list for server certificates.

asyncua accepts any server certificate unless a validator is installed; a gateway on a plant
network must not, so :class:`TrustList` refuses a certificate whose SHA-256 thumbprint is not
in the configured list unless the operator opted in with ``allow_unknown_server_certificate``.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from pathlib import Path

from asyncua import Client, ua
from asyncua.common.utils import ServiceError
from asyncua.crypto import cert_gen, security_policies
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID

from drivers.opcua.config import SecurityConfig, SecurityPolicy

log = logging.getLogger(__name__)

_POLICIES: dict[SecurityPolicy, type[security_policies.SecurityPolicy]] = {
    SecurityPolicy.BASIC256SHA256: security_policies.SecurityPolicyBasic256Sha256,
    SecurityPolicy.AES128_SHA256_RSAOAEP: security_policies.SecurityPolicyAes128Sha256RsaOaep,
    SecurityPolicy.AES256_SHA256_RSAPSS: security_policies.SecurityPolicyAes256Sha256RsaPss,
}
_CERT_SUFFIXES = {".der", ".pem", ".crt", ".cer"}


class UntrustedServerCertificate(Exception):
    """The server presented a certificate that is not in the trust list."""

    def __init__(self, thumbprint: str, subject: str) -> None:
        super().__init__(f"server certificate {subject} (SHA-256 {thumbprint}) is not trusted")
        self.thumbprint = thumbprint
        self.subject = subject


class RedactCredentials(logging.Filter):
    """asyncua logs every request it sends at DEBUG, ActivateSession included, and with a
    SignAndEncrypt channel the password in that request is plain text. Running the gateway at
    DEBUG must not put passwords into the journal, so the request is replaced by its name."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(
            type(a).__name__ == "ActivateSessionRequest" for a in args
        ):
            record.args = tuple(
                "ActivateSessionRequest(<redacted: carries credentials>)"
                if type(a).__name__ == "ActivateSessionRequest"
                else a
                for a in args
            )
        return True


_REDACT = RedactCredentials()
for _name in ("asyncua.client.ua_client.UASocketProtocol", "asyncua.client.ua_client"):
    logging.getLogger(_name).addFilter(_REDACT)


def thumbprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def certificate_uri(path: Path) -> str | None:
    """The application URI in a certificate's subjectAltName. A server checks that the client's
    ApplicationDescription carries exactly this URI (else BadCertificateUriInvalid)."""
    try:
        san = load_certificate_file(path).extensions.get_extension_for_class(
            x509.SubjectAlternativeName)
    except (OSError, ValueError, x509.ExtensionNotFound):
        return None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


#: What a server answers when it does not (yet) trust our certificate, or refuses something in
#: it. Most servers say only BadSecurityChecksFailed, and say it before the session.
REFUSED_CERTIFICATE = frozenset({
    ua.StatusCodes.BadSecurityChecksFailed,
    ua.StatusCodes.BadCertificateUntrusted,
    ua.StatusCodes.BadCertificateInvalid,
    ua.StatusCodes.BadCertificateRevoked,
    ua.StatusCodes.BadCertificateTimeInvalid,
    ua.StatusCodes.BadCertificateUseNotAllowed,
    ua.StatusCodes.BadCertificateIssuerRevocationUnknown,
    ua.StatusCodes.BadCertificateRevocationUnknown,
    ua.StatusCodes.BadCertificateUriInvalid,
})


def refused_certificate_reason(err: BaseException, certificate: Path) -> str | None:
    """An actionable reason when ``err`` (raised while opening a secure channel or session)
    means the server refused our certificate; None otherwise.

    A server that does not trust a client closes the channel during the handshake: asyncua
    then raises the status code of the server's Error message, or, when the server just hangs
    up half-way, an AssertionError or NotEnoughData from a truncated reply. Both are the most
    common commissioning step, so the reason names the file to trust and its thumbprints."""
    from asyncua.common.utils import NotEnoughData

    code = err.code if isinstance(err, ua.UaStatusCodeError) else None
    if code is None and not isinstance(err, AssertionError | NotEnoughData | EOFError):
        return None
    if code is not None and code not in REFUSED_CERTIFICATE:
        return None
    try:
        cert = load_certificate_file(certificate)
        prints = (f"SHA-1 thumbprint {cert.fingerprint(hashes.SHA1()).hex()}, "
                  f"SHA-256 {thumbprint(cert)}")
    except (OSError, ValueError):
        prints = "certificate file unreadable"
    said = (f"answered {ua.StatusCode(code).name}" if code is not None
            else f"closed the secure channel during the handshake ({type(err).__name__})")
    if code == ua.StatusCodes.BadCertificateUriInvalid:
        return (f"the server refused our certificate's application URI ({said}): the "
                f"certificate {certificate} names {certificate_uri(certificate)!r}; use a "
                "certificate whose URI matches, or leave application_uri unset")
    return (f"the server refused our certificate ({said}): trust {certificate} ({prints}) on "
            "the server, e.g. move it from the server's rejected to its trusted certificates; "
            "the gateway keeps retrying and connects once it is trusted")


def load_certificate_file(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    if b"-----BEGIN CERTIFICATE-----" in data:
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


class TrustList:
    """Thumbprints of trusted server certificates, read from files or directories."""

    def __init__(self, locations: list[Path], allow_unknown: bool, device: str) -> None:
        self.device = device
        self.allow_unknown = allow_unknown
        self.thumbprints: set[str] = set()
        for location in locations:
            files = sorted(location.iterdir()) if location.is_dir() else [location]
            for file in files:
                if file.is_dir() or (location.is_dir() and file.suffix not in _CERT_SUFFIXES):
                    continue
                try:
                    self.thumbprints.add(thumbprint(load_certificate_file(file)))
                except (OSError, ValueError) as err:
                    log.warning(
                        "opcua device %s: cannot read trusted certificate %s (%s); it is ignored, "
                        "fix or remove the file",
                        device,
                        file,
                        err,
                    )
        self.last_refused: UntrustedServerCertificate | None = None

    async def validate(self, cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        """asyncua's certificate_validator hook, called during CreateSession."""
        tp = thumbprint(cert)
        if tp in self.thumbprints:
            return
        subject = cert.subject.rfc4514_string()
        if self.allow_unknown:
            log.warning(
                "opcua device %s: accepting unknown server certificate %s (SHA-256 %s) because "
                "allow_unknown_server_certificate is set; add it to trusted_server_certificates",
                self.device,
                subject,
                tp,
            )
            return
        self.last_refused = UntrustedServerCertificate(tp, subject)
        raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)


@dataclass(frozen=True)
class ClientCredentials:
    certificate: Path
    private_key: Path


async def client_credentials(
    cfg: SecurityConfig, device: str, state_dir: Path
) -> ClientCredentials | None:
    """The client certificate pair, generating a self-signed one when configured."""
    if cfg.policy is SecurityPolicy.NONE:
        return None
    if cfg.certificate is not None and cfg.private_key is not None:
        return ClientCredentials(cfg.certificate, cfg.private_key)
    folder = state_dir / "opcua" / device
    folder.mkdir(parents=True, exist_ok=True)
    key, cert = folder / "client_key.pem", folder / "client_cert.der"
    existed = key.is_file() and cert.is_file()
    await cert_gen.setup_self_signed_certificate(
        key,
        cert,
        cfg.application_uri,
        socket.gethostname(),
        [ExtendedKeyUsageOID.CLIENT_AUTH],
        {"commonName": f"fieldgate {device}"},
    )
    if not existed:
        key.chmod(0o600)
        log.info(
            "opcua device %s: generated a self-signed client certificate %s; servers must trust "
            "it (copy it into the server's trusted folder)",
            device,
            cert,
        )
    return ClientCredentials(cert, key)


async def apply_security(
    client: Client, cfg: SecurityConfig, creds: ClientCredentials | None, trust: TrustList
) -> None:
    """Configure a fresh client. Fetches the server endpoints, so it needs the server up.

    The application URI is the certificate's: a server refuses a session whose URI differs
    from the one in the client certificate (BadCertificateUriInvalid)."""
    client.application_uri = cfg.application_uri
    if cfg.policy is SecurityPolicy.NONE or creds is None:
        return
    client.application_uri = certificate_uri(creds.certificate) or cfg.application_uri
    client.certificate_validator = trust.validate
    mode = getattr(ua.MessageSecurityMode, str(cfg.mode))
    await client.set_security(
        _POLICIES[cfg.policy], str(creds.certificate), str(creds.private_key), mode=mode
    )
