"""The shared ``/api/v1/devices`` answer's gzip: compressed once per build for every client that
accepts it, and which ``Accept-Encoding`` headers do (see :class:`gateway.http.api.Api`)."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: The shared answer is gzipped (level 1) once, for the clients that accept it: ten pollers
#: of an 8,000-point site then get about 120 KB each instead of 580 KB. The one compression
#: costs the gateway less than the bigger socket writes it saves (bench/http_overhead.py
#: with and without --no-gzip: about 2 ms of CPU a second less at 10 pollers).
GZIP_LEVEL = 1
_deflate: Any = None


def gzip_parts(parts: Sequence[bytes]) -> bytes:
    """The concatenation of ``parts`` gzipped at :data:`GZIP_LEVEL` (no file name, time 0:
    the same answer gives the same bytes), by ISA-L (the ``isal`` package, which aiohttp can
    use too) where it is installed: at this level it is about four times faster than zlib
    for a slightly smaller result (580 KB of the bench's JSON: 0.4 ms against 1.7 ms on a
    busy 2-core machine); by the standard library's zlib elsewhere. Loaded on first use."""
    global _deflate
    if _deflate is None:
        module: Any = zlib  # no isal wheel for this machine: zlib does the same, slower
        with contextlib.suppress(ImportError):
            from isal import isal_zlib

            module = isal_zlib
        _deflate = module
    pack = _deflate.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: a gzip container
    out = [pack.compress(part) for part in parts]
    out.append(pack.flush())
    return b"".join(out)


@dataclass(slots=True)
class Shared:
    """The shared ``/api/v1/devices`` answer in pieces (:func:`views.devices_parts`), and
    its plain and gzipped forms once a client wants them."""

    built: float
    parts: list[bytes]
    _body: bytes | None = None
    _gzipped: bytes | None = None

    @property
    def body(self) -> bytes:
        if self._body is None:
            self._body = b"".join(self.parts)
        return self._body

    @property
    def gzipped(self) -> bytes:
        if self._gzipped is None:
            self._gzipped = gzip_parts(self.parts)
        return self._gzipped


#: What :func:`accepts_gzip` answered for the headers seen (pollers send the same one on
#: every request); at most :data:`_GZIP_KNOWN_MAX`, so odd headers cannot grow it.
_GZIP_KNOWN: dict[str, bool] = {}
_GZIP_KNOWN_MAX = 64


def accepts_gzip(header: str) -> bool:
    """Whether an ``Accept-Encoding`` header takes gzip: ``gzip``, or else ``*``, with a
    weight above 0."""
    known = _GZIP_KNOWN.get(header)
    if known is None:
        known = _parse_accepts_gzip(header)
        if len(_GZIP_KNOWN) < _GZIP_KNOWN_MAX:
            _GZIP_KNOWN[header] = known
    return known


def _parse_accepts_gzip(header: str) -> bool:
    weights: dict[str, float] = {}
    for item in header.split(","):
        name, _, params = item.partition(";")
        q = params.strip().lower()
        try:
            weight = float(q[2:]) if q.startswith("q=") else 1.0
        except ValueError:
            weight = 0.0
        weights[name.strip().lower()] = weight
    return weights.get("gzip", weights.get("*", 0.0)) > 0
