"""bench/site.py runs end to end: a real daemon, simulators and mosquitto, figures counted at
the broker (a short run; the figures themselves are the bench's business)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import mosquitto

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.skipif(not mosquitto.available(), reason="mosquitto is not installed")
def test_site_bench_counts_what_reaches_the_broker(tmp_path: Path) -> None:
    env = dict(os.environ, FIELDGATE_BENCH_RESULTS=str(tmp_path))
    subprocess.run([sys.executable, "bench/site.py", "--sizes", "3x20", "--runs", "1",
                    "--warmup", "2", "--window", "6"], cwd=ROOT, env=env, check=True,
                   timeout=280, capture_output=True)
    result = json.loads((tmp_path / "site.json").read_text())
    figures = result["summary"]["3x20"]
    assert figures["requests_per_device_per_cycle"] == pytest.approx(1.0, abs=0.2)
    assert figures["datapoints_per_s"] > 0
    assert figures["delivered_share"] > 0.5
    assert 10 < figures["bytes_per_datapoint"] < 200
    assert figures["cpu_s_per_1000_datapoints"] > 0
    assert figures["rss_end_mb"] > 10
    # RSS read every 5 s of the 6 s window: the start, 5 s and the end; the trends come from it
    assert len(result["runs"][0]["rss_trace_mb"]) >= 2
    assert "rss_growth_2nd_half_mb_per_hour" in figures
    assert result["conditions"]["note"]
