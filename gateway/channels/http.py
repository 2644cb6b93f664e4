"""A JSON POST with the standard library, in a worker thread.

aiohttp is not a dependency of fieldgate and a notice every few seconds does not need it:
urllib in ``asyncio.to_thread`` keeps the event loop free and adds nothing to install.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def _post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> HttpResponse:
    req = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return HttpResponse(resp.status, resp.read(1 << 20))
    except urllib.error.HTTPError as err:  # a response, just not a 2xx one
        return HttpResponse(err.code, err.read(1 << 20) if err.fp else b"")


async def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> HttpResponse:
    """POST ``body``; raises OSError (URLError, timeouts) when no response arrived."""
    return await asyncio.to_thread(_post, url, body, headers, timeout)
