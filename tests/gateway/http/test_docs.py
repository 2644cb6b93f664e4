"""docs/http-api.md and the dashboard assets cannot drift from the code."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

from gateway.http.config import HttpSection
from gateway.http.live import LatestValues
from gateway.http.server import STATIC, HttpServer

ROOT = Path(__file__).resolve().parents[3]
DOC = (ROOT / "docs" / "http-api.md").read_text()


def test_every_route_is_documented() -> None:
    server = HttpServer(object(), HttpSection(), LatestValues())  # type: ignore[arg-type]
    app = server.build()
    paths = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    assert "/api/v1/devices/{device}" in paths
    for path in paths - {"/", "/static/{name}"}:
        assert f"`{path}" in DOC or f" {path}`" in DOC or path in DOC, path


def test_dashboard_size_and_no_cdn_as_documented() -> None:
    files = [STATIC / name for name in ("index.html", "app.js", "app.css")]
    raw = sum(len(f.read_bytes()) for f in files)
    packed = sum(len(gzip.compress(f.read_bytes(), 9)) for f in files)
    documented = re.search(r"(\d+\.\d) KB, (\d+\.\d) KB gzipped", DOC)
    assert documented, "the size sentence is gone from docs/http-api.md"
    assert abs(raw / 1000 - float(documented[1])) < 0.5, raw
    assert abs(packed / 1000 - float(documented[2])) < 0.5, packed
    for f in files:
        assert not re.search(r"(src|href)=\"(https?:)?//", f.read_text()), f.name
        assert "https://" not in f.read_text() and "http://" not in f.read_text(), f.name



def test_the_shared_answer_lasts_as_documented() -> None:
    from gateway.http.api import CACHE_S, STREAM_S

    assert f"share one answer for up to {CACHE_S:g} s" in " ".join(DOC.split())
    assert f"at most every {STREAM_S:g} s" in " ".join(DOC.split())
