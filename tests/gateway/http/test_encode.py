"""The big views written straight from the samples (gateway/http/encode.py) say byte for byte
what ``json.dumps`` of the dict views says, and are encoded again only after news."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import yaml

from gateway.config.loader import load_config
from gateway.config.site import SiteConfig
from gateway.http import views
from gateway.http.encode import PointsJson, dumps, value_json
from gateway.http.live import LatestValues
from gateway.model import Quality, Sample

ODD_VALUES: list[Any] = [
    0.1, -0.0, 1e300, 5e-324, 12345678901234567890.5, float("nan"), float("inf"),
    float("-inf"), 0, -7, 2**70, True, False, None, "", "plain", 'quote " and \\ slash',
    "ünïcødé ✓ \u2028", "\x00\x1f",
]


def test_each_value_kind_is_written_as_json_dumps_writes_it() -> None:
    for value in ODD_VALUES:
        assert value_json(value) == dumps(views.json_value(value)), repr(value)


def _batch(device: str, ts: int, values: dict[str, Any]) -> list[Sample]:
    return [Sample(device, p, ts, v) for p, v in values.items()]


def test_points_text_equals_the_dict_view_and_is_kept_until_news() -> None:
    latest = LatestValues()
    points = PointsJson(latest)
    assert points.points("m") == ("{}", None)
    latest(_batch("m", 1000, {f"p{i}": ODD_VALUES[i] for i in range(len(ODD_VALUES))}), 1)
    latest(_batch("other", 5000, {"x": 1.5}), 2)
    before = points.encoded
    text, last_seen = points.points("m")
    assert text == dumps(views.points_of(latest, "m"))
    assert last_seen == latest.last_seen("m") == 1000
    assert json.loads(text)["p3"] == {"value": 5e-324, "quality": "good", "ts": 1000}
    # No news for "m": the same text, not encoded again (another device's batch is no news).
    latest(_batch("other", 6000, {"x": 2.5}), 3)
    assert points.points("m") == (text, 1000)
    assert points.encoded == before + 1
    # News: a changed value, an older sample of another point, and a new point.
    latest([*_batch("m", 2000, {"p0": 9.25, "a-new": "n"}),
            Sample("m", "p1", 900, 3.0), Sample("m", "p2", 2000, float("nan"), Quality.BAD),
            Sample("m", "p4", 2000, 4.5, Quality.UNCERTAIN)], 4)
    text2, last_seen2 = points.points("m")
    assert points.encoded == before + 2
    assert text2 == dumps(views.points_of(latest, "m"))
    assert next(iter(json.loads(text2))) == "a-new"  # sorted by name, as the dict view
    assert json.loads(text2)["p2"] == {"value": None, "quality": "bad", "ts": 2000}
    assert last_seen2 == latest.last_seen("m") == 2000


class _Host:
    """The few :class:`gateway.http.host.Host` members the views read, over a real config."""

    def __init__(self, site: SiteConfig) -> None:
        self.site = site

    def status(self) -> dict[str, tuple[str, str, int]]:
        return {"m": ("online", "", 1000)}

    def poll_stats(self, device: str) -> dict[str, Any] | None:
        return {"requests": 3, "errors": {}} if device == "m" else None


def test_device_text_equals_the_dict_view(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({
        "gateway": {"id": "gw", "state_dir": str(tmp_path / "state")},
        "devices": [{"id": "m", "type": "simulated", "name": "Main \"meter\"", "tags": ["a"]},
                    {"id": "quiet", "type": "simulated", "enabled": False}]}))
    host: Any = _Host(load_config(path))
    latest = LatestValues()
    latest(_batch("m", 1000, {"power_w": 12.5, "nan": float("nan"), "s": "ok"}), 1)
    points = PointsJson(latest)
    for only in (None, "m", "quiet", "absent"):
        for with_points in (True, False):
            texts = views.devices_json(host, latest, points, only, with_points)
            reference = asyncio.run(views.devices(host, latest, only, with_points))
            assert texts == [dumps(d) for d in reference], (only, with_points)
