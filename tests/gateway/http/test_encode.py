"""The big views written by orjson (gateway/http/encode.py) say what ``json.dumps`` of the
dict views says (compared after parsing, re-dumped, so ``1`` is not ``1.0`` nor ``true``),
fall back where orjson refuses, and are encoded again only after news."""

from __future__ import annotations

import asyncio
import json
import platform
from pathlib import Path
from typing import Any

import yaml

from gateway.config.loader import load_config
from gateway.config.site import SiteConfig
from gateway.http import views
from gateway.http.encode import PointsJson, dumpb, dumps, samples_json, value_json
from gateway.http.live import LatestValues
from gateway.model import Quality, Sample

ODD_VALUES: list[Any] = [
    0.1, -0.0, 1e300, 5e-324, 12345678901234567890.5, float("nan"), float("inf"),
    float("-inf"), 0, -7, 2**70, True, False, None, "", "plain", 'quote " and \\ slash',
    "ünïcødé ✓ \u2028", "\x00\x1f", "lone \ud800 surrogate",
]


class _Float(float):
    pass


def same(text: bytes | str, reference: Any) -> bool:
    """``text`` is JSON of exactly ``reference``: parsed and written again by ``json.dumps``,
    the two agree byte for byte (``1`` is not ``1.0`` nor ``true``, order counts)."""
    return dumps(json.loads(text)) == dumps(reference)


def test_each_value_kind_is_written_as_json_dumps_writes_it() -> None:
    for value in [*ODD_VALUES, _Float(2.5)]:
        assert value_json(value) == dumps(views.json_value(value)), repr(value)
        assert same(dumpb({"v": value}), {"v": views.json_value(value)}), repr(value)


def test_stream_samples_are_the_rows_of_the_reference() -> None:
    for value in [*ODD_VALUES, _Float(2.5)]:  # some take orjson's path, some the fallback
        batch = [Sample("m", "a", 1000, 1.5), Sample("m", "b", 1001, value, Quality.BAD)]
        rows = [[s.device, s.point, s.ts_ms, views.json_value(s.value), str(s.quality)]
                for s in batch]
        assert same(samples_json(batch), rows), repr(value)


def _batch(device: str, ts: int, values: dict[str, Any]) -> list[Sample]:
    return [Sample(device, p, ts, v) for p, v in values.items()]


def test_points_text_equals_the_dict_view_and_is_kept_until_news() -> None:
    latest = LatestValues()
    points = PointsJson(latest)
    assert points.points("m") == (b"{}", None)
    latest(_batch("m", 1000, {f"p{i}": ODD_VALUES[i] for i in range(len(ODD_VALUES))}), 1)
    latest(_batch("other", 5000, {"x": 1.5}), 2)
    before = points.encoded
    text, last_seen = points.points("m")
    assert same(text, views.points_of(latest, "m"))
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
    assert same(text2, views.points_of(latest, "m"))
    assert next(iter(json.loads(text2))) == "a-new"  # sorted by name, as the dict view
    assert json.loads(text2)["p2"] == {"value": None, "quality": "bad", "ts": 2000}
    assert last_seen2 == latest.last_seen("m") == 2000
    # Without what orjson refuses, the device takes orjson's path: the same values.
    plain = {f"p{i}": v for i, v in enumerate(ODD_VALUES)
             if not (isinstance(v, int) and v > 2**63) and "\ud800" not in str(v)}
    latest(_batch("fast", 3000, plain), 5)
    fast, _ = points.points("fast")
    assert b", " not in fast  # orjson's compact text, not the fallback's
    assert same(fast, views.points_of(latest, "fast"))


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
            assert len(texts) == len(reference), (only, with_points)
            for text, entry in zip(texts, reference, strict=True):
                assert same(text, entry), (only, with_points)


def test_the_shared_answer_gzips_to_about_a_fifth_as_documented() -> None:
    """docs/http-api.md: an 8,000-point site (4 x 2,005 points of full-precision floats, as
    the bench's) is about 120 KB gzipped instead of 580 KB."""
    import gzip
    import random

    from gateway.http.gzipped import gzip_parts

    rng = random.Random(1)
    latest = LatestValues()
    points = PointsJson(latest)
    for d in range(4):
        latest(_batch(f"bench-{d}", 1764583260000,
                      {f"p{i:04d}": rng.random() * 1000 for i in range(2005)}), d)
    texts = (points.points(f"bench-{d}")[0] for d in range(4))
    parts = [b"[", *(t for text in texts for t in (text, b",")), b"]"]
    parts.pop(-2)  # the last comma
    packed = gzip_parts(parts)
    assert gzip.decompress(packed) == b"".join(parts)
    assert gzip_parts(parts) == packed  # time 0: the same answer gives the same bytes
    if platform.machine() in ("x86_64", "aarch64"):  # the docs: ISA-L where it has wheels
        from isal import isal_zlib

        from gateway.http import gzipped

        assert gzipped._deflate is isal_zlib
    body = b"".join(parts)  # about the size of the real answer (these have no headers)
    assert 540_000 < len(body) < 620_000, len(body)
    assert 100_000 < len(packed) < 140_000, len(packed)


def test_the_shared_body_is_the_device_texts_in_one_array(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({
        "gateway": {"id": "gw", "state_dir": str(tmp_path / "state")},
        "devices": [{"id": "m", "type": "simulated"},
                    {"id": "quiet", "type": "simulated", "enabled": False}]}))
    host: Any = _Host(load_config(path))
    latest = LatestValues()
    latest(_batch("m", 1000, {"power_w": 12.5, "s": "ok"}), 1)
    points = PointsJson(latest)
    body = b"".join(views.devices_parts(host, latest, points))
    assert body == b"[" + b",".join(views.devices_json(host, latest, points)) + b"]"
    assert same(body, asyncio.run(views.devices(host, latest)))
    host.site = host.site.model_copy(update={"devices": []})
    assert b"".join(views.devices_parts(host, latest, points)) == b"[]"


def test_a_stream_is_sent_only_what_changed_also_after_a_device_gains_points() -> None:
    latest = LatestValues()
    latest(_batch("m", 1000, {"a": 1.0, "b": 2.0, "c": 3.0}), 1)
    sub = latest.subscribe(None)
    sub.show("m", latest.values["m"])
    latest(_batch("m", 2000, {"b": 2.5}), 2)  # same points: compared by position
    assert sub.changed(latest.values) == [Sample("m", "b", 2000, 2.5)]
    latest(_batch("m", 3000, {"z": 9.0, "a": 1.5}), 3)  # a new point: compared by name
    assert sub.changed(latest.values) == [Sample("m", "a", 3000, 1.5),
                                          Sample("m", "z", 3000, 9.0)]
    latest(_batch("m", 4000, {"c": 3.5, "z": 9.5}), 4)  # the same four again: by position
    assert sub.changed(latest.values) == [Sample("m", "c", 4000, 3.5),
                                          Sample("m", "z", 4000, 9.5)]
    latest(_batch("m", 5000, {"x": 0.0}), 5)
    latest(_batch("n", 5000, {"x": 0.0}), 6)  # a device never shown: all of it
    assert sorted(sub.changed(latest.values)) == [Sample("m", "x", 5000, 0.0),
                                                  Sample("n", "x", 5000, 0.0)]
    assert sub.changed(latest.values) == []  # nothing dirty


def test_accepts_gzip_reads_weights_and_remembers_few_headers() -> None:
    from gateway.http import gzipped

    for header, expected in (("gzip, deflate", True), ("br;q=1.0, gzip;q=0", False),
                             ("*", True), ("identity", False), ("", False),
                             ("GZIP;q=0.5", True), ("gzip;q=x", False)):
        assert gzipped.accepts_gzip(header) is expected, header
        assert gzipped.accepts_gzip(header) is expected, header  # the remembered answer
    for i in range(200):
        gzipped.accepts_gzip(f"x{i}")
    assert len(gzipped._GZIP_KNOWN) <= gzipped._GZIP_KNOWN_MAX


def test_units_are_read_once_per_config_object() -> None:
    from types import SimpleNamespace as NS

    first = NS(id="u", points=[NS(name="p", unit="W"), NS(name="q", unit=None)])
    assert views.units_of(first) == {"p": "W"}
    views.units_of(first)["p"] = "kW"  # a caller's copy: the remembered answer stays
    first.points[0].unit = "V"  # configs are frozen: the same object is not read again
    assert views.units_of(first) == {"p": "W"}
    reloaded = NS(id="u", points=[NS(name="p", unit="kWh")])  # a reload's new object
    assert views.units_of(reloaded) == {"p": "kWh"}
