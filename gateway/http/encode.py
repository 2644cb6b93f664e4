"""The JSON of the big views (every point of every device), written straight from the samples.

A site of 8,000 points makes ``/api/v1/devices`` half a megabyte. Building it as dicts and
running ``json.dumps`` costs about twice what writing the text directly from the samples
does, and creates two objects per point for the garbage collector to walk.
:class:`PointsJson` writes each device's ``points`` object from its samples and keeps the
text until the device has news (the observer's per-device generation,
:attr:`LatestValues.generation`), so a device polled every 10 s is encoded once per poll
however many clients ask, and a quiet device not at all.

The text is byte for byte what ``json.dumps`` (default separators, ``ensure_ascii``) gives
for the same dicts, so the dict views in :mod:`gateway.http.views` stay the reference
(``devices.list`` on the control socket and MQTT answers with those) and the tests compare
the two.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from gateway.http.live import LatestValues
from gateway.model import Quality

_string: Any = json.encoder.encode_basestring_ascii
_QUALITY = {q: _string(str(q)) for q in Quality}


def dumps(data: Any) -> str:
    return json.dumps(data, default=str, allow_nan=False)


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
    text: str
    last_seen: int | None


@dataclass
class PointsJson:
    """Each device's ``{point: {value, quality, ts}}`` as JSON text, sorted by point name,
    re-encoded only after the device had news."""

    latest: LatestValues
    _cache: dict[str, _Encoded] = field(default_factory=dict)
    #: Per device: its point names, sorted, each with its JSON key; rebuilt when a device
    #: gains a point (points are never removed from the last-value view).
    _names: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    encoded: int = 0  # devices encoded so far (tests and the bench read it)

    def points(self, device: str) -> tuple[str, int | None]:
        """The device's points object and its newest timestamp (its ``last_seen``)."""
        generation = self.latest.generation.get(device, 0)
        hit = self._cache.get(device)
        if hit is not None and hit.generation == generation:
            return hit.text, hit.last_seen
        values = self.latest.values.get(device, {})
        names = self._names.get(device)
        if names is None or len(names) != len(values):
            names = self._names[device] = [(p, _string(p)) for p in sorted(values)]
        parts = []
        newest: int | None = None
        finite, float_repr, quality = math.isfinite, float.__repr__, _QUALITY
        for point, key in names:
            s = values[point]
            ts, value = s.ts_ms, s.value
            if newest is None or ts > newest:
                newest = ts
            # The common case inline (a finite float, a known quality): no call per point.
            text = (float_repr(value) if type(value) is float and finite(value)
                    else value_json(value))
            parts.append(f'{key}: {{"value": {text}, '
                         f'"quality": {quality.get(s.quality) or quality_json(s.quality)}, '
                         f'"ts": {ts}}}')
        text = "{" + ", ".join(parts) + "}"
        self._cache[device] = _Encoded(generation, text, newest)
        self.encoded += 1
        return text, newest
