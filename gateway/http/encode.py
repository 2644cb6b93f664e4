"""The JSON of the big views (every point of every device), written by orjson.

A site of 8,000 points makes ``/api/v1/devices`` half a megabyte, rebuilt once a second
when its devices sample faster than that. :class:`PointsJson` keeps each device's points as
dicts, fills them again in place from the samples and has orjson write them (2,005 points, on a
busy 2-core machine: about 1 ms, against 2 ms for fresh dicts through orjson and 5 ms for
text written point by point in Python), and keeps the bytes until the device has news (the
observer's per-device generation, :attr:`LatestValues.generation`), so a device polled
every 10 s is encoded once per poll however many clients ask, and a quiet device not at
all. The live stream's samples go through orjson too (:func:`samples_json`).

orjson writes compact JSON (no spaces after ``,`` and ``:``) and UTF-8 rather than
``\\u`` escapes; the values are what ``json.dumps`` of the dict views in
:mod:`gateway.http.views` says (NaN and infinities as ``null``), which stay the reference
(``devices.list`` answers with those) and which the tests compare after parsing. What orjson
cannot take (an integer beyond 64 bits, a lone surrogate, a float subclass) falls back to
the standard library's encoder for that device or that send. orjson is loaded on the first
use: a gateway without the HTTP server does not pay its 1.9 MB.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.http.live import DeviceValues, LatestValues
from gateway.model import Quality
from gateway.safejson import finite

_string: Any = json.encoder.encode_basestring_ascii
_QUALITY = {q: _string(str(q)) for q in Quality}


_orjson: Any = None


def _fast() -> Any:
    global _orjson
    if _orjson is None:
        import orjson

        _orjson = orjson
    return _orjson


def dumps(data: Any) -> str:
    return json.dumps(data, default=str, allow_nan=False)


def dumpb(data: Any) -> bytes:
    """``data`` as compact JSON bytes by orjson; by ``json.dumps`` where orjson refuses."""
    fast = _fast()
    try:
        out: bytes = fast.dumps(data, default=_default)
    except (fast.JSONEncodeError, TypeError):
        return dumps(finite(data)).encode()
    return out


def _default(obj: Any) -> Any:
    """What ``json.dumps(default=str)`` makes of what orjson does not take natively."""
    if isinstance(obj, float):  # a float subclass
        return float(obj)
    if isinstance(obj, int):
        return int(obj)
    return str(obj)



def samples_json(samples: Sequence[tuple[Any, ...]]) -> bytes:
    """The live stream's ``[[device, point, ts, value, quality], ...]`` from Samples or plain
    tuples of those five fields."""
    fast = _fast()
    try:
        # A Sample is a named tuple, which orjson does not take: each becomes a plain tuple
        # in C (a ``default=tuple`` hook would be a Python call per sample); a plain tuple
        # is itself.
        out: bytes = fast.dumps(list(map(tuple, samples)))
    except (fast.JSONEncodeError, TypeError):
        return dumps([[s[0], s[1], s[2], finite(s[3]), str(s[4])] for s in samples]).encode()
    return out


def value_json(value: Any) -> str:
    """One point value as JSON; NaN and infinities (a bad-quality reading may carry one)
    become null, as :func:`gateway.http.views.json_value` makes them."""
    kind = type(value)
    if kind is float:
        return float.__repr__(value) if math.isfinite(value) else "null"
    if kind is int:
        return int.__repr__(value)
    if kind is str:
        return str(_string(value))
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "null"
    return dumps(value)


def quality_json(quality: Any) -> str:
    return _QUALITY.get(quality) or str(_string(str(quality)))


@dataclass(slots=True)
class _Encoded:
    generation: int
    text: bytes
    last_seen: int | None


@dataclass(slots=True)
class _View:
    """A device's points as the dicts orjson writes, in name order, filled again at each
    encode; ``slots``: per column of the device, its points' dicts in the column's order."""

    shape: tuple[int, int]  # the device's (version, len(loose)) it was built for
    tree: dict[str, dict[str, Any]]
    slots: dict[int, list[dict[str, Any]]]
    loose: list[dict[str, Any]]  # the loose points' dicts in the order of ``loose``

    @classmethod
    def of(cls, values: DeviceValues) -> _View:
        tree: dict[str, dict[str, Any]] = {p: {"value": None, "quality": None, "ts": None}
                                           for p in sorted(values.names())}
        slots = {key: [tree[p] for p in names] for key, (names, _v, _t) in values.columns.items()}
        # ``loose`` keeps its order while the shape stands (it only gains points, at its end)
        return cls((values.version, len(values.loose)), tree, slots,
                   [tree[p] for p in values.loose])


@dataclass
class PointsJson:
    """Each device's ``{point: {value, quality, ts}}`` as JSON bytes, sorted by point name,
    re-encoded only after the device had news."""

    latest: LatestValues
    _cache: dict[str, _Encoded] = field(default_factory=dict)
    #: Per device, what encoding it reuses: rebuilt when the device's shape changes (points
    #: are never removed from the last-value view).
    _views: dict[str, _View] = field(default_factory=dict)
    encoded: int = 0  # devices encoded so far (tests and the bench read it)

    def points(self, device: str) -> tuple[bytes, int | None]:
        """The device's points object and its newest timestamp (its ``last_seen``)."""
        generation = self.latest.generation.get(device, 0)
        hit = self._cache.get(device)
        if hit is not None and hit.generation == generation:
            return hit.text, hit.last_seen
        values = self.latest.values.get(device)
        if not values:
            text, newest = b"{}", None
        else:
            text, newest = self._encode(device, values)
        self._cache[device] = _Encoded(generation, text, newest)
        self.encoded += 1
        return text, newest

    def _encode(self, device: str, values: DeviceValues) -> tuple[bytes, int | None]:
        view = self._views.get(device)
        if view is None or view.shape != (values.version, len(values.loose)):
            view = self._views[device] = _View.of(values)
        # Each point's dict is kept and filled again: three stores instead of a new dict (and
        # its deallocation) per point, half the cost of building the view afresh. Columns
        # first, then the loose samples, which are newer (gateway.http.live.DeviceValues).
        good = Quality.GOOD
        slots = view.slots
        for key, (_names, column, ts) in values.columns.items():
            for point, value in zip(slots[key], column, strict=True):
                point["value"] = value
                point["quality"] = good
                point["ts"] = ts
        if values.loose:
            for point, s in zip(view.loose, values.loose.values(), strict=True):
                point["value"] = s[3]
                point["quality"] = s[4]
                point["ts"] = s[2]
        newest = values.last_seen()
        fast = _fast()
        try:
            text: bytes = fast.dumps(view.tree)
        except (fast.JSONEncodeError, TypeError):
            text = self._slow(values.samples(), list(view.tree))
        return text, newest

    @staticmethod
    def _slow(values: dict[str, Any], names: list[str]) -> bytes:
        """What orjson refuses (an integer beyond 64 bits...): point by point."""
        parts = []
        for point in names:
            s = values[point]
            parts.append(f'{_string(point)}: {{"value": {value_json(s.value)}, '
                         f'"quality": {quality_json(s.quality)}, "ts": {s.ts_ms}}}')
        return ("{" + ", ".join(parts) + "}").encode()
