"""A JSON POST on the aiohttp client: the same HTTP stack as the local API server.

One short-lived client session per notice: a notice every few seconds does not need a
connection pool, and nothing is left open when a channel is removed by a reload.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

MAX_BODY = 1 << 20


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes
    #: The response headers, names in lower case (``retry-after``).
    headers: Mapping[str, str] = field(default_factory=dict)

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def tls_context(ca_file: Path | None, cert_file: Path | None,
                key_file: Path | None) -> ssl.SSLContext | None:
    """A verifying client context with this CA bundle and client certificate (None when
    neither is set: aiohttp's default, the system store). Raises OSError naming the files
    when they cannot be loaded."""
    if ca_file is None and cert_file is None:
        return None
    try:
        ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        if cert_file is not None and key_file is not None:
            ctx.load_cert_chain(str(cert_file), str(key_file))
    except ssl.SSLError as err:
        raise OSError(f"TLS files {ca_file or ''} {cert_file or ''} cannot be loaded: "
                      f"{err}") from err
    return ctx


async def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float,
               tls: ssl.SSLContext | None = None) -> HttpResponse:
    """POST ``body``; raises OSError (refused, reset, TLS, timeouts) when no response arrived.
    ``tls``: the client context for an https url (None: verify with the system store).

    A non-2xx answer is a response like any other: the channel decides what it means.
    """
    import aiohttp  # loaded with the first notice, not with every gateway that has channels

    try:
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout), raise_for_status=False,
        ) as session, session.post(url, data=body, headers=dict(headers),
                                   allow_redirects=True,
                                   ssl=tls if tls is not None else True) as resp:
            body_in = bytearray()
            while len(body_in) < MAX_BODY:
                chunk = await resp.content.read(MAX_BODY - len(body_in))
                if not chunk:
                    break
                body_in += chunk
            return HttpResponse(resp.status, bytes(body_in),
                                {k.lower(): v for k, v in resp.headers.items()})
    except aiohttp.ClientError as err:
        if isinstance(err, OSError):  # connection refused, reset, certificate errors
            raise
        raise ConnectionError(f"{type(err).__name__}: {err}") from err
    except ValueError as err:  # aiohttp.InvalidURL is a ValueError too
        raise ConnectionError(f"bad url {url!r}: {err}") from err
